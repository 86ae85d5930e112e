#!/usr/bin/env bash
# Runs on the lent GPU machine (16 cores; its GPU is not used: engines and GPUs are emulated): the issue-6
# replay (10 min of the conv trace at --speed 10) with per-process CPU (replay-cpu.sh), once per config in
# $CFGS (default deploy/replay-large.yaml), after the engine-stream benchmark. Pack first, here:
#   bash test/bench/device/pack-replay.sh      then run there with carry [".device"]:
#   CFGS="deploy/replay-large.yaml" bash test/bench/device/replay-run.sh
# Each config's summary and CPU table go to $OUT/<name>.txt; with TTFT_TRACE=1 also the instance managers'
# per-request TTFT breakdown ($OUT/<name>-ttft.jsonl, DYNAMOLLM_TTFT_TRACE).
set -u
mkdir -p /tmp/bin
xz -d -c .device/node.xz > /tmp/bin/node
xz -d -c .device/nats-server.xz > /tmp/bin/nats-server
chmod +x /tmp/bin/node /tmp/bin/nats-server
export PATH=/tmp/bin:$PATH
tar -xJf .device/nm.tar.xz
echo "cores: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)  mem: $(free -g | awk '/Mem/{print $2}') GiB"
node --version; nats-server --version
if [ "${BENCH:-1}" = 1 ]; then
  node --import tsx test/bench/run.ts engine-stream > $OUT/bench.txt 2>&1; tail -8 $OUT/bench.txt
fi
for CFG in ${CFGS:-deploy/replay-large.yaml}; do
  name=$(basename "$CFG" .yaml)
  rm -f /tmp/ttft.jsonl
  if [ "${TTFT_TRACE:-0}" = 1 ]; then export DYNAMOLLM_TTFT_TRACE=/tmp/ttft.jsonl; fi
  echo "=== $CFG"
  CFG=$CFG DUR=${DUR:-600} SPEED=${SPEED:-10} SETTLE=${SETTLE:-15} OUT=/tmp/run-$name bash test/bench/device/replay-cpu.sh > $OUT/$name.txt 2>&1
  cat $OUT/$name.txt
  [ -f /tmp/ttft.jsonl ] && cp /tmp/ttft.jsonl $OUT/$name-ttft.jsonl
  unset DYNAMOLLM_TTFT_TRACE
  pgrep -fa 'dynamollm|nats-server' | head -5 || echo "all stopped"
done

#!/usr/bin/env bash
# One call on the lent GPU machine's 16 cores (GPU unused; engines emulated): the data-path bench's closed loop with
# $W gateway workers (DYN_BENCH_REALTIME=0), run with nats-server's Go scheduler at its default (GOMAXPROCS = the
# cores) and at GOMAXPROCS=$PROCS (the bench's `up` starts nats-server with its environment), alternating A, B, A, ...
# while a run still fits in $LIMIT_S; CLIENTS: the closed loop's clients (DYN_BENCH_CLIENTS, the bench's 16 by default),
# WARM: its warm-up seconds (DYN_BENCH_WARM_S). Pack first (WITH_TSX=1 bash test/bench/device/pack-replay.sh; npm run build),
# run there with carry [".device","dist"]:  W=8 PROCS=4 CLIENTS=64 bash test/bench/device/nats-procs.sh
# Results: $OUT/summary.txt.
set -u
cd "$(dirname "$0")/../../.."
T0=$(date +%s); LIMIT_S=${LIMIT_S:-450}; RUN_S=${RUN_S:-150}; W=${W:-8}; PROCS=${PROCS:-4}; DP_CORES=${DP_CORES:-0-13}
CLIENTS=${CLIENTS:-16}; WARM=${WARM:-12}
mkdir -p /tmp/np
. test/bench/device/unpack.sh
{ echo "cores: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)  commit: $(cat .device/commit 2>/dev/null)"
  node --version; nats-server --version; date -u; uptime; } > /tmp/np/summary.txt
i=0
while [ $(( $(date +%s) - T0 + RUN_S )) -le "$LIMIT_S" ]; do
  if [ $((i % 2)) = 0 ]; then arm=default; env=""; else arm="GOMAXPROCS=$PROCS"; env="GOMAXPROCS=$PROCS"; fi
  echo "== run $i: $W workers, $CLIENTS clients, nats-server $arm, $(date -u +%T), load $(cut -d' ' -f1-3 /proc/loadavg)" >> /tmp/np/summary.txt
  taskset -c "$DP_CORES" env $env DYN_BENCH_PATHS=direct DYN_BENCH_REALTIME=0 DYN_BENCH_GATEWAY_WORKERS="$W" \
    DYN_BENCH_CLIENTS="$CLIENTS" DYN_BENCH_WARM_S="$WARM" \
    node --import tsx test/bench/run.ts datapath > /tmp/np/run-$i.txt 2>&1
  grep -v '^#' /tmp/np/run-$i.txt | grep -E '^\||Closed loop|WARNING|direct:' >> /tmp/np/summary.txt
  i=$((i + 1))
done
echo "== ended at $(( $(date +%s) - T0 )) s" >> /tmp/np/summary.txt
cp /tmp/np/summary.txt "$OUT/summary.txt"

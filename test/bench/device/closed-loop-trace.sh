#!/usr/bin/env bash
# One call on the lent GPU machine's 16 cores (GPU unused; engines emulated): the data-path bench's closed loop
# (DYN_BENCH_REALTIME=0) once per arm of $ARMS, each gateway process tracing every request's first-token path
# (DYN_TRACE_FIRST_TOKEN), and where the closed loop's requests spend their time (trace-segments.ts: routed after an
# admission round trip or a queue wait, the engine's first bytes, ...). An arm: `<workers>` or `<workers>g` (nats-server
# at GOMAXPROCS=$PROCS). CLIENTS: the closed loop's clients, WARM: its warm-up seconds. Pack first
# (WITH_TSX=1 bash test/bench/device/pack-replay.sh; npm run build), run there with carry [".device","dist"]:
#   ARMS="1 8 8g" CLIENTS=16 bash test/bench/device/closed-loop-trace.sh
# Results: $OUT/summary.txt.
set -u
cd "$(dirname "$0")/../../.."
T0=$(date +%s); LIMIT_S=${LIMIT_S:-450}; RUN_S=${RUN_S:-110}; ARMS=${ARMS:-1 8}; PROCS=${PROCS:-4}; DP_CORES=${DP_CORES:-0-13}
CLIENTS=${CLIENTS:-16}; WARM=${WARM:-8}
mkdir -p /tmp/ct
. test/bench/device/unpack.sh
{ echo "cores: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)  commit: $(cat .device/commit 2>/dev/null)"
  node --version; nats-server --version; date -u; uptime; } > /tmp/ct/summary.txt
for arm in $ARMS; do
  [ $(( $(date +%s) - T0 + RUN_S )) -le "$LIMIT_S" ] || { echo "== $arm: no time left" >> /tmp/ct/summary.txt; continue; }
  w=${arm%g}; env=""; [ "$w" != "$arm" ] && env="GOMAXPROCS=$PROCS"
  echo "== arm $arm: $w workers, $CLIENTS clients, ${env:-nats-server default}, $(date -u +%T), load $(cut -d' ' -f1-3 /proc/loadavg)" >> /tmp/ct/summary.txt
  taskset -c "$DP_CORES" env $env DYN_TRACE_FIRST_TOKEN=/tmp/ct/trace-$arm.jsonl DYN_BENCH_PATHS=direct DYN_BENCH_REALTIME=0 \
    DYN_BENCH_GATEWAY_WORKERS="$w" DYN_BENCH_CLIENTS="$CLIENTS" DYN_BENCH_WARM_S="$WARM" \
    node --import tsx test/bench/run.ts datapath > /tmp/ct/run-$arm.txt 2>&1
  grep -v '^#' /tmp/ct/run-$arm.txt | grep -E '^\||Closed loop|WARNING|direct:' >> /tmp/ct/summary.txt
  node --import tsx test/bench/device/trace-segments.ts /tmp/ct/trace-$arm.jsonl >> /tmp/ct/summary.txt 2>&1
done
echo "== ended at $(( $(date +%s) - T0 )) s, $(date -u +%T)" >> /tmp/ct/summary.txt
cp /tmp/ct/summary.txt "$OUT/summary.txt"

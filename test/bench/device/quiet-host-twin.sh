#!/usr/bin/env bash
# The pooled twin check on the lent GPU machine's 16 cores (its GPU unused: engines and GPUs emulated, energy
# modelled): several twin windows side by side, each at its own offset into the conversation trace and pinned to its
# own cores (from core $FIRST_CORE, default 1: core 0 left to the OS and the pooling), each its own live cluster and
# simulation (test/bench/twin.bench.ts with TWIN_FROM_S and TWIN_SAMPLES); then test/bench/twin-pool.ts pools each window
# shape's samples: energy and decision counts by their sums, each type's p50 / p99 TTFT and p99 TBT sim / live with a
# 95% paired block-bootstrap interval, each p99 judged by its interval from 100 requests of the type on a side (fewer:
# listed as informational, with the reason). Twin windows only (no chaos, no data-path bench). Pack first
# (WITH_TSX=1 bash test/bench/device/pack-replay.sh; npm run build), run there with carry [".device","dist"]:
#   bash test/bench/device/quiet-host-twin.sh
# Without .device/ it runs with the node on PATH (a local try: JOBS="twin.bench:0:1 twin.bench:120:1" CLOCK_S=20).
# JOBS: "bench:fromS[:cores]" each (bench: twin-reshard, the re-shard window; twin.bench, the clock window), default
# three re-shard windows of $RESHARD_S (720) s of trace at speed 2 (360 s wall) on cores 1-3, 4-6, 7-9, and three clock
# windows of $CLOCK_S (360) s at speed 1 (360 s wall) on cores 10-11, 12-13, 14-15, all side by side, sized so that
# every window (its cluster's start, the live side, the counters' wait, its simulation) is done within about 470 s
# there (windows of 240 s wall were done by 304 s); window i of a kind starts at i x its length into the trace (wrapped
# into its first $TRACE_S (3500) s), i = 3 x ROUND + 0..2: ROUND=0 (default) 0, 720, 1440 s and 0, 360, 720 s;
# ROUND=1 the next three of each (2160, 100, 820 s: the last two overlap ROUND=0's in trace time, each a live run of
# its own; and 1080, 1440, 1800 s).
# Each window logs at debug level: the instance managers' admissions (the data path's time to the instance) and the
# engines' first tokens (the hop to and from the engine), which its simulation takes (twin.bench.ts).
# Results: $OUT/summary.txt (the pooled tables, each window's own table) and $OUT/logs.tgz (each window's bench output
# and samples, qht/*.samples.json); what has finished by $LIMIT_S (default 560) s is pooled.
# Pooling two calls (say ROUND=0, then ROUND=1): unpack each call's logs.tgz into its own folder and pool every
# samples file together: node --import tsx test/bench/twin-pool.ts call1/qht/*.samples.json call2/qht/*.samples.json
# (--phases 8 there adds the median over 8 phase draws of each window's simulation; PHASES, default 0, sets it here:
# its re-simulations would take the pooling's time budget)
set -u
cd "$(dirname "$0")/../../.."
T0=$(date +%s); LIMIT_S=${LIMIT_S:-560}; FIRST_CORE=${FIRST_CORE:-1}; CORES=${CORES:-3}
RESHARD_S=${RESHARD_S:-720}; CLOCK_S=${CLOCK_S:-360}; POOL_S=${POOL_S:-30}; ROUND=${ROUND:-0}; TRACE_S=${TRACE_S:-3500}
# window i of length len: from i x len, wrapped into the trace's first TRACE_S s
from() { local x=$(( $1 * $2 )); [ $(( x + $2 )) -le "$TRACE_S" ] && echo $x || echo $(( x % (TRACE_S - $2) )); }
if [ -z "${JOBS:-}" ]; then
  JOBS=""
  for i in 0 1 2; do JOBS="$JOBS twin-reshard:$(from $(( 3 * ROUND + i )) "$RESHARD_S")"; done
  for i in 0 1 2; do JOBS="$JOBS twin.bench:$(from $(( 3 * ROUND + i )) "$CLOCK_S"):2"; done
  JOBS=${JOBS# }
fi
OUT=${OUT:-/tmp/qht-out}; W=${WORK:-/tmp/qht}
mkdir -p "$OUT" "$W"; rm -f "$W"/*.samples.json
. test/bench/device/unpack.sh
{ echo "cores: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)  commit: $(cat .device/commit 2>/dev/null || git rev-parse --short HEAD 2>/dev/null)"
  node --version; nats-server --version; date -u; uptime
  echo "jobs: $JOBS; re-shard windows $RESHARD_S s of trace, clock windows $CLOCK_S s; round $ROUND; limit $LIMIT_S s"; } > "$W/summary.txt"
pids=()
core=$FIRST_CORE
for job in $JOBS; do
  IFS=: read -r bench from n <<< "$job"; n=${n:-$CORES}
  cores="$core-$((core + n - 1))"; core=$((core + n))
  name="$bench-$from"
  echo "$name on cores $cores" >> "$W/summary.txt"
  # its own session (the cluster's processes with it), so what is still running at the limit can be stopped
  TWIN_FROM_S=$from TWIN_SAMPLES="$W/$name.samples.json" TWIN_RESHARD_S=$RESHARD_S TWIN_S=$CLOCK_S TWIN_PHASES=0 TWIN_STATUS_SCAN=0 \
    TWIN_LOG_LEVEL=debug TWIN_READY_S=${TWIN_READY_S:-120} \
    setsid taskset -c "$cores" node --import tsx test/bench/run.ts "$bench" > "$W/$name.txt" 2>&1 &
  pids+=($!)
done
running() { local n=0 p; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && n=$((n + 1)); done; echo $n; }
while [ $(( $(date +%s) - T0 )) -lt $((LIMIT_S - POOL_S)) ] && [ "$(running)" -gt 0 ]; do
  sleep 5; echo "$(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)" >> "$W/load.txt"
done
left=$(running)
# what is still running is cut: its session stopped (SIGINT first: `up` stops its cluster), its samples not written
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && kill -INT -- -"$p" 2>/dev/null; done
for i in $(seq 1 10); do [ "$(running)" -eq 0 ] && break; sleep 1; done
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && kill -KILL -- -"$p" 2>/dev/null; done
{ echo "== windows ended at $(( $(date +%s) - T0 )) s; cut: $left"
  for job in $JOBS; do
    IFS=: read -r bench from n <<< "$job"; name="$bench-$from"
    echo "== $name: $([ -f "$W/$name.samples.json" ] && echo finished || echo 'cut or failed')"
    grep -E '^\||^live|^targets|^informational|FAILED|Error' "$W/$name.txt" 2>/dev/null | grep -v "^live instances" | head -80
  done
  echo "== pooled ($(ls "$W"/*.samples.json 2>/dev/null | wc -l) windows)"
  ls "$W"/*.samples.json > /dev/null 2>&1 && taskset -c 0-$((FIRST_CORE > 0 ? FIRST_CORE - 1 : 0)) node --import tsx test/bench/twin-pool.ts --phases "${PHASES:-0}" "$W"/*.samples.json 2>&1
  echo "== load"; awk 'NR % 6 == 1' "$W/load.txt" 2>/dev/null; echo "== done at $(( $(date +%s) - T0 )) s"; } >> "$W/summary.txt"
cp "$W/summary.txt" "$OUT/summary.txt"
tar -C "$(dirname "$W")" -czf "$OUT/logs.tgz" "$(basename "$W")"

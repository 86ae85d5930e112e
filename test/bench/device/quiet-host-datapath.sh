#!/usr/bin/env bash
# One call on the lent GPU machine's 16 cores (its GPU unused: engines and GPUs emulated, energy modelled) for issue
# 19's figures and issue 13's long chaos run: four every-kind chaos runs side by side pinned to cores 4-15 (as
# quiet-host.sh), and on cores 0-3 one after another the data-path bench with one gateway process and with
# each of $WORKERS (a list, e.g. "4 8") gateway workers, then on cores 0-1 the conversation replay at --speed 10 against $REPLAY_SERVERS emulated
# 8-GPU servers (the replay client on the same two cores). Pack first (WITH_TSX=1 bash
# test/bench/device/pack-replay.sh; npm run build), run there with carry [".device","dist"]:
#   bash test/bench/device/quiet-host-datapath.sh
# Results: $OUT/summary.txt and $OUT/logs.tgz; what has finished by $LIMIT_S (default 570) seconds is written.
set -u
cd "$(dirname "$0")/../../.."
T0=$(date +%s); LIMIT_S=${LIMIT_S:-570}; DUR=${DUR:-400}; KILL_EVERY=${KILL_EVERY:-1.6}; SEED=${SEED:-6100}
WORKERS=${WORKERS:-2}; REPLAY_SERVERS=${REPLAY_SERVERS:-2}; CHAOS=${CHAOS:-4}
# DP_CORES: the data-path bench's cores; DATAPLANE: gateway.dataPlane of its real-time run (js,native: both, alternating)
DP_CORES=${DP_CORES:-0-3}; DATAPLANE=${DATAPLANE:-js}
mkdir -p /tmp/qh
. test/bench/device/unpack.sh
{ echo "cores: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)  commit: $(cat .device/commit 2>/dev/null)"
  node --version; nats-server --version; date -u; uptime; } > /tmp/qh/summary.txt
for i in $(seq 1 "$CHAOS"); do
  c0=$((1 + i * 3)); cores="$c0-$((c0 + 2))"
  taskset -c "$cores" node bin/dynamollm.js chaos --config deploy/chaos.yaml --duration "$DUR" --rps 2 \
    --kill-every "$KILL_EVERY" --kinds engine,instance,node,cluster,pool,gateway,nats --nats-nodes 3 \
    --gateway-replicas 3 --seed $((SEED + i)) --settle 45 --out /tmp/qh/chaos-$i.json > /tmp/qh/chaos-$i.log 2>&1 &
done
# the replay's cluster: deploy/replay.yaml with REPLAY_SERVERS servers of 8 GPUs (4 TP2 instances each)
awk -v n="$REPLAY_SERVERS" '/^  - \{ id: n0, gpus: 8 \}/ { for (s = 0; s < n; s++) printf "  - { id: n%d, gpus: 8 }\n", s; next } { print }' \
  deploy/replay.yaml > /tmp/qh/replay-cfg.yaml
# REPLAY_CORES (two cores, e.g. 12,13): the replay runs there beside the bench, else after it on cores 0-1
REPLAY_CORES=${REPLAY_CORES:-}
REPLAY="CFG=/tmp/qh/replay-cfg.yaml DUR=600 SPEED=10 OUT=/tmp/qh/replay taskset -c ${REPLAY_CORES:-0,1} bash test/bench/device/replay-cpu.sh > /tmp/qh/replay.txt 2>&1"
[ -n "$REPLAY_CORES" ] && bash -c "$REPLAY" &
# SIM_CORES (e.g. 14-15): the drain-migration simulations (drain-sims.sh) beside the bench
[ -n "${SIM_CORES:-}" ] && OUT=/tmp/qh/sims SIM_CORES=$SIM_CORES bash test/bench/device/drain-sims.sh &
taskset -c "$DP_CORES" bash -c "
  DYN_BENCH_PATHS=direct DYN_BENCH_DATAPLANE=$DATAPLANE node --import tsx test/bench/run.ts datapath > /tmp/qh/datapath-w1.txt 2>&1
  for w in $WORKERS; do DYN_BENCH_PATHS=direct DYN_BENCH_REALTIME=0 DYN_BENCH_GATEWAY_WORKERS=\$w node --import tsx test/bench/run.ts datapath > /tmp/qh/datapath-w\$w.txt 2>&1; done
  [ -z '$REPLAY_CORES' ] && $REPLAY" &
while [ $(( $(date +%s) - T0 )) -lt "$LIMIT_S" ] && [ -n "$(jobs -r)" ]; do sleep 5; echo "$(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)" >> /tmp/qh/load.txt; done
{ echo "== ended at $(( $(date +%s) - T0 )) s; still running: $(jobs -r | wc -l)"
  for f in /tmp/qh/chaos-*.json; do echo "== $f"; cat "$f"; echo; done
  for f in /tmp/qh/datapath-*.txt; do echo "== $f"; grep -v '^#' "$f" | grep -E '^\||^##|FAILED|Error|note|Closed loop|WARNING|TTFT|direct' ; done
  echo "== replay"; cat /tmp/qh/replay.txt 2>/dev/null | tail -40
  echo "== load"; awk 'NR % 6 == 1' /tmp/qh/load.txt; } >> /tmp/qh/summary.txt
cp /tmp/qh/summary.txt "$OUT/summary.txt"
tar -C /tmp -czf "$OUT/logs.tgz" qh

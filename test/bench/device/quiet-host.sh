#!/usr/bin/env bash
# One call on the lent GPU machine's 16 cores (its GPU unused: engines and GPUs are emulated, energy modelled) for
# the figures a loaded 2-core VM cannot give: four every-kind chaos runs side by side, each pinned to 3 cores
# (cores 4-15), and on cores 0-3 one after another the data-path bench, the twin's clock window and its re-shard
# window. Pack here first (WITH_TSX=1 bash test/bench/device/pack-replay.sh; npm run build), then run there with
# carry [".device","dist"]:   bash test/bench/device/quiet-host.sh
# Results: $OUT/summary.txt (the JSON reports and bench tables) and $OUT/logs.tgz; whatever has finished by
# $LIMIT_S (default 570) seconds is written, the rest is cut.
set -u
cd "$(dirname "$0")/../../.."
T0=$(date +%s); LIMIT_S=${LIMIT_S:-570}; DUR=${DUR:-400}; KILL_EVERY=${KILL_EVERY:-1.6}; SEED=${SEED:-6000}
mkdir -p /tmp/qh
. test/bench/device/unpack.sh
{ echo "cores: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)  commit: $(cat .device/commit 2>/dev/null)"
  node --version; nats-server --version; date -u; uptime; } > /tmp/qh/summary.txt
for i in 1 2 3 4; do
  c0=$((1 + i * 3)); cores="$c0-$((c0 + 2))"
  taskset -c "$cores" node bin/dynamollm.js chaos --config deploy/chaos.yaml --duration "$DUR" --rps 2 \
    --kill-every "$KILL_EVERY" --kinds engine,instance,node,cluster,pool,gateway,nats --nats-nodes 3 \
    --gateway-replicas 3 --seed $((SEED + i)) --settle 45 --out /tmp/qh/chaos-$i.json > /tmp/qh/chaos-$i.log 2>&1 &
done
# DATAPATH=0 leaves the data-path bench out (the twin windows start at once)
DATAPATH=${DATAPATH:-1} taskset -c 0-3 bash -c '
  [ "$DATAPATH" = 0 ] || node --import tsx test/bench/run.ts datapath > /tmp/qh/datapath.txt 2>&1
  TWIN_LOG_LEVEL=debug TWIN_UP_LOG=/tmp/qh/clock-up.log TWIN_SIM_LOG=/tmp/qh/clock-sim.log \
    node --import tsx test/bench/run.ts twin.bench > /tmp/qh/twin-clock.txt 2>&1
  TWIN_LOG_LEVEL=debug TWIN_UP_LOG=/tmp/qh/reshard-up.log TWIN_SIM_LOG=/tmp/qh/reshard-sim.log \
    node --import tsx test/bench/run.ts twin-reshard > /tmp/qh/twin-reshard.txt 2>&1' &
while [ $(( $(date +%s) - T0 )) -lt "$LIMIT_S" ] && [ -n "$(jobs -r)" ]; do sleep 5; echo "$(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)" >> /tmp/qh/load.txt; done
{ echo "== ended at $(( $(date +%s) - T0 )) s; still running: $(jobs -r | wc -l)"
  for f in /tmp/qh/chaos-*.json; do echo "== $f"; cat "$f"; echo; done
  for f in datapath twin-clock twin-reshard; do echo "== $f"; grep -v '^#' /tmp/qh/$f.txt 2>/dev/null | grep -E '^\||^##|FAILED|Error' ; done
  echo "== load"; awk 'NR % 6 == 1' /tmp/qh/load.txt; } >> /tmp/qh/summary.txt
cp /tmp/qh/summary.txt "$OUT/summary.txt"
tar -C /tmp -czf "$OUT/logs.tgz" qh

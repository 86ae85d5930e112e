#!/usr/bin/env bash
# Per-process CPU (utime+stime from /proc) of a replay, grouped by role (gateway, instance managers, engines,
# NATS, pool/cluster/node actors). Starts `dynamollm up --config $CFG`, waits for "cluster ready", replays
# $DUR s of the conv trace at --speed $SPEED, prints the replay summary and the CPU table, stops everything.
#   CFG=deploy/replay.yaml DUR=120 SPEED=10 bash test/bench/device/replay-cpu.sh
set -u
cd "$(dirname "$0")/../../.."
CFG=${CFG:-deploy/replay.yaml}; DUR=${DUR:-120}; SPEED=${SPEED:-10}; OUTDIR=${OUT:-/tmp/replay-cpu}
mkdir -p "$OUTDIR"
setsid node bin/dynamollm.js up --config "$CFG" > "$OUTDIR/up.log" 2>&1 &
UP=$!
for i in $(seq 1 180); do grep -q "cluster ready" "$OUTDIR/up.log" && break; sleep 1; done
grep -q "cluster ready" "$OUTDIR/up.log" || { echo "cluster not ready"; tail -20 "$OUTDIR/up.log"; kill -INT -- -$UP; exit 1; }
sleep ${SETTLE:-5}
snap() { # pid role ticks
  # the whole process tree under `up` (engines run detached in their own sessions, so not by session id)
  local tree=" $UP " frontier="$UP" next
  while [ -n "$frontier" ]; do
    next=$(ps -eo pid=,ppid= | awk -v f=" $frontier " 'index(f, " " $2 " ") {print $1}' | tr '\n' ' ')
    tree="$tree$next"; frontier=$(echo $next)
  done
  # plus, when `up` started none, the nats-server it found already running (not its child; shared with anyone else
  # using it); other nats-servers on the host (a chaos run's beside this one) are not counted
  local extra=""
  ps -o comm= -p $(echo $tree | tr ' ' ',') 2>/dev/null | grep -qx nats-server || extra=$(pgrep -x nats-server)
  for p in $(echo $tree $extra | tr ' ' '\n' | sort -un); do
    [ -r /proc/$p/stat ] || continue
    cmd=$(tr '\0' ' ' < /proc/$p/cmdline)
    case "$cmd" in
      *nats-server*) role=nats;; *engine-emulator*) role=engine;; *"actor gateway"*) role=gateway;;
      *"actor instance "*) role=instance;; *"actor pool "*) role=pool;;
      *"actor cluster "*) role=cluster;; *"actor node "*) role=node;; *" up "*) role=up;; *) role=other;;
    esac
    # fields 14,15 after the comm field (which may hold spaces): strip up to the last ')'
    t=$(sed 's/.*) //' /proc/$p/stat | awk '{print $12+$13}')
    echo "$p $role $t"
  done
}
snap > "$OUTDIR/cpu0"
eval "${BEFORE:-true}"   # e.g. start profilers
T0=$(date +%s.%N)
node bin/dynamollm.js replay --trace data/traces/AzureLLMInferenceTrace_conv.csv \
  --speed "$SPEED" --duration "$DUR" --out "$OUTDIR/replay.json" > "$OUTDIR/replay.txt" 2> "$OUTDIR/replay.err"
echo "replay rc=$?"
T1=$(date +%s.%N)
snap > "$OUTDIR/cpu1"
eval "${AFTER:-true}"
cat "$OUTDIR/replay.txt"
HZ=$(getconf CLK_TCK)
echo "CPU seconds during the replay ($(awk -v a=$T0 -v b=$T1 'BEGIN{printf "%.1f", b-a}') s wall; the replay client not included):"
awk -v hz=$HZ 'NR==FNR{a[$1]=$3; next} {d=$3-($1 in a?a[$1]:0); s[$2]+=d; n[$2]++} END{for(r in s) printf "  %-9s %2d procs %7.2f s\n", r, n[r], s[r]/hz}' "$OUTDIR/cpu0" "$OUTDIR/cpu1" | sort
kill -INT -- -$UP 2>/dev/null; for i in $(seq 1 30); do kill -0 $UP 2>/dev/null || break; sleep 1; done
kill -KILL -- -$UP 2>/dev/null; true

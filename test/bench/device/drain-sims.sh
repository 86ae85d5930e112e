#!/usr/bin/env bash
# docs/SIMULATION.md "Scale-in and re-shard with request migration": the hours' dynamollm runs with --drain-migrate-s
# (and --reshard-execution units), side by side on the cores $SIM_CORES names (one run per core at a time). Modelled.
# Run there after unpack.sh (the lent machine's spare cores) or here: OUT=/tmp/sims bash test/bench/device/drain-sims.sh
# Results: $OUT/sim-<name>.json (simulate --out) and $OUT/sim-<name>.log (its text, wall time at the end).
set -u
cd "$(dirname "$0")/../../.."
OUT=${OUT:-/tmp/sims}; SIM_CORES=${SIM_CORES:-0-3}; mkdir -p "$OUT"
CONV="--trace data/traces/AzureLLMInferenceTrace_conv.csv"
CODE="--trace data/traces/AzureLLMInferenceTrace_code.csv --profile profiles/llama2-70b.h100.code.json"
COMMON="--policy dynamollm --model llama2-70b --gpu h100 --servers 12 --rate-scale auto"
run() { # name, args...
  local name=$1; shift
  local t0; t0=$(date +%s)
  # shellcheck disable=SC2086
  node bin/dynamollm.js simulate "$@" $COMMON --out "$OUT/sim-$name.json" > "$OUT/sim-$name.log" 2>&1
  echo "exit $? wall $(( $(date +%s) - t0 )) s, ended $(date -u +%T)" >> "$OUT/sim-$name.log"
}
export -f run; export OUT COMMON
{
  echo "conv-s0 $CONV --drain-migrate-s 0"; echo "conv-s5 $CONV --drain-migrate-s 5"; echo "conv-s20 $CONV --drain-migrate-s 20"
  echo "code-s0 $CODE --drain-migrate-s 0"; echo "code-s5 $CODE --drain-migrate-s 5"
  echo "units-s0 $CONV --reshard-execution units --drain-migrate-s 0"; echo "units-s5 $CONV --reshard-execution units --drain-migrate-s 5"
} | taskset -c "$SIM_CORES" xargs -P "$(taskset -c "$SIM_CORES" nproc)" -L 1 bash -c 'run "$@"' _

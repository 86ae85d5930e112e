#!/usr/bin/env python3
"""
Turn the raw rows of h200_measure.py ($OUT/h200_measure.jsonl) into the measured profile slice
profiles/measured/<name>.json (source.kind 'measured'):

  python3 test/bench/device/to_slice.py RAW.jsonl --date 2026-12-03 > profiles/measured/llama3.1-8b.h200.steps.json
"""
import argparse
import json

ap = argparse.ArgumentParser()
ap.add_argument("raw")
ap.add_argument("--date", required=True)
a = ap.parse_args()
rows = [json.loads(l) for l in open(a.raw) if l.strip()]
dev = next(r for r in rows if r["kind"] == "device")
shapes = {r["shape"]["name"]: {**r["shape"], "paramsB": round(r["params"] / 1e9, 4)} for r in rows if r["kind"] == "model"}
out = {
    "version": 1,
    "kind": "step-slice",
    "gpu": "h200",
    "source": {
        "kind": "measured",
        "generatedBy": "test/bench/device/h200_measure.py (then test/bench/device/to_slice.py)",
        "date": a.date,
        "device": {k: dev.get(k) for k in ("name", "driver", "powerLimitW", "maxSmMhz", "maxMemMhz", "appSmMhz", "torch")},
        "method": (
            "random bf16 weights of Llama-shaped models, one GPU (TP1); decode steps as CUDA-graph replays, prefill eager "
            "(causal flash attention); step time = median of 20 (decode) / 8 (prefill) CUDA-event-timed steps after warm-up; "
            "power = NVML total-energy counter over a ~2.5 s window of back-to-back steps / its length; clocks as found "
            "(never set): smMhz is the mean SM clock NVML read during the window"
        ),
        "notes": "measured, not modelled. Shapes: the whole Llama-3.1-8B; 16 Llama-3.1-70B-sized layers with the 128256-token embedding and LM head (a 70B-like slice).",
    },
    "shapes": shapes,
    "ceilings": next(({"copyGBps": r["copyGBps"], "bf16Tflops": r["bf16Tflops"]} for r in rows if r["kind"] == "ceiling"), None),
    "idle": [{"what": r["what"], "powerW": r.get("energyPowerW"), "smMhz": r.get("smMhzMean")} for r in rows if r["kind"] == "idle"],
    "rows": [
        {
            "kind": r["kind"], "shape": r["shape"], "batch": r.get("batch", 1), "context": r["context"] if r["kind"] == "decode" else r["prompt"],
            "stepMs": r["medianMs"], "stepP90Ms": r["p90Ms"], "powerW": r["energyPowerW"], "smMhz": r.get("smMhzMean"), "tempC": r.get("tempC"),
        }
        for r in rows if r["kind"] in ("decode", "prefill")
    ],
    "skipped": [r for r in rows if r["kind"] in ("skip", "error")],
}
print(json.dumps(out, indent=1))

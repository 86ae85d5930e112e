#!/usr/bin/env python3
"""
Measure one engine step of a Llama-shaped transformer (random bf16 weights) on the GPU at hand: step time
against batch and context (decode) and prompt length (prefill), and power from the NVML total-energy counter,
at the card's current clocks. Never changes clocks, power limits or any other device setting (NVML is only
read). Writes one JSON object per measured row to $OUT/h200_measure.jsonl and a summary to stdout.

  python3 test/bench/device/h200_measure.py            # OUT=<dir> (default ./out)

Shapes: Llama-3.1-8B (32 layers, hidden 4096, 32 heads / 8 KV heads, FFN 14336, vocab 128256), whole model;
and, if memory allows, a slice of Llama-3.1-70B-sized layers (hidden 8192, 64/8 heads, FFN 28672) with the LM
head, so that layer-level time of the 70B shape is measured too. Decode runs as a CUDA graph (as vLLM's
decode does); prefill runs eagerly with causal flash attention. Attention for decode reads the dense KV cache
of each sequence once (grouped-query, one batched GEMM for scores and one for the weighted sum).
"""
import json
import math
import os
import sys
import threading
import time

import torch
import torch.nn.functional as F

try:
    import pynvml as nvml
except ImportError:  # nvidia-ml-py provides pynvml
    nvml = None

OUT = os.environ.get("OUT", "out")
os.makedirs(OUT, exist_ok=True)
LOG = open(os.path.join(OUT, "h200_measure.jsonl"), "w")
DEV = torch.device("cuda:0")
DT = torch.bfloat16
POWER_WINDOW_S = float(os.environ.get("POWER_WINDOW_S", "2.5"))


def emit(row):
    LOG.write(json.dumps(row) + "\n")
    LOG.flush()
    print(json.dumps(row), flush=True)


class Nvml:
    """Read-only NVML: energy counter (mJ), power (mW), clocks. No set calls anywhere."""

    def __init__(self):
        self.h = None
        self.energy_ok = False
        if nvml is None:
            return
        try:
            nvml.nvmlInit()
            self.h = nvml.nvmlDeviceGetHandleByIndex(0)
            nvml.nvmlDeviceGetTotalEnergyConsumption(self.h)
            self.energy_ok = True
        except Exception as e:  # noqa: BLE001
            print(f"nvml energy counter unavailable: {e}", flush=True)

    def energy_mj(self):
        return nvml.nvmlDeviceGetTotalEnergyConsumption(self.h) if self.energy_ok else None

    def power_w(self):
        try:
            return nvml.nvmlDeviceGetPowerUsage(self.h) / 1000.0
        except Exception:  # noqa: BLE001
            return None

    def clocks(self):
        try:
            return {
                "smMhz": nvml.nvmlDeviceGetClockInfo(self.h, nvml.NVML_CLOCK_SM),
                "memMhz": nvml.nvmlDeviceGetClockInfo(self.h, nvml.NVML_CLOCK_MEM),
                "tempC": nvml.nvmlDeviceGetTemperature(self.h, nvml.NVML_TEMPERATURE_GPU),
            }
        except Exception:  # noqa: BLE001
            return {}

    def static_info(self):
        info = {}
        if self.h is None:
            return info
        for k, f in {
            "name": lambda: nvml.nvmlDeviceGetName(self.h),
            "driver": lambda: nvml.nvmlSystemGetDriverVersion(),
            "powerLimitW": lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(self.h) / 1000.0,
            "maxSmMhz": lambda: nvml.nvmlDeviceGetMaxClockInfo(self.h, nvml.NVML_CLOCK_SM),
            "maxMemMhz": lambda: nvml.nvmlDeviceGetMaxClockInfo(self.h, nvml.NVML_CLOCK_MEM),
            "appSmMhz": lambda: nvml.nvmlDeviceGetApplicationsClock(self.h, nvml.NVML_CLOCK_SM),
        }.items():
            try:
                v = f()
                info[k] = v.decode() if isinstance(v, bytes) else v
            except Exception as e:  # noqa: BLE001
                info[k] = f"n/a ({type(e).__name__})"
        return info


NV = Nvml()


def power_window(fn, seconds=POWER_WINDOW_S):
    """Run fn() repeatedly for about `seconds`; average power from the energy counter (and sampled power)."""
    samples, clocks = [], []
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            p = NV.power_w()
            if p is not None:
                samples.append(p)
            c = NV.clocks()
            if c:
                clocks.append(c)
            time.sleep(0.05)

    torch.cuda.synchronize()
    e0, t0 = NV.energy_mj(), time.perf_counter()
    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    n = 0
    while time.perf_counter() - t0 < seconds:
        for _ in range(4):
            fn()
            n += 1
        torch.cuda.synchronize()
    t1, e1 = time.perf_counter(), NV.energy_mj()
    stop.set()
    th.join()
    dt = t1 - t0
    out = {"windowS": round(dt, 3), "iters": n, "wallMsPerIter": round(1000 * dt / n, 4)}
    if e0 is not None and e1 is not None:
        out["energyPowerW"] = round((e1 - e0) / 1000.0 / dt, 2)
    if samples:
        out["sampledPowerW"] = round(sum(samples) / len(samples), 2)
    if clocks:
        out["smMhzMean"] = round(sum(c["smMhz"] for c in clocks) / len(clocks), 1)
        out["smMhzMin"] = min(c["smMhz"] for c in clocks)
        out["memMhz"] = clocks[-1].get("memMhz")
        out["tempC"] = clocks[-1].get("tempC")
    return out


def idle_window(seconds=3.0):
    torch.cuda.synchronize()
    e0, t0 = NV.energy_mj(), time.perf_counter()
    samples, cl = [], []
    while time.perf_counter() - t0 < seconds:
        p = NV.power_w()
        if p is not None:
            samples.append(p)
        c = NV.clocks()
        if c:
            cl.append(c["smMhz"])
        time.sleep(0.1)
    dt, e1 = time.perf_counter() - t0, NV.energy_mj()
    out = {"windowS": round(dt, 3)}
    if e0 is not None and e1 is not None:
        out["energyPowerW"] = round((e1 - e0) / 1000.0 / dt, 2)
    if samples:
        out["sampledPowerW"] = round(sum(samples) / len(samples), 2)
    if cl:
        out["smMhzMean"] = round(sum(cl) / len(cl), 1)
    return out


def event_time_ms(fn, iters=20, warm=3):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return {"medianMs": round(ts[len(ts) // 2], 4), "minMs": round(ts[0], 4), "p90Ms": round(ts[int(0.9 * (len(ts) - 1))], 4)}


class Shape:
    def __init__(self, name, layers, hidden, heads, kv_heads, ffn, vocab):
        self.name, self.layers, self.hidden, self.heads, self.kv_heads, self.ffn, self.vocab = name, layers, hidden, heads, kv_heads, ffn, vocab
        self.hd = hidden // heads

    def as_dict(self):
        return {"name": self.name, "layers": self.layers, "hiddenSize": self.hidden, "heads": self.heads, "kvHeads": self.kv_heads, "ffnSize": self.ffn, "vocab": self.vocab}


class Model:
    """Random-weight Llama-shaped decoder, bf16. Weights stored (in, out) for x @ W."""

    def __init__(self, s: Shape):
        self.s = s
        g = torch.Generator(device=DEV).manual_seed(0)
        qkv_out = (s.heads + 2 * s.kv_heads) * s.hd

        def w(*shape):
            return (torch.randn(*shape, device=DEV, dtype=DT, generator=g) * 0.02)

        self.layers = []
        for _ in range(s.layers):
            self.layers.append({
                "ln1": torch.ones(s.hidden, device=DEV, dtype=DT), "ln2": torch.ones(s.hidden, device=DEV, dtype=DT),
                "wqkv": w(s.hidden, qkv_out), "wo": w(s.heads * s.hd, s.hidden),
                "wgu": w(s.hidden, 2 * s.ffn), "wd": w(s.ffn, s.hidden),
            })
        self.emb = w(s.vocab, s.hidden)
        self.lm = w(s.hidden, s.vocab)
        self.norm = torch.ones(s.hidden, device=DEV, dtype=DT)
        inv = 1.0 / (500000 ** (torch.arange(0, s.hd, 2, device=DEV, dtype=torch.float32) / s.hd))
        self.inv_freq = inv

    def params(self):
        s = self.s
        per = s.hidden * (s.heads + 2 * s.kv_heads) * s.hd + s.heads * s.hd * s.hidden + 3 * s.hidden * s.ffn + 2 * s.hidden
        return s.layers * per + 2 * s.vocab * s.hidden + s.hidden

    def rope(self, x, pos):
        # x: [T, H, hd]; pos: [T] float
        f = pos[:, None] * self.inv_freq[None, :]
        c, si = f.cos().to(DT)[:, None, :], f.sin().to(DT)[:, None, :]
        x1, x2 = x[..., ::2], x[..., 1::2]
        return torch.cat([x1 * c - x2 * si, x1 * si + x2 * c], dim=-1)

    def decode(self, tok, pos, kc, vc):
        """tok [B] ids, pos [B] float positions, kc/vc [L, B, Hkv, ctx, hd]. One token per sequence."""
        s = self.s
        B = tok.shape[0]
        x = self.emb.index_select(0, tok)
        G = s.heads // s.kv_heads
        for i, L in enumerate(self.layers):
            h = F.rms_norm(x, (s.hidden,), L["ln1"])
            qkv = h @ L["wqkv"]
            q, k, v = qkv.split([s.heads * s.hd, s.kv_heads * s.hd, s.kv_heads * s.hd], dim=-1)
            q = self.rope(q.view(B, s.heads, s.hd), pos)
            k = self.rope(k.view(B, s.kv_heads, s.hd), pos)
            kc[i, :, :, -1, :] = k
            vc[i, :, :, -1, :] = v.view(B, s.kv_heads, s.hd)
            qg = q.view(B, s.kv_heads, G, s.hd)
            sc = torch.matmul(qg, kc[i].transpose(-1, -2)) * (1.0 / math.sqrt(s.hd))  # [B, Hkv, G, ctx]
            p = torch.softmax(sc.float(), dim=-1).to(DT)
            o = torch.matmul(p, vc[i]).reshape(B, s.heads * s.hd)  # [B, Hkv, G, hd]
            x = x + o @ L["wo"]
            h = F.rms_norm(x, (s.hidden,), L["ln2"])
            gu = h @ L["wgu"]
            a, b = gu.chunk(2, dim=-1)
            x = x + (F.silu(a) * b) @ L["wd"]
        x = F.rms_norm(x, (s.hidden,), self.norm)
        return torch.argmax(x @ self.lm, dim=-1)

    def prefill(self, tok):
        """tok [T] one prompt; causal attention over the prompt; logits for the last token."""
        s = self.s
        T = tok.shape[0]
        x = self.emb.index_select(0, tok)
        pos = torch.arange(T, device=DEV, dtype=torch.float32)
        G = s.heads // s.kv_heads
        for L in self.layers:
            h = F.rms_norm(x, (s.hidden,), L["ln1"])
            qkv = h @ L["wqkv"]
            q, k, v = qkv.split([s.heads * s.hd, s.kv_heads * s.hd, s.kv_heads * s.hd], dim=-1)
            q = self.rope(q.view(T, s.heads, s.hd), pos).transpose(0, 1)[None]
            k = self.rope(k.view(T, s.kv_heads, s.hd), pos).transpose(0, 1)[None]
            v = v.view(T, s.kv_heads, s.hd).transpose(0, 1)[None]
            k = k.repeat_interleave(G, dim=1)
            v = v.repeat_interleave(G, dim=1)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)[0].transpose(0, 1).reshape(T, s.heads * s.hd)
            x = x + o @ L["wo"]
            h = F.rms_norm(x, (s.hidden,), L["ln2"])
            gu = h @ L["wgu"]
            a, b = gu.chunk(2, dim=-1)
            x = x + (F.silu(a) * b) @ L["wd"]
        x = F.rms_norm(x[-1:], (s.hidden,), self.norm)
        return torch.argmax(x @ self.lm, dim=-1)


def guarded(fn, *a):
    try:
        fn(*a)
    except Exception as e:  # noqa: BLE001  one failed row must not lose the others
        emit({"kind": "error", "in": fn.__name__, "args": [str(x) for x in a[1:]], "error": repr(e)[:400]})
        torch.cuda.empty_cache()


def measure_decode(m: Model, B, ctx, tag):
    s = m.s
    kv_bytes = 2 * s.layers * B * s.kv_heads * ctx * s.hd * 2
    free = torch.cuda.mem_get_info()[0]
    if kv_bytes > free - 6 * 2**30:
        emit({"kind": "skip", "shape": s.name, "batch": B, "context": ctx, "reason": f"KV {kv_bytes/2**30:.1f} GiB > free {free/2**30:.1f} GiB"})
        return
    kc = torch.randn(s.layers, B, s.kv_heads, ctx, s.hd, device=DEV, dtype=DT)
    vc = torch.randn(s.layers, B, s.kv_heads, ctx, s.hd, device=DEV, dtype=DT)
    tok = torch.randint(0, s.vocab, (B,), device=DEV)
    pos = torch.full((B,), float(ctx - 1), device=DEV)
    st = torch.cuda.Stream()
    st.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(st):
        for _ in range(2):
            m.decode(tok, pos, kc, vc)
    torch.cuda.current_stream().wait_stream(st)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = m.decode(tok, pos, kc, vc)
    fn = g.replay
    t = event_time_ms(fn, iters=20)
    pw = power_window(fn)
    emit({"kind": "decode", "shape": s.name, "layers": s.layers, "batch": B, "context": ctx, "tag": tag, **t, **pw, "kvGiB": round(kv_bytes / 2**30, 2)})
    del g, kc, vc, out
    torch.cuda.empty_cache()


def measure_prefill(m: Model, T, tag):
    tok = torch.randint(0, m.s.vocab, (T,), device=DEV)
    fn = lambda: m.prefill(tok)  # noqa: E731
    t = event_time_ms(fn, iters=8, warm=2)
    pw = power_window(fn, seconds=min(POWER_WINDOW_S, 2.0))
    emit({"kind": "prefill", "shape": m.s.name, "layers": m.s.layers, "prompt": T, "tag": tag, **t, **pw})
    torch.cuda.empty_cache()


def ceilings():
    a = torch.randn(2 * 2**30 // 2, device=DEV, dtype=DT)  # 2 GiB
    b = torch.empty_like(a)
    t = event_time_ms(lambda: b.copy_(a), iters=10)
    bw = 2 * a.numel() * 2 / (t["medianMs"] / 1e3) / 1e9
    x = torch.randn(8192, 8192, device=DEV, dtype=DT)
    y = torch.randn(8192, 8192, device=DEV, dtype=DT)
    t2 = event_time_ms(lambda: x @ y, iters=10)
    tf = 2 * 8192**3 / (t2["medianMs"] / 1e3) / 1e12
    emit({"kind": "ceiling", "copyGBps": round(bw, 1), "bf16Tflops": round(tf, 1), "clocks": NV.clocks()})
    del a, b, x, y
    torch.cuda.empty_cache()


def main():
    t_start = time.time()
    emit({"kind": "device", "torch": torch.__version__, "cudaName": torch.cuda.get_device_name(0), "energyCounter": NV.energy_ok, **NV.static_info()})
    torch.cuda.init()
    _ = torch.zeros(1, device=DEV)
    emit({"kind": "idle", "what": "cuda context, nothing allocated", **idle_window(3.0)})
    guarded(lambda _m: ceilings(), None)
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = True

    s8 = Shape("llama3.1-8b", 32, 4096, 32, 8, 14336, 128256)
    m = Model(s8)
    emit({"kind": "model", "shape": s8.as_dict(), "params": m.params(), "weightsGiB": round(torch.cuda.memory_allocated() / 2**30, 2)})
    emit({"kind": "idle", "what": "8B weights resident, no kernels", **idle_window(3.0)})
    for ctx in (512, 2048, 8192):
        for B in (1, 8, 32, 64, 128, 256):
            if B * ctx > 1024 * 1024:
                continue
            guarded(measure_decode, m, B, ctx, "8b")
    for T in (512, 2048, 8192):
        guarded(measure_prefill, m, T, "8b")
    emit({"kind": "progress", "elapsedS": round(time.time() - t_start, 1)})
    del m
    torch.cuda.empty_cache()

    if time.time() - t_start < 300:
        s70 = Shape("llama3.1-70b-slice", 16, 8192, 64, 8, 28672, 128256)
        m = Model(s70)
        emit({"kind": "model", "shape": s70.as_dict(), "params": m.params(), "weightsGiB": round(torch.cuda.memory_allocated() / 2**30, 2)})
        for ctx in (2048,):
            for B in (1, 16, 64, 128):
                guarded(measure_decode, m, B, ctx, "70b-slice")
        for T in (2048,):
            guarded(measure_prefill, m, T, "70b-slice")
        del m
        torch.cuda.empty_cache()
    emit({"kind": "idle", "what": "after runs, nothing resident", **idle_window(2.0)})
    emit({"kind": "done", "elapsedS": round(time.time() - t_start, 1)})


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001
        emit({"kind": "error", "error": repr(e)})
        raise
    finally:
        LOG.close()
        sys.stdout.flush()

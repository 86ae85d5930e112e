/**
 * The data path's own cost: gateway -> NATS -> cluster manager -> pool manager -> instance manager ->
 * engine, against the same emulated engine called directly, in the same run. The engine runs with
 * --zero-delay (steps take no wall time), so what is measured is the path itself: added TTFT (p50/p99 of
 * sequential streaming requests, time to the first SSE token) and max throughput (closed loop, C
 * concurrent clients, short completions).
 */
import { freePort } from '../helpers/net.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchSection } from './types.ts';
import { percentile } from '../../src/sim/metrics.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(REPO, 'bin', 'dynamollm.js');
const MODEL = 'llama3.1-8b';
const SEQUENTIAL = 200;
const CONCURRENCY = 16;
const THROUGHPUT_S = 8;


async function waitFor(out: () => string, needle: string, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!out().includes(needle)) {
    if (Date.now() > until) throw new Error(`timed out waiting for '${needle}':\n${out().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Streaming completion; resolves with ms to the first token and to the end. */
async function one(base: string, model: string, maxTokens: number): Promise<{ ttftMs: number; totalMs: number }> {
  const t0 = performance.now();
  const r = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt: [1, 2, 3, 4, 5, 6, 7, 8], max_tokens: maxTokens, ignore_eos: true, stream: true }),
  });
  if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  let ttft = -1;
  const dec = new TextDecoder();
  let buf = '';
  for await (const part of r.body as unknown as AsyncIterable<Uint8Array>) {
    buf += dec.decode(part, { stream: true });
    if (ttft < 0 && /"text":"[^"]/.test(buf)) ttft = performance.now() - t0;
  }
  if (!buf.includes('[DONE]')) throw new Error('stream ended without [DONE]');
  return { ttftMs: ttft, totalMs: performance.now() - t0 };
}

async function measure(base: string, model: string): Promise<{ p50: number; p99: number; rps: number }> {
  for (let i = 0; i < 20; i++) await one(base, model, 4); // warm-up
  const ttfts: number[] = [];
  for (let i = 0; i < SEQUENTIAL; i++) ttfts.push((await one(base, model, 4)).ttftMs);
  let done = 0;
  const until = performance.now() + THROUGHPUT_S * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < until) {
        await one(base, model, 4);
        done++;
      }
    }),
  );
  return { p50: percentile(ttfts, 0.5), p99: percentile(ttfts, 0.99), rps: done / ((performance.now() - t0) / 1000) };
}

export async function bench(): Promise<BenchSection> {
  const procs: ChildProcess[] = [];
  let emuOut = '';
  let upOut = '';
  try {
    // 1. the engine alone
    const emuPort = await freePort();
    const emu = spawn(process.execPath, [BIN, 'engine-emulator', '--model', MODEL, '--tp', '1', '--port', String(emuPort), '--zero-delay', '--served-model-name', MODEL], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(emu);
    emu.stdout!.on('data', (d: Buffer) => (emuOut += d.toString()));
    await waitFor(() => emuOut, '"listening"', 30_000);
    const direct = await measure(`http://127.0.0.1:${emuPort}`, MODEL);
    emu.kill('SIGTERM');

    // 2. the whole path, one instance with the same zero-delay engine
    const dir = mkdtempSync(join(tmpdir(), 'dyn-bench-'));
    const cfg = join(dir, 'bench.json');
    writeFileSync(cfg, JSON.stringify({
      model: MODEL, gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.json',
      servers: [{ id: 'n0', gpus: 1 }],
      pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
      epochs: { clusterS: 3600, poolS: 3600, instanceS: 5 },
      engine: {
        kind: 'emulator', initialTp: 1, maxInEngine: 64, maxQueued: 1024, healthDeadlineMs: 30_000,
        command: process.execPath,
        args: [BIN, 'engine-emulator', '--model', MODEL, '--tp', '1', '--port', '0', '--zero-delay', '--served-model-name', MODEL, '--exit-on-stdin-close'],
      },
      gateway: { maxInflight: 4096 },
    }));
    const gp = await freePort();
    // up starts its own private NATS (per-actor credentials)
    const up = spawn(process.execPath, [BIN, 'up', '--config', cfg, '--port', String(gp), '--run-dir', dir], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'error' } });
    procs.push(up);
    up.stdout!.on('data', (d: Buffer) => (upOut += d.toString()));
    up.stderr!.on('data', (d: Buffer) => (upOut += d.toString()));
    await waitFor(() => upOut, 'cluster ready', 90_000);
    const path = await measure(`http://127.0.0.1:${gp}`, MODEL);
    const exited = new Promise((r) => up.once('exit', r));
    up.kill('SIGINT');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);

    const f = (x: number) => x.toFixed(2);
    return {
      title: 'Data path: gateway -> NATS -> managers -> engine vs the engine alone (zero-delay emulator)',
      notes: [
        `${SEQUENTIAL} sequential streaming completions (8-token prompt, 4 output tokens) for TTFT; ${CONCURRENCY} closed-loop clients for ${THROUGHPUT_S} s for throughput. Same emulator binary with --zero-delay both times; client, NATS and all actors share this machine's cores.`,
        `added TTFT p50 ${f(path.p50 - direct.p50)} ms, p99 ${f(path.p99 - direct.p99)} ms; throughput ratio path/direct ${f(path.rps / direct.rps)}`,
      ],
      rows: [
        { path: 'engine direct', 'TTFT p50 ms': f(direct.p50), 'TTFT p99 ms': f(direct.p99), 'max req/s': f(direct.rps) },
        { path: 'gateway -> NATS -> managers -> engine', 'TTFT p50 ms': f(path.p50), 'TTFT p99 ms': f(path.p99), 'max req/s': f(path.rps) },
      ],
    };
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  }
}

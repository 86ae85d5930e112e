/**
 * The gateway's HTTP client to the engine (src/engine/client.ts streamCompletionBatches): node:http with a
 * keep-alive Agent against the lean HTTP/1.1 client (src/engine/http1.ts, what the gateway's direct data path
 * uses), in one process against one zero-delay emulator, alternating blocks (A B B A ...) so that a loaded
 * machine weighs on both alike. CPU of this process (the client side only) per 4-token request and per
 * 256-token stream, 16 closed-loop streams. A second part times the transports alone (the body's bytes read,
 * no SSE parse), with undici's Pool beside them: the well-kept library the lean client is weighed against. A note
 * times the instance manager's /metrics scrape: the two prefix-cache counters only against the whole text.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { Agent, request as httpRequest } from 'node:http';
import { Pool } from 'undici';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchSection } from './types.ts';
import { streamCompletionBatches, type EngineTarget } from '../../src/engine/client.ts';
import { Http1Pool, http1Request } from '../../src/engine/http1.ts';
import { http1Text } from '../../src/engine/http1-text.ts';
import { parseVllmPrefixCache } from '../../src/engine/metrics-parse.ts';
import { PREFIX_CACHE_METRICS } from '../../src/engine/vllm.ts';
import { EngineStreamError } from '../../src/engine/errors.ts';
import { freePort } from '../helpers/net.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const MODEL = 'llama3.1-8b';
const C = 16;
const BLOCK_S = 3;
const ROUNDS = 4;
const UNDICI_VERSION: string = (createRequire(import.meta.url)('undici/package.json') as { version: string }).version;

export async function bench(): Promise<BenchSection> {
  const port = await freePort();
  const emu = spawn(process.execPath, [join(REPO, 'bin', 'dynamollm.js'), 'engine-emulator', '--model', MODEL, '--tp', '1', '--port', String(port), '--zero-delay', '--served-model-name', MODEL], { stdio: ['ignore', 'pipe', 'inherit'] });
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256, timeout: 4000 });
  const pool = new Http1Pool();
  try {
    let out = '';
    emu.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    for (const until = Date.now() + 30_000; !out.includes('"listening"');) {
      if (Date.now() > until) throw new Error(`the emulator did not start: ${out.slice(-500)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const classify = (c: unknown) => new EngineStreamError(String(c));
    const target = (k: 'node' | 'lean'): EngineTarget => (k === 'node' ? { host: '127.0.0.1', port, agent, defaultTimeoutMs: 30_000 } : { host: '127.0.0.1', port, pool, defaultTimeoutMs: 30_000 });
    const block = async (k: 'node' | 'lean', tokens: number): Promise<{ us: number; rps: number }> => {
      const t = target(k);
      const c0 = process.cpuUsage(), t0 = performance.now(), until = t0 + BLOCK_S * 1000;
      let n = 0;
      await Promise.all(Array.from({ length: C }, async () => {
        while (performance.now() < until) {
          let got = 0;
          for await (const b of streamCompletionBatches(t, { model: MODEL, prompt: 'one two three four five six seven eight', maxTokens: tokens, ignoreEos: true, requestId: `b-${n}` }, undefined, classify)) got += b.length;
          if (got < 1) throw new Error('no tokens');
          n++;
        }
      }));
      const c = process.cpuUsage(c0);
      return { us: (c.user + c.system) / n, rps: n / ((performance.now() - t0) / 1000) };
    };
    const rows: BenchSection['rows'] = [];
    const notes: string[] = [];
    for (const tokens of [4, 256]) {
      await block('node', tokens); // warm-up
      await block('lean', tokens);
      const us: Record<'node' | 'lean', number[]> = { node: [], lean: [] };
      for (let i = 0; i < ROUNDS; i++) {
        for (const k of (i % 2 ? ['lean', 'node'] : ['node', 'lean']) as ('node' | 'lean')[]) us[k].push((await block(k, tokens)).us);
      }
      const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
      const pairs = us.node.map((n, i) => (us.lean[i]! / n).toFixed(2));
      rows.push({ request: `${tokens} tokens`, 'node:http us/request': mean(us.node).toFixed(0), 'lean us/request': mean(us.lean).toFixed(0), 'lean / node:http': (mean(us.lean) / mean(us.node)).toFixed(2), 'per block pair': pairs.join(', '), 'undici us/request': '-', 'lean / undici': '-' });
    }
    // the transports alone: request out, every body byte in (node:http, the lean client, undici's Pool)
    const upool = new Pool(`http://127.0.0.1:${port}`, { connections: 4 * C, pipelining: 1 });
    try {
      type T = 'node:http' | 'lean' | 'undici';
      const post = (tokens: number) => JSON.stringify({ model: MODEL, prompt: 'one two three four five six seven eight', max_tokens: tokens, ignore_eos: true, stream: true });
      const send: Record<T, (b: string) => Promise<number>> = {
        'node:http': (b) => new Promise((res, rej) => {
          const r = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/v1/completions', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) } }, (resp) => {
            let n = 0;
            resp.on('data', (d: Buffer) => (n += d.length));
            resp.on('end', () => res(n));
            resp.on('error', rej);
          });
          r.on('error', rej);
          r.end(b);
        }),
        lean: async (b) => {
          const r = await http1Request(pool, { host: '127.0.0.1', port, method: 'POST', path: '/v1/completions', headers: { 'content-type': 'application/json' }, body: b });
          let n = 0;
          for (let c = await r.next(); c; c = await r.next()) n += c.length;
          r.close();
          return n;
        },
        undici: async (b) => {
          const r = await upool.request({ method: 'POST', path: '/v1/completions', headers: { 'content-type': 'application/json' }, body: b });
          let n = 0;
          for await (const c of r.body) n += (c as Buffer).length;
          return n;
        },
      };
      const tblock = async (k: T, tokens: number): Promise<number> => {
        const b = post(tokens);
        const c0 = process.cpuUsage(), until = performance.now() + BLOCK_S * 1000;
        let n = 0;
        await Promise.all(Array.from({ length: C }, async () => {
          while (performance.now() < until) {
            if ((await send[k](b)) < 16) throw new Error(`${k}: no body`);
            n++;
          }
        }));
        const c = process.cpuUsage(c0);
        return (c.user + c.system) / n;
      };
      const kinds: T[] = ['node:http', 'lean', 'undici'];
      for (const tokens of [4, 256]) {
        for (const k of kinds) await tblock(k, tokens); // warm-up
        const us: Record<T, number[]> = { 'node:http': [], lean: [], undici: [] };
        for (let i = 0; i < ROUNDS; i++) for (const k of i % 2 ? [...kinds].reverse() : kinds) us[k].push(await tblock(k, tokens));
        const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
        rows.push({ request: `${tokens} tokens, transport only`, 'node:http us/request': mean(us['node:http']).toFixed(0), 'lean us/request': mean(us.lean).toFixed(0), 'lean / node:http': (mean(us.lean) / mean(us['node:http'])).toFixed(2), 'per block pair': '-', 'undici us/request': mean(us.undici).toFixed(0), 'lean / undici': (mean(us.lean) / mean(us.undici)).toFixed(2) });
      }
    } finally {
      await upool.close();
    }
    // the instance manager's scrape of its engine's prefix-cache counters (once a second while requests run): the two
    // counters only (`name[]`, PREFIX_CACHE_METRICS) against the whole text, both read by parseVllmPrefixCache
    const scrape = async (path: string, n: number): Promise<number> => {
      const c0 = process.cpuUsage();
      for (let i = 0; i < n; i++) {
        const r = await http1Text(pool, { host: '127.0.0.1', port, method: 'GET', path, headers: {}, body: '' }, 5000);
        if (!parseVllmPrefixCache(r.text)) throw new Error(`${path}: no prefix-cache counters`);
      }
      const c = process.cpuUsage(c0);
      return (c.user + c.system) / n;
    };
    await scrape('/metrics', 100);
    await scrape(PREFIX_CACHE_METRICS, 100);
    const sc: { lean: number[]; whole: number[] } = { lean: [], whole: [] };
    for (let i = 0; i < ROUNDS; i++) {
      for (const k of i % 2 ? (['whole', 'lean'] as const) : (['lean', 'whole'] as const)) sc[k].push(await scrape(k === 'lean' ? PREFIX_CACHE_METRICS : '/metrics', 200));
    }
    const avg = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    notes.push(`The instance manager's /metrics scrape (its prefix-cache counters, lean client, parseVllmPrefixCache), ${ROUNDS} alternating blocks of 200 sequential reads: the two counters only (name[], src/engine/vllm.ts PREFIX_CACHE_METRICS) ${avg(sc.lean).toFixed(0)} us of this process's CPU per read against ${avg(sc.whole).toFixed(0)} us for the whole text (${(avg(sc.lean) / avg(sc.whole)).toFixed(2)}x).`);
    notes.push(`${C} closed-loop streams against one zero-delay emulator, ${ROUNDS} blocks of ${BLOCK_S} s per client alternating; CPU of the client process only (process.cpuUsage), per completed request. "transport only" rows: the raw response bytes read, no SSE parse, with undici ${UNDICI_VERSION}'s Pool (a devDependency, for this comparison only).`);
    return { title: "Engine client: node:http + Agent vs the lean HTTP/1.1 client (the gateway's direct data path)", notes, rows };
  } finally {
    agent.destroy();
    pool.destroy();
    emu.kill('SIGTERM');
  }
}

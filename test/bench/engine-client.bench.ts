/**
 * The gateway's HTTP client to the engine (src/engine/client.ts streamCompletionBatches): node:http with a
 * keep-alive Agent against the lean HTTP/1.1 client (src/engine/http1.ts, what the gateway's direct data path
 * uses), in one process against one zero-delay emulator, alternating blocks (A B B A ...) so that a loaded
 * machine weighs on both alike. CPU of this process (the client side only) per 4-token request and per
 * 256-token stream, 16 closed-loop streams.
 */
import { spawn } from 'node:child_process';
import { Agent } from 'node:http';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchSection } from './types.ts';
import { streamCompletionBatches, type EngineTarget } from '../../src/engine/client.ts';
import { Http1Pool } from '../../src/engine/http1.ts';
import { EngineStreamError } from '../../src/engine/errors.ts';
import { freePort } from '../helpers/net.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const MODEL = 'llama3.1-8b';
const C = 16;
const BLOCK_S = 3;
const ROUNDS = 4;

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
      rows.push({ request: `${tokens} tokens`, 'node:http us/request': mean(us.node).toFixed(0), 'lean us/request': mean(us.lean).toFixed(0), 'lean / node:http': (mean(us.lean) / mean(us.node)).toFixed(2), 'per block pair': pairs.join(', ') });
    }
    notes.push(`${C} closed-loop streams against one zero-delay emulator, ${ROUNDS} blocks of ${BLOCK_S} s per client alternating; CPU of the client process only (process.cpuUsage), per completed request.`);
    return { title: "Engine client: node:http + Agent vs the lean HTTP/1.1 client (the gateway's direct data path)", notes, rows };
  } finally {
    agent.destroy();
    pool.destroy();
    emu.kill('SIGTERM');
  }
}

/**
 * Added TTFT of code A against code B on one host, against the engine alone in the same run: the datapath bench's
 * sequential TTFT (test/bench/datapath.bench.ts: streamed 4-token completions of an 8-token-id prompt, one at a time,
 * `fetch`, the time to the first SSE text) sent to the engine alone (a zero-delay emulator of its own) and to each
 * tree's cluster (`dynamollm up` from the tree's built CLI, the bench's one-instance direct-path config), all up at
 * once, in interleaved blocks of BLOCK requests (the targets in turn, the order rotated each round), after a
 * closed-loop warm-up of each (WARM_S seconds, 16 clients). A noisy host's slow spells fall on every target alike.
 *   npm run build (in each tree); nice -n 10 npx tsx scripts/ttft-ab.ts <treeA> [treeB ...]
 * A target `KEY=VALUE,...@tree` runs its cluster with that environment (one tree with and without a setting).
 * Env: SEQ (requests per target, 1000), BLOCK (100), WARM_S (10), QS (the quantiles reported, 0.5,0.9,0.99).
 * Per target: TTFT p50/p99 (client side), the requests past the engine alone's p50 + 1 ms, and, for the trees, the
 * added TTFT (the quantile less the engine alone's); with SPLIT=1 also the p99 of each consecutive 1,000 of the SEQ
 * (a larger sample's p99 against its parts': how much a 1,000-request p99 moves).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { one } from '../test/bench/ttft-trace.ts';
import { freePort } from '../test/helpers/net.ts';

/** each target's tree and the environment its cluster gets (`KEY=VALUE,KEY=VALUE@tree`: the same tree with and without a setting). */
const trees = process.argv.slice(2).map((arg) => {
  const at = arg.lastIndexOf('@');
  const env = at < 0 ? {} : Object.fromEntries(arg.slice(0, at).split(',').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  return { tree: resolve(at < 0 ? arg : arg.slice(at + 1)), env, arg };
});
if (trees.length === 0) throw new Error('usage: ttft-ab.ts [KEY=VALUE,...@]<treeA> [[KEY=VALUE,...@]treeB ...]');
const MODEL = 'llama3.1-8b';
const SEQ = Number(process.env.SEQ ?? 1000);
const BLOCK = Number(process.env.BLOCK ?? 100);
const WARM_S = Number(process.env.WARM_S ?? 10);
const SPLIT = process.env.SPLIT === '1';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function waitFor(out: () => string, needle: string, proc: ChildProcess, what: string): Promise<void> {
  for (const t0 = Date.now(); !out().includes(needle); await sleep(200)) {
    if (Date.now() - t0 > 120_000 || proc.exitCode !== null) throw new Error(`${what} did not start: ${out().slice(-1500)}`);
  }
}

interface Target { name: string; base: string; proc: ChildProcess; ttfts: number[] }

async function cluster(tree: string, name: string, env: Record<string, string>): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), 'ttft-ab-'));
  const cfg = join(dir, 'cluster.json');
  writeFileSync(cfg, JSON.stringify({
    model: MODEL, gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.tp1.json', servers: [{ id: 'n0', gpus: 1 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 3600, poolS: 3600, instanceS: 5 },
    engine: { kind: 'emulator', initialTp: 1, maxInEngine: 64, maxQueued: 1024, healthDeadlineMs: 30_000, args: ['--zero-delay'] },
    gateway: { maxInflight: 4096, dataPath: 'direct', requestPlane: 'direct', workers: 1, dataPlane: 'js' },
  }));
  const port = await freePort();
  let out = '';
  const up = spawn(process.execPath, [join(tree, 'bin', 'dynamollm.js'), 'up', '--config', cfg, '--port', String(port), '--run-dir', dir, '--gateway-standbys', '0'], {
    cwd: tree, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'error', ...env },
  });
  up.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  up.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor(() => out, 'cluster ready', up, tree);
  return { name, base: `http://127.0.0.1:${port}`, proc: up, ttfts: [] };
}

async function engineAlone(tree: string): Promise<Target> {
  const port = await freePort();
  let out = '';
  const emu = spawn(process.execPath, [join(tree, 'bin', 'dynamollm.js'), 'engine-emulator', '--model', MODEL, '--tp', '1', '--port', String(port), '--zero-delay', '--served-model-name', MODEL], { cwd: tree, stdio: ['ignore', 'pipe', 'pipe'] });
  emu.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor(() => out, '"listening"', emu, 'the engine alone');
  return { name: 'engine alone', base: `http://127.0.0.1:${port}`, proc: emu, ttfts: [] };
}

/** One streamed 4-token completion: ms to its first token (the datapath bench's probe). */
const ttftOf = async (base: string): Promise<number> => (await one(base, MODEL, 4)).ttftMs;

const q = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!;
};

const targets: Target[] = [];
try {
  targets.push(await engineAlone(trees[0]!.tree));
  for (const [i, t] of trees.entries()) targets.push(await cluster(t.tree, `${String.fromCharCode(65 + i)} ${t.arg}`, t.env));
  for (const t of targets) {
    for (let i = 0; i < 20; i++) await ttftOf(t.base);
    const until = performance.now() + WARM_S * 1000;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (performance.now() < until) await ttftOf(t.base);
    }));
  }
  await sleep(500);
  const t0 = Date.now();
  for (let round = 0; round * BLOCK < SEQ; round++) {
    const n = Math.min(BLOCK, SEQ - round * BLOCK);
    for (let k = 0; k < targets.length; k++) {
      const t = targets[(k + round) % targets.length]!;
      for (let i = 0; i < n; i++) t.ttfts.push(await ttftOf(t.base));
    }
  }
  const base = targets[0]!.ttfts;
  const bar = q(base, 0.5) + 1;
  process.stdout.write(`${new Date().toISOString()}: ${SEQ} sequential requests per target in blocks of ${BLOCK}, interleaved (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
  for (const t of targets) {
    const added = t === targets[0] ? '' : `; added p50 ${(q(t.ttfts, 0.5) - q(base, 0.5)).toFixed(3)} p99 ${(q(t.ttfts, 0.99) - q(base, 0.99)).toFixed(3)} ms`;
    const split = SPLIT ? `; p99 of each 1,000: ${Array.from({ length: Math.floor(t.ttfts.length / 1000) }, (_, i) => q(t.ttfts.slice(i * 1000, (i + 1) * 1000), 0.99).toFixed(3)).join(', ')}` : '';
    process.stdout.write(`  ${t.name}: p50 ${q(t.ttfts, 0.5).toFixed(3)} p90 ${q(t.ttfts, 0.9).toFixed(3)} p99 ${q(t.ttfts, 0.99).toFixed(3)} max ${Math.max(...t.ttfts).toFixed(3)} ms; ` +
      `over the engine alone's p50 + 1 ms: ${t.ttfts.filter((x) => x > bar).length}${added}${split}\n`);
  }
} finally {
  for (const t of targets) t.proc.kill('SIGINT');
  await sleep(1000);
}

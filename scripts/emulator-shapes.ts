/**
 * The engine's CPU per request for each request shape a client can send it: the emulator (`engine-emulator
 * --zero-delay`, as the datapath bench runs it) driven by the bench's closed-loop client (test/bench/closed-loop-client.ts,
 * the lean HTTP/1.1 client), its CPU read from /proc/<pid>/stat, in blocks that alternate between the shapes, so that
 * the ratios are of one run on one host. Shapes:
 *   bench    the datapath bench's request (8 token ids, max_tokens 4, ignore_eos, stream), Content-Type only
 *   usage    the gateway's body for it (src/engine/client.ts completionPayload: stream_options.include_usage)
 *   rid      the bench's body with an x-request-id header (the gateway's request id)
 *   auth     the bench's body with `Authorization: Bearer <key>` to an emulator started with VLLM_API_KEY (the
 *            instance manager starts its engine with a key)
 *   gateway  all three: what the gateway's direct path sends its engine
 * Loads: `closed` (CLIENTS clients, each sending as soon as its last request ended: the engine saturated, as the
 * bench's engine-alone loop) and a number R (the same clients paced at R requests/s in all: the engine idle between
 * requests, as it is behind the gateway, which sends it a few thousand a second).
 *   npx tsx scripts/emulator-shapes.ts [--seconds 3] [--rounds 3] [--clients 16] [--loads closed,3000]
 *     [--shapes bench,usage,rid,auth,gateway] [--cpu-prof-dir DIR (the emulators' V8 CPU profiles)]
 * Needs dist/ (npm run build): the emulator runs as bin/dynamollm.js, as in the bench.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort } from '../test/helpers/net.ts';
import { completionBody, requester } from '../test/bench/closed-loop-client.ts';
import { completionPayload } from '../src/engine/client.ts';

const { values } = parseArgs({ options: {
  seconds: { type: 'string', default: '3' }, rounds: { type: 'string', default: '3' }, clients: { type: 'string', default: '16' },
  'cpu-prof-dir': { type: 'string' }, loads: { type: 'string', default: 'closed,3000' }, shapes: { type: 'string', default: 'bench,usage,rid,auth,gateway' },
} });
const SECONDS = Number(values.seconds), ROUNDS = Number(values.rounds), CLIENTS = Number(values.clients);
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(REPO, 'bin', 'dynamollm.js');
const MODEL = 'llama3.1-8b';
const KEY = 'k3y-of-the-instance-manager-24b';
const TICK_US = 1e6 / 100; // /proc/<pid>/stat's clock ticks (CLK_TCK 100)

/** utime + stime of `pid`, us. */
const cpuUs = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_US;
};

async function emulator(apiKey?: string): Promise<{ p: ChildProcess; base: string }> {
  const port = await freePort();
  const prof = values['cpu-prof-dir'] ? ['--cpu-prof', '--cpu-prof-dir', values['cpu-prof-dir']] : [];
  const p = spawn(process.execPath, [...prof, BIN, 'engine-emulator', '--model', MODEL, '--tp', '1', '--port', String(port), '--zero-delay', '--served-model-name', MODEL],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...(apiKey ? { VLLM_API_KEY: apiKey } : {}) } });
  let out = '';
  await new Promise<void>((ok, fail) => {
    p.stdout!.on('data', (d: Buffer) => ((out += d.toString()), out.includes('"listening"') && ok()));
    p.once('exit', () => fail(new Error(`emulator exited: ${out}`)));
  });
  return { p, base: `http://127.0.0.1:${port}` };
}

const benchBody = completionBody(MODEL, 4);
const gatewayBody = completionPayload({ model: MODEL, prompt: [1, 2, 3, 4, 5, 6, 7, 8], maxTokens: 4, ignoreEos: true });
let n = 0;
const rid = () => ({ 'x-request-id': `req-${(++n).toString(36).padStart(8, '0')}-5f0e8a2c` });
const auth = () => ({ authorization: `Bearer ${KEY}` });

const [plain, keyed] = await Promise.all([emulator(), emulator(KEY)]);
const SHAPES = {
  bench: { emu: plain, body: benchBody, extra: undefined },
  usage: { emu: plain, body: gatewayBody, extra: undefined },
  rid: { emu: plain, body: benchBody, extra: rid },
  auth: { emu: keyed, body: benchBody, extra: auth },
  gateway: { emu: keyed, body: gatewayBody, extra: () => ({ ...rid(), ...auth() }) },
} as const;
type Shape = keyof typeof SHAPES;
const shapes = values.shapes.split(',') as Shape[];
/** 'closed', or a paced load's requests/s */
const loads = values.loads.split(',').map((l) => (l === 'closed' ? l : Number(l)));
type Load = (typeof loads)[number];

/** One block: `shape` under `load` for SECONDS; the engine's CPU us per request and the requests/s. */
async function block(shape: Shape, load: Load): Promise<{ us: number; rps: number }> {
  const s = SHAPES[shape];
  const send = requester('http1', s.emu.base, s.body, s.extra);
  const pid = s.emu.p.pid!;
  const c0 = cpuUs(pid), t0 = performance.now(), until = t0 + SECONDS * 1000;
  let done = 0;
  await Promise.all(Array.from({ length: CLIENTS }, async (_, i) => {
    // paced at R/s: client i sends at t0 + (i + k * CLIENTS) / R s (R/s in all), or at once when late
    for (let k = 0; performance.now() < until; k++) {
      if (load !== 'closed') {
        const at = t0 + ((i + k * CLIENTS) / load) * 1000;
        const wait = at - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        if (performance.now() >= until) break;
      }
      if (await send()) done++;
    }
  }));
  const wall = (performance.now() - t0) / 1000;
  const us = (cpuUs(pid) - c0) / done;
  send.close();
  return { us, rps: done / wall };
}

const rows: Record<string, { us: number[]; rps: number[] }> = {};
try {
  for (const load of loads) for (const shape of shapes) await block(shape, load); // warm-up: every shape once
  for (let r = 0; r < ROUNDS; r++) {
    for (const load of loads) {
      // alternate the order every round, so that no shape always follows the same one
      for (const shape of r % 2 ? [...shapes].reverse() : shapes) {
        const b = await block(shape, load);
        const row = (rows[`${load} ${shape}`] ??= { us: [], rps: [] });
        row.us.push(b.us);
        row.rps.push(b.rps);
      }
    }
  }
} finally {
  // each emulator's exit (its CPU profile written, when asked for)
  await Promise.all([plain.p, keyed.p].map((p) => new Promise((r) => (p.once('exit', r), p.kill('SIGTERM')))));
}
const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
process.stdout.write(`| load | shape | engine CPU us/request (median of ${ROUNDS}) | x bench, same load | req/s |\n|---|---|---|---|---|\n`);
for (const load of loads) {
  const base = med(rows[`${load} bench`]?.us ?? [NaN]);
  for (const shape of shapes) {
    const row = rows[`${load} ${shape}`]!;
    process.stdout.write(`| ${load === 'closed' ? load : `${load}/s`} | ${shape} | ${med(row.us).toFixed(1)} (${row.us.map((u) => u.toFixed(0)).join(', ')}) | ${(med(row.us) / base).toFixed(2)} | ${med(row.rps).toFixed(0)} |\n`);
  }
}

/**
 * What the instance manager receives and sends per short request, counted in its own process: the datapath bench's
 * one-instance cluster (`dynamollm up` from a tree's built CLI, zero-delay emulator, direct path, as
 * scripts/gateway-ab.ts), its closed loop (16 clients, streamed 4-token completions of an 8-token-id prompt), WARM
 * requests, then a window of N requests. A module every node process of the cluster imports (NODE_OPTIONS) acts only
 * in `actor instance`: between two SIGUSR2 it counts the NATS protocol lines on its sockets (`MSG`/`HMSG` read, `PUB`/
 * `HPUB` written, by subject, a request id or inbox token shown as `<id>`), its socket reads and writes and their bytes,
 * and its process.cpuUsage(); with PROFILE=1 it runs V8's sampling CPU profiler over the window instead of counting and
 * prints the top functions by self and inclusive samples (idle left out).
 *   npm run build (in each tree); nice -n 10 npx tsx scripts/instance-messages.ts [tree ...]
 * Env: N (2000), WARM (800), PROFILE=1, TOP (30).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from '../test/helpers/net.ts';

const TREES = process.argv.length > 2 ? process.argv.slice(2).map((t) => resolve(t)) : [process.cwd()];
const MODEL = 'llama3.1-8b';
const N = Number(process.env.N ?? 2000);
const WARM = Number(process.env.WARM ?? 800);
const PROFILE = process.env.PROFILE === '1';
const TOP = Number(process.env.TOP ?? 30);

/** The window's module (plain JavaScript, imported by every process; it acts in the instance manager only). */
const PRELOAD = `
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import net from 'node:net';
const a = process.argv.indexOf('actor');
if (a >= 0 && process.argv[a + 1] === 'instance') {
  const dir = process.env.DYN_IMSG_DIR, profile = process.env.DYN_IMSG_PROFILE === '1';
  writeFileSync(dir + '/pid', String(process.pid));
  const c = { writes: 0, bytesOut: 0, reads: 0, bytesIn: 0, msgIn: 0, msgOut: 0, subjectsIn: {}, subjectsOut: {} };
  const key = (s) => s.replace(/\\.[A-Za-z0-9_-]{16,}$/, '.<id>').replace(/^(_INBOX\\.[^.]+\\.[^.]+)\\..*$/, '$1.<id>');
  const lines = (d, re, n, by) => { for (const m of Buffer.from(d).toString('latin1').matchAll(re)) { c[n]++; const k = key(m[1]); c[by][k] = (c[by][k] ?? 0) + 1; } };
  let on = false, session, cpu0;
  const write = net.Socket.prototype.write;
  net.Socket.prototype.write = function (d, ...rest) {
    if (on) { c.writes++; c.bytesOut += d.length; lines(d, /(?:^|\\r\\n)H?PUB ([^ ]+)/g, 'msgOut', 'subjectsOut'); }
    return write.call(this, d, ...rest);
  };
  const emit = net.Socket.prototype.emit;
  net.Socket.prototype.emit = function (ev, d, ...rest) {
    if (on && ev === 'data') { c.reads++; c.bytesIn += d.length; lines(d, /(?:^|\\r\\n)H?MSG ([^ ]+)/g, 'msgIn', 'subjectsIn'); }
    return emit.call(this, ev, d, ...rest);
  };
  process.on('SIGUSR2', () => {
    if (!on && !session) {
      if (profile) {
        session = new Session();
        session.connect();
        session.post('Profiler.enable');
        session.post('Profiler.setSamplingInterval', { interval: 200 });
        session.post('Profiler.start');
      } else {
        on = true;
        cpu0 = process.cpuUsage();
      }
      return;
    }
    if (session) {
      session.post('Profiler.stop', (err, r) => { writeFileSync(dir + '/window.json', JSON.stringify({ profile: r?.profile })); session.disconnect(); session = undefined; });
      return;
    }
    on = false;
    writeFileSync(dir + '/window.json', JSON.stringify({ counts: c, cpu: process.cpuUsage(cpu0) }));
  });
}
`;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function one(base: string): Promise<void> {
  const r = await fetch(`${base}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, prompt: [1, 2, 3, 4, 5, 6, 7, 8], max_tokens: 4, ignore_eos: true, stream: true }),
  });
  const t = await r.text();
  if (!t.includes('[DONE]')) throw new Error(`a request did not end with [DONE]: ${t.slice(-300)}`);
}

async function loop(base: string, n: number): Promise<void> {
  let sent = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (sent++ < n) await one(base);
  }));
}

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }

/** The profile's top functions by self and by inclusive samples, as shares of the busy (not idle) samples. */
function summary(p: { nodes: ProfileNode[]; samples: number[] }, tree: string): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const ch of n.children ?? []) parent.set(ch, n.id);
  const name = (n: ProfileNode) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(`file://${tree}/`, '').replace(/.*\/node_modules\//, '')}:${n.callFrame.lineNumber + 1}`;
  const self = new Map<string, number>(), incl = new Map<string, number>();
  let busy = 0;
  for (const s of p.samples) {
    const n = byId.get(s)!;
    if (n.callFrame.functionName === '(idle)') continue;
    busy++;
    self.set(name(n), (self.get(name(n)) ?? 0) + 1);
    const seen = new Set<string>();
    for (let x: number | undefined = s; x !== undefined; x = parent.get(x)) {
      const k = name(byId.get(x)!);
      if (!seen.has(k)) incl.set(k, (incl.get(k) ?? 0) + 1);
      seen.add(k);
    }
  }
  const top = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, TOP).map(([k, v]) => `  ${((100 * v) / busy).toFixed(1).padStart(5)}% ${k}`).join('\n');
  return `busy samples ${busy}\nself:\n${top(self)}\ninclusive:\n${top(incl)}`;
}

for (const tree of TREES) {
  const dir = mkdtempSync(join(tmpdir(), 'instance-messages-'));
  const cfg = join(dir, 'cluster.json');
  writeFileSync(join(dir, 'preload.mjs'), PRELOAD);
  writeFileSync(cfg, JSON.stringify({
    model: MODEL, gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.tp1.json', servers: [{ id: 'n0', gpus: 1 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 3600, poolS: 3600, instanceS: 5 },
    engine: { kind: 'emulator', initialTp: 1, maxInEngine: 64, maxQueued: 1024, healthDeadlineMs: 30_000, args: ['--zero-delay'] },
    gateway: { maxInflight: 4096, dataPath: 'direct', requestPlane: 'direct' },
  }));
  const port = await freePort();
  let out = '';
  const up = spawn(process.execPath, [join(tree, 'bin', 'dynamollm.js'), 'up', '--config', cfg, '--port', String(port), '--run-dir', dir], {
    cwd: tree, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'error', DYN_IMSG_DIR: dir, DYN_IMSG_PROFILE: PROFILE ? '1' : '0', NODE_OPTIONS: `--import ${join(dir, 'preload.mjs')} ${process.env.NODE_OPTS ?? ''}` },
  });
  up.stdout.on('data', (d: Buffer) => (out += d.toString()));
  up.stderr.on('data', (d: Buffer) => (out += d.toString()));
  try {
    for (const t0 = Date.now(); !out.includes('cluster ready'); await sleep(200)) {
      if (Date.now() - t0 > 120_000 || up.exitCode !== null) throw new Error(`${tree}: the cluster did not start: ${out.slice(-1500)}`);
    }
    const base = `http://127.0.0.1:${port}`;
    await loop(base, WARM);
    const pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
    process.kill(pid, 'SIGUSR2');
    await sleep(200);
    const t0 = performance.now();
    await loop(base, N);
    const s = (performance.now() - t0) / 1000;
    process.kill(pid, 'SIGUSR2');
    for (const until = Date.now() + 30_000; !existsSync(join(dir, 'window.json')); await sleep(50)) if (Date.now() > until) throw new Error('the instance did not end its window');
    await sleep(100);
    const w = JSON.parse(readFileSync(join(dir, 'window.json'), 'utf8')) as { counts?: Record<string, number | Record<string, number>>; cpu?: { user: number; system: number }; profile?: { nodes: ProfileNode[]; samples: number[] } };
    if (w.profile) {
      console.log(`${tree}: ${N} requests, ${(N / s).toFixed(1)} requests/s\n${summary(w.profile, tree)}`);
      continue;
    }
    const per = (v: number) => +(v / N).toFixed(3);
    const perMap = (m: Record<string, number>) => Object.fromEntries(Object.entries(m).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, per(v)]));
    const c = w.counts!;
    console.log(JSON.stringify({
      tree, requests: N, reqPerS: +(N / s).toFixed(1),
      perRequest: {
        msgIn: per(c.msgIn as number), msgOut: per(c.msgOut as number), reads: per(c.reads as number), writes: per(c.writes as number),
        bytesIn: per(c.bytesIn as number), bytesOut: per(c.bytesOut as number), cpuUs: per((w.cpu!.user + w.cpu!.system)),
        subjectsIn: perMap(c.subjectsIn as Record<string, number>), subjectsOut: perMap(c.subjectsOut as Record<string, number>),
      },
    }));
  } finally {
    up.kill('SIGINT');
    await sleep(3000);
  }
}

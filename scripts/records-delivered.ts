/**
 * Messages the NATS server delivers to each manager per request under load: `dynamollm up` (the compiled CLI: run
 * `npm run build` first) on one emulated GPU stepping in wall time, its private nats-server started with a monitoring
 * port (NATS_SERVER_BIN: a wrapper adding `-m`), `clients` closed-loop clients streaming short completions through the
 * gateway for `seconds`. Each connection's `out_msgs` (nats-server /connz: messages sent to that client) over an idle
 * window of the same length, then over the loaded window; printed per connection: the loaded window's messages, the
 * idle one's, and (loaded - idle) per completed request; a gateway's connection also per subscription (its subject),
 * which tells its messages apart: the records (`dyn.v1.tel.req.*`), its reply inbox, the rest. `plane`: the gateway's
 * requestPlane (direct: the gateway routes each request itself, the default; intake: every request through the
 * cluster intake and the pool leader). `workers`: the gateway's worker processes (gateway.workers), each its own
 * connection (`gateway/<id>-w<i>`).
 *
 *   nice -n 10 npx tsx scripts/records-delivered.ts [seconds=20] [clients=16] [plane=direct] [workers=1]
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/helpers/net.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MODEL = 'llama3.1-8b';
const seconds = Number(process.argv[2] ?? 20);
const clients = Number(process.argv[3] ?? 16);
const plane = process.argv[4] ?? 'direct';
const workers = Number(process.argv[5] ?? 1);
if (!(seconds > 0) || !(clients > 0) || !['direct', 'intake'].includes(plane) || !(workers >= 1)) throw new Error('usage: records-delivered.ts [seconds>0] [clients>0] [direct|intake] [workers>=1]');

const dir = mkdtempSync(join(tmpdir(), 'records-delivered-'));
const monitor = await freePort();
const wrapper = join(dir, 'nats-server');
writeFileSync(wrapper, `#!/bin/sh\nexec ${process.env.NATS_SERVER_BIN ?? 'nats-server'} -m ${monitor} "$@"\n`);
chmodSync(wrapper, 0o755);
const cfg = join(dir, 'cluster.json');
writeFileSync(cfg, JSON.stringify({
  model: MODEL, gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.tp1.json', servers: [{ id: 'n0', gpus: 1 }],
  pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
  epochs: { clusterS: 3600, poolS: 3600, instanceS: 5 },
  engine: { kind: 'emulator', initialTp: 1, maxInEngine: 64, maxQueued: 1024, healthDeadlineMs: 30_000 },
  gateway: { maxInflight: 4096, requestPlane: plane, workers },
}));
const gp = await freePort();
const up = spawn(process.execPath, [join(REPO, 'bin', 'dynamollm.js'), 'up', '--config', cfg, '--port', String(gp), '--run-dir', dir], {
  cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'error', NATS_SERVER_BIN: wrapper },
});
let out = '';
up.stdout!.on('data', (d: Buffer) => (out += d.toString()));
up.stderr!.on('data', (d: Buffer) => (out += d.toString()));
const stop = () => new Promise((r) => (up.once('exit', r), up.kill('SIGINT'), setTimeout(r, 30_000)));

try {
  for (const until = Date.now() + 120_000; !out.includes('cluster ready'); await new Promise((r) => setTimeout(r, 200))) {
    if (Date.now() > until || up.exitCode !== null) throw new Error(`no cluster ready: ${out.slice(-2000)}`);
  }
  const base = `http://127.0.0.1:${gp}`;
  const one = async (): Promise<boolean> => {
    const r = await fetch(`${base}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, prompt: Array.from({ length: 200 }, (_, i) => 100 + i), max_tokens: 32, min_tokens: 32, ignore_eos: true, stream: true }),
    });
    const text = await r.text();
    return r.ok && text.includes('[DONE]');
  };
  const loop = async (s: number): Promise<number> => {
    let done = 0;
    const until = performance.now() + s * 1000;
    await Promise.all(Array.from({ length: clients }, async () => {
      while (performance.now() < until) if (await one()) done++;
    }));
    return done;
  };
  const connz = async (): Promise<Map<string, number>> => {
    const j = (await (await fetch(`http://127.0.0.1:${monitor}/connz?limit=4096&subs=detail`)).json()) as {
      connections: { cid: number; name?: string; out_msgs: number; subscriptions_list_detail?: { subject: string; sid: string; msgs: number }[] }[];
    };
    const m = new Map<string, number>();
    for (const c of j.connections) {
      m.set(`${c.name ?? '-'} #${c.cid}`, c.out_msgs);
      // the gateway's, per subscription: which subjects its messages come on
      if (c.name?.startsWith('gateway/')) for (const d of c.subscriptions_list_detail ?? []) m.set(`${c.name} #${c.cid} sub ${d.subject} (sid ${d.sid})`, d.msgs);
    }
    return m;
  };
  await loop(3); // warm-up
  const i0 = await connz();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const i1 = await connz();
  const l0 = await connz();
  const requests = await loop(seconds);
  const l1 = await connz();
  console.log(`${new Date().toISOString()} requestPlane ${plane}, ${workers} gateway worker(s), ${clients} clients, ${seconds} s: ${requests} requests (${(requests / seconds).toFixed(1)}/s)`);
  console.log('connection | messages loaded | messages idle | per request (loaded - idle)');
  for (const [k, v] of [...l1].sort((a, b) => a[0].localeCompare(b[0]))) {
    if (!l0.has(k) || !i0.has(k) || !i1.has(k)) continue;
    const loaded = v - l0.get(k)!, idle = i1.get(k)! - i0.get(k)!;
    if (k.includes(' sub ') && loaded === 0 && idle === 0) continue; // a subscription that got nothing
    console.log(`${k} | ${loaded} | ${idle} | ${((loaded - idle) / requests).toFixed(2)}`);
  }
} finally {
  await stop();
}

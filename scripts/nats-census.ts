/**
 * NATS messages per short request, by subject, kind and process, with W gateway workers: the datapath bench's
 * one-instance cluster (scripts/bench-cluster.ts: zero-delay emulator, direct path, gateway.dataPlane js, no standby),
 * a closed loop of 16 clients (streamed 4-token completions of an 8-token-id prompt, test/bench/closed-loop.ts) for
 * SECONDS after WARM seconds, then IDLE seconds without load (the background rate, per second).
 * Two views of the same window:
 * - the clients' (a module every node process imports, NODE_OPTIONS): each NATS socket's protocol stream parsed both
 *   ways, `PUB`/`HPUB` and `SUB`/`UNSUB` written and `MSG`/`HMSG` read, by subject (a request id or inbox token as
 *   `<id>`, a worker index as `w*`), by process role; the counts written on SIGUSR2.
 * - nats-server's (its monitoring port, added to the config `up` writes): /varz in and out messages, /subsz inserts,
 *   removes and matches, /connz per connection (messages in and out, subscriptions), /jsz API calls and stored
 *   messages; and its CPU (utime + stime) over the window.
 *   npm run build; W=8 nice -n 10 npx tsx scripts/nats-census.ts [tree]
 * Env: W (1), SECONDS (20), WARM (5), IDLE (8), CLIENTS (16), PLANE (js), ENGINE (engine settings over the bench's, JSON),
 * JSON=<file> (the raw figures).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { completionBody } from '../test/bench/closed-loop-client.ts';
import { LoopThreads } from '../test/bench/closed-loop.ts';
import { cpuMs, tree } from '../test/bench/datapath-cpu.ts';
import { freePort } from '../test/helpers/net.ts';
import { BENCH_MODEL, startBenchCluster } from './bench-cluster.ts';

const TREE = resolve(process.argv[2] ?? process.cwd());
const W = Number(process.env.W ?? 1);
const SECONDS = Number(process.env.SECONDS ?? 20);
const WARM = Number(process.env.WARM ?? 5);
const IDLE = Number(process.env.IDLE ?? 8);
const CLIENTS = Number(process.env.CLIENTS ?? 16);

/** The NATS protocol parser the preload uses (its file URL: the preload is written to the run dir). */
const WIRE = new URL('../test/bench/nats-wire.mjs', import.meta.url).href;

/** The module every process of the cluster imports (plain JavaScript). */
const PRELOAD = `
import fs from 'node:fs';
import { tapNats } from '${WIRE}';
import { syncBuiltinESMExports } from 'node:module';
const dir = process.env.DYN_CENSUS_DIR;
const a = process.argv.indexOf('actor');
const role = a >= 0 ? process.argv[a + 1] + (process.env.DYNAMOLLM_WORKER_INDEX !== undefined ? '-worker' : '') : process.argv.includes('up') ? 'up' : 'other';
if (role === 'up') {
  // the private server's config: a monitoring port added
  const wf = fs.writeFileSync;
  fs.writeFileSync = function (p, d, ...r) {
    if (typeof p === 'string' && p.endsWith('nats-server.conf') && typeof d === 'string') d = 'http: 127.0.0.1:' + process.env.DYN_CENSUS_MPORT + '\\n' + d;
    return wf.call(this, p, d, ...r);
  };
  syncBuiltinESMExports();
}
const counts = {};
const inc = (k) => { counts[k] = (counts[k] ?? 0) + 1; };
const key = (s) => s.replace(/-w\\d+/g, '-w*').replace(/^(_INBOX\\.[^.]+\\.[^.]+)\\..*$/, '$1.<id>').split('.').map((t) => (t.length >= 16 || /^\\d{3,}$/.test(t) ? '<id>' : t)).join('.');
const sids = new WeakMap();
const sidsOf = (sock) => sids.get(sock) ?? (sids.set(sock, new Map()), sids.get(sock));
const phases = ['credited', 'first_token', 'started', 'end', 'credit'];
function onOp({ sock, out, op, subject, reply, fields }) {
  if (op === 'MSG' || op === 'HMSG' || op === 'PUB' || op === 'HPUB') {
    inc((out ? 'out ' : 'in ') + (reply !== undefined ? 'req ' : '') + key(subject));
    // a leg report's phases, counted in its msgpack (a batch holds several): the fixstr of each phase's name
    if (out && subject.endsWith('.leg')) return (t) => {
      for (const ph of phases) {
        const m = t.split(String.fromCharCode(0xa0 + ph.length) + ph).length - 1;
        if (m) counts['leg report ' + ph] = (counts['leg report ' + ph] ?? 0) + m;
      }
    };
  } else if (op === 'SUB' && out) {
    sidsOf(sock).set(fields[fields.length - 1], subject);
    inc('sub ' + key(subject) + (fields.length > 3 ? ' q' : ''));
  } else if (op === 'UNSUB' && out) {
    inc('unsub ' + key(sidsOf(sock).get(fields[1]) ?? '?') + (fields.length > 2 ? ' max' : ''));
  } else if (op === 'PING' || op === 'PONG') inc((out ? 'out ' : 'in ') + op);
  return undefined;
}
if (dir && role !== 'other') {
  fs.writeFileSync(dir + '/census-pid-' + process.pid, role);
  tapNats({ onChunk: (out) => inc(out ? 'socket writes' : 'socket reads'), onOp });
  let seq = 0;
  process.on('SIGUSR2', () => {
    fs.writeFileSync(dir + '/census-' + process.pid + '-' + seq++ + '.json', JSON.stringify({ pid: process.pid, role, counts, cpu: process.cpuUsage() }));
  });
}
`;

interface ProcCounts { pid: number; role: string; counts: Record<string, number>; cpu: { user: number; system: number } }
/** The parts of nats-server's monitoring answers read here. */
interface Varz { in_msgs: number; out_msgs: number; in_bytes: number; out_bytes: number }
interface Subsz { num_subscriptions: number; num_inserts: number; num_removes: number; num_matches: number; cache_hit_rate: number }
interface Conn { cid: number; name?: string; in_msgs: number; out_msgs: number; subscriptions: number }
interface Connz { num_connections: number; connections?: Conn[] }
interface StreamDetail { name: string; state?: { messages: number; last_seq: number } }
interface Jsz { api?: { total: number; errors: number }; account_details?: { name: string; stream_detail?: StreamDetail[] }[] }
interface Mark { t: number; procs: Map<number, ProcCounts>; varz: Varz; subsz: Subsz; connz: Connz; jsz: Jsz; natsCpuMs: number; natsSys: { r: number; w: number; vcs: number; ivcs: number } }

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const mport = await freePort();
const c = await startBenchCluster({
  tree: TREE, name: 'nats-census', gateway: { workers: W, dataPlane: process.env.PLANE ?? 'js' }, upArgs: ['--gateway-standbys', '0'], ...(process.env.ENGINE ? { engine: JSON.parse(process.env.ENGINE) as Record<string, unknown> } : {}),
  env: (dir) => {
    writeFileSync(join(dir, 'census.mjs'), PRELOAD);
    return { NODE_OPTIONS: `--import ${join(dir, 'census.mjs')}`, DYN_CENSUS_DIR: dir, DYN_CENSUS_MPORT: String(mport) };
  },
});
const mon = async <T>(path: string): Promise<T> => (await fetch(`http://127.0.0.1:${mport}${path}`)).json() as Promise<T>;
const natsPid = (): number => {
  const t = tree(c.up.pid!);
  const p = [...t.roles].find(([, r]) => r === 'nats-server');
  if (!p) throw new Error('no nats-server under up');
  return p[0];
};
let seq = 0;
async function mark(): Promise<Mark> {
  const pids = readdirSync(c.dir).filter((f) => f.startsWith('census-pid-')).map((f) => Number(f.slice('census-pid-'.length)));
  const s = seq++;
  const t = performance.now();
  const [varz, subsz, connz, jsz] = await Promise.all([mon<Varz>('/varz'), mon<Subsz>('/subsz'), mon<Connz>('/connz?subs=1&limit=1024'), mon<Jsz>('/jsz?streams=1&consumers=1&accounts=1')]);
  const np = natsPid();
  const natsCpuMs = cpuMs(np);
  const io = readFileSync(`/proc/${np}/io`, 'utf8');
  const natsSys = { r: Number(/syscr: (\d+)/.exec(io)![1]), w: Number(/syscw: (\d+)/.exec(io)![1]), vcs: 0, ivcs: 0 };
  for (const tid of readdirSync(`/proc/${np}/task`)) {
    try {
      const st = readFileSync(`/proc/${np}/task/${tid}/status`, 'utf8');
      natsSys.vcs += Number(/^voluntary_ctxt_switches:\s*(\d+)/m.exec(st)![1]);
      natsSys.ivcs += Number(/^nonvoluntary_ctxt_switches:\s*(\d+)/m.exec(st)![1]);
    } catch { /* thread gone */ }
  }
  const live: number[] = [];
  for (const p of pids) {
    try {
      process.kill(p, 'SIGUSR2');
      live.push(p);
    } catch { /* gone */ }
  }
  await sleep(300);
  const procs = new Map<number, ProcCounts>();
  for (const p of live) {
    try {
      procs.set(p, JSON.parse(readFileSync(join(c.dir, `census-${p}-${s}.json`), 'utf8')) as ProcCounts);
    } catch { /* did not answer */ }
  }
  return { t, procs, varz, subsz, connz, jsz, natsCpuMs, natsSys };
}

/** Per process role and counter key: b less a. */
function diff(a: Mark, b: Mark): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  for (const [pid, pb] of b.procs) {
    const pa = a.procs.get(pid);
    const m = out.get(pb.role) ?? new Map<string, number>();
    for (const [k, v] of Object.entries(pb.counts)) m.set(k, (m.get(k) ?? 0) + v - (pa?.counts[k] ?? 0));
    m.set('cpuUs', (m.get('cpuUs') ?? 0) + pb.cpu.user + pb.cpu.system - (pa ? pa.cpu.user + pa.cpu.system : 0));
    out.set(pb.role, m);
  }
  return out;
}

/** JetStream API calls (all accounts) and each stream's last sequence (the cluster's account). */
const jsTotals = (j: Jsz): { api: number; streamSeq: Record<string, number> } => {
  const acc = (j.account_details ?? []).find((x) => x.name !== 'SYS');
  return { api: j.api?.total ?? 0, streamSeq: Object.fromEntries((acc?.stream_detail ?? []).map((s) => [s.name, s.state?.last_seq ?? 0])) };
};

const loop = new LoopThreads(2);
const body = completionBody(BENCH_MODEL, 4);
try {
  await loop.run(c.base, body, CLIENTS, WARM);
  await sleep(1000);
  const A = await mark();
  const r = await loop.run(c.base, body, CLIENTS, SECONDS);
  await sleep(300);
  const B = await mark();
  await sleep(IDLE * 1000);
  const C = await mark();
  const loadS = (B.t - A.t) / 1000, idleS = (C.t - B.t) / 1000;
  const n = r.done;
  const load = diff(A, B), idle = diff(B, C);
  const rows: { role: string; k: string; perReq: number; bgPerS: number; netPerReq: number }[] = [];
  for (const [role, m] of load) {
    for (const [k, v] of m) {
      const bg = (idle.get(role)?.get(k) ?? 0) / idleS;
      rows.push({ role, k, perReq: v / n, bgPerS: bg, netPerReq: (v - bg * loadS) / n });
    }
  }
  rows.sort((x, y) => x.role.localeCompare(y.role) || y.perReq - x.perReq);
  const f = (x: number) => x.toFixed(3);
  console.log(`tree ${TREE}, W=${W}, ${n} requests in ${loadS.toFixed(1)} s (${(n / loadS).toFixed(1)}/s), refused ${r.refused}; idle window ${idleS.toFixed(1)} s`);
  console.log('role\tkey\tper request\tbackground per s\tnet per request');
  for (const x of rows) if (x.perReq >= 0.005 || x.bgPerS >= 0.05) console.log(`${x.role}\t${x.k}\t${f(x.perReq)}\t${x.bgPerS.toFixed(2)}\t${f(x.netPerReq)}`);
  const sv = (a: Mark, b: Mark, per: number) => ({
    inMsgs: (b.varz.in_msgs - a.varz.in_msgs) / per, outMsgs: (b.varz.out_msgs - a.varz.out_msgs) / per,
    inBytes: (b.varz.in_bytes - a.varz.in_bytes) / per, outBytes: (b.varz.out_bytes - a.varz.out_bytes) / per,
    subInserts: (b.subsz.num_inserts - a.subsz.num_inserts) / per, subRemoves: (b.subsz.num_removes - a.subsz.num_removes) / per,
    subMatches: (b.subsz.num_matches - a.subsz.num_matches) / per, cacheHitRate: b.subsz.cache_hit_rate,
    natsCpuUs: ((b.natsCpuMs - a.natsCpuMs) * 1000) / per,
    natsReadCalls: (b.natsSys.r - a.natsSys.r) / per, natsWriteCalls: (b.natsSys.w - a.natsSys.w) / per,
    natsVoluntaryCs: (b.natsSys.vcs - a.natsSys.vcs) / per, natsInvoluntaryCs: (b.natsSys.ivcs - a.natsSys.ivcs) / per,
    jsApi: (jsTotals(b.jsz).api - jsTotals(a.jsz).api) / per,
    streamSeq: Object.fromEntries(Object.entries(jsTotals(b.jsz).streamSeq).map(([k, v]) => [k, ((v as number) - ((jsTotals(a.jsz).streamSeq[k] as number) ?? 0)) / per])),
  });
  console.log('server per request (load window):', JSON.stringify(sv(A, B, n)));
  console.log('server per second (idle window):', JSON.stringify(sv(B, C, idleS)));
  console.log(`subscriptions now: ${B.subsz.num_subscriptions}, connections ${B.connz.num_connections}`);
  const conns = (m: Mark) => new Map<number, Conn>((m.connz.connections ?? []).map((x) => [x.cid, x]));
  const ca = conns(A), cb = conns(B);
  console.log('cid\tname\tin msgs/req\tout msgs/req\tsubs');
  for (const [cid, x] of cb) {
    const y = ca.get(cid);
    console.log(`${cid}\t${x.name ?? ''}\t${f((x.in_msgs - (y?.in_msgs ?? 0)) / n)}\t${f((x.out_msgs - (y?.out_msgs ?? 0)) / n)}\t${x.subscriptions}`);
  }
  if (process.env.JSON) writeFileSync(process.env.JSON, JSON.stringify({ W, n, loadS, idleS, rows, server: sv(A, B, n), serverIdle: sv(B, C, idleS), connz: B.connz, subsList: B.connz }));
} finally {
  await loop.close();
  await c.stop();
}

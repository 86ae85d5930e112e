/**
 * When a `dynamollm chaos` run's gateway replicas refused connections, and why: read from its up.log (the report's
 * `upLog`; the run at DYNAMOLLM_LOG_LEVEL=info). A replica serves from a process's `gateway listening` line to that
 * process's exit (up's `child exited`); a gap between is time its port refused connections. Each gap is
 * put down to what the replica's other processes were doing when it began: `waiting` (a standby waiting for the port:
 * the gap is its takeover), `starting` (one spawned, none waiting yet: a start), `backoff` (all dead, their restarts
 * not due: the supervisor's delay, then a start). Also: each gateway restart's delay (exit to the next spawn of that child)
 * and whether the process it replaced had been ready (waiting or serving) when it died, and the time both replicas
 * refused at once.
 *   npx tsx scripts/gateway-downtime.ts <up.log> [loadStartMs]
 */
import { readFileSync } from 'node:fs';

interface Line { time: number; name?: string; msg?: string; pid?: number; child?: string; actor?: string; id?: string; signal?: string | null; restartInMs?: number }

const [file, startArg] = process.argv.slice(2);
if (!file) throw new Error('usage: gateway-downtime.ts <up.log> [loadStartMs]');
const lines: Line[] = [];
for (const raw of readFileSync(file, 'utf8').split('\n')) {
  if (!raw.startsWith('{')) continue;
  try {
    lines.push(JSON.parse(raw) as Line);
  } catch {
    // a line cut by the run's end
  }
}
const t0 = startArg ? Number(startArg) : (lines[0]?.time ?? 0);
const s = (ms: number) => Math.round((ms - t0) / 100) / 10;

/** one gateway process: its child slot, spawn, ready (waiting or serving), serving and exit times. */
interface Proc { child: string; replica: number; pid: number; spawnMs: number; waitingMs?: number; servingMs?: number; exitMs?: number; delayMs?: number }
const procs = new Map<number, Proc>();
const lastExit = new Map<string, number>();
for (const l of lines) {
  if (l.name === 'up' && l.child?.startsWith('gateway-') && l.pid !== undefined) {
    const replica = Number(/^gateway-(\d+)/.exec(l.child)![1]);
    if (l.msg === 'child spawned') {
      const prev = lastExit.get(l.child);
      procs.set(l.pid, { child: l.child, replica, pid: l.pid, spawnMs: l.time, ...(prev !== undefined ? { delayMs: l.time - prev } : {}) });
    } else if (l.msg === 'child exited') {
      const p = procs.get(l.pid);
      if (p) p.exitMs = l.time;
      lastExit.set(l.child, l.time);
    }
  } else if (l.actor === 'gateway' && l.pid !== undefined) {
    const p = procs.get(l.pid);
    if (!p) continue;
    if (l.msg?.startsWith('standby: port') && l.msg.includes('is served by another process')) p.waitingMs ??= l.time;
    if (l.msg?.startsWith('gateway listening')) p.servingMs ??= l.time;
  }
}
const all = [...procs.values()];
const end = lines.at(-1)?.time ?? 0;
const replicas = [...new Set(all.map((p) => p.replica))].sort();

/** the replica's gaps: from a serving process's exit to the next serving line of the replica. */
const gaps: { replica: number; fromMs: number; toMs: number; other: string; endedBy: string; backoffMs: number; startMs: number | null }[] = [];
for (const r of replicas) {
  const ps = all.filter((p) => p.replica === r);
  const serving = ps.filter((p) => p.servingMs !== undefined).sort((a, b) => a.servingMs! - b.servingMs!);
  for (const p of serving) {
    if (p.exitMs === undefined) continue;
    // its successor: the next process of the replica to serve (a standby's takeover may be logged before up logs the exit)
    const next = serving.find((q) => q.servingMs! > p.servingMs!);
    const toMs = Math.max(p.exitMs, next?.servingMs ?? end);
    // the replica's other processes at the gap's start: one waiting, else one starting, else all in backoff
    const alive = ps.filter((q) => q !== p && q.spawnMs <= p.exitMs! && (q.exitMs === undefined || q.exitMs > p.exitMs!));
    const other = alive.some((q) => q.waitingMs !== undefined && q.waitingMs <= p.exitMs!) ? 'waiting' : alive.length ? 'starting' : 'backoff';
    const by = next;
    gaps.push({
      replica: r, fromMs: p.exitMs, toMs, other,
      endedBy: by ? `${by.child}${by.spawnMs > p.exitMs ? ' (spawned after the gap began)' : ''}` : 'run end',
      // the supervisor's delay inside the gap: the process that ended it, spawned after the gap began
      backoffMs: by && by.delayMs !== undefined && by.spawnMs > p.exitMs ? Math.min(by.delayMs, by.spawnMs - p.exitMs) : 0,
      startMs: by ? by.servingMs! - Math.max(by.spawnMs, p.exitMs) : null,
    });
  }
}
// time every replica refused at once
const downs = replicas.map((r) => gaps.filter((g) => g.replica === r).map((g) => [g.fromMs, g.toMs] as const));
let allDownMs = 0;
for (let t = t0; t < end; t += 50) if (downs.every((d) => d.some(([a, b]) => t >= a && t < b))) allDownMs += 50;
const restarts = all.filter((p) => p.delayMs !== undefined);
const deaths = all.filter((p) => p.exitMs !== undefined);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
console.log(JSON.stringify({
  processes: all.length,
  deaths: { total: deaths.length, serving: deaths.filter((p) => p.servingMs !== undefined).length, waiting: deaths.filter((p) => p.servingMs === undefined && p.waitingMs !== undefined).length, starting: deaths.filter((p) => p.servingMs === undefined && p.waitingMs === undefined).length },
  restartDelayMs: countBy(restarts.map((p) => (p.delayMs! < 1000 ? '<1000' : p.delayMs! < 4000 ? '1000-3999' : '>=4000'))),
  restartDelaysOver1s: restarts.filter((p) => p.delayMs! >= 1000).map((p) => `${p.child}@${s(p.spawnMs)}s:${p.delayMs}`),
  startToReadyMs: pcts(all.map((p) => (p.waitingMs ?? p.servingMs) !== undefined ? (p.waitingMs ?? p.servingMs)! - p.spawnMs : undefined)),
  replicaDown: replicas.map((r) => ({ replica: r, gaps: gaps.filter((g) => g.replica === r).length, totalS: sum(gaps.filter((g) => g.replica === r).map((g) => g.toMs - g.fromMs)) / 1000 })),
  byOther: Object.fromEntries(['waiting', 'starting', 'backoff'].map((o) => {
    const gs = gaps.filter((g) => g.other === o);
    return [o, { gaps: gs.length, totalS: sum(gs.map((g) => g.toMs - g.fromMs)) / 1000, backoffS: sum(gs.map((g) => g.backoffMs)) / 1000 }];
  })),
  allReplicasDownS: allDownMs / 1000,
  gaps: gaps.sort((a, b) => a.fromMs - b.fromMs).map((g) => `gw-${g.replica} ${s(g.fromMs)}-${s(g.toMs)}s (${g.toMs - g.fromMs} ms) other ${g.other}, ended by ${g.endedBy}, backoff ${g.backoffMs} ms, start ${g.startMs} ms`),
}, null, 2));

function countBy(xs: string[]): Record<string, number> {
  const o: Record<string, number> = {};
  for (const x of xs) o[x] = (o[x] ?? 0) + 1;
  return o;
}

function pcts(xs: (number | undefined)[]): { n: number; p50: number | null; p95: number | null; max: number | null } {
  const v = xs.filter((x): x is number => x !== undefined).sort((a, b) => a - b);
  const q = (f: number) => (v.length ? v[Math.min(v.length - 1, Math.floor(f * v.length))]! : null);
  return { n: v.length, p50: q(0.5), p95: q(0.95), max: v.at(-1) ?? null };
}

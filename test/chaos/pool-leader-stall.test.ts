/**
 * A pool leader stalled past its lease (SIGSTOP) and resumed (SIGCONT) serves nothing and decides nothing once a
 * standby leads (docs/DESIGN.md "Leases"): on real processes (nats-server, two pool managers), the test playing
 * the pool's one instance (its statuses every 100 ms, its admission endpoint).
 *
 * pm-0 leads and dispatches a few requests to the instance (they run there: its statuses list them). Right after
 * one of its lease renewals it is stopped for longer than the lease; pm-1 takes the lead. Requests dispatched
 * meanwhile reach both processes (the dispatch subject has no queue group): pm-1 serves them, and they wait,
 * unread, in pm-0's socket. pm-0 is then resumed. Its timers that were due run first (its liveness sweep is due
 * well before its next renewal): a leader that does not bound its decisions by its lease takes the instance for dead
 * (silent for the whole stall, by its own view) and ends the streams running there, and serves the queued dispatches
 * a second time (a second admission of each).
 *
 * Expected: no request is admitted twice, no stream of the (live) instance gets an error chunk, every dispatch sent
 * during the stall gets exactly one admission, and only pm-1 publishes the pool's status after the resume.
 */
import { setUpBuckets } from '../../actors/common/jetstream-setup.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../integration/control-harness.ts';
import {
  Ack, Admission, InferenceRequest, InstanceStatus, LeaseValue, PoolStatus, TokenChunk, controlSubjects, jetstream, leaseKeys, subjects,
  type InferenceRequest as Req, type InstanceStatus as Status,
} from '../../protocols/index.ts';

const POOL = 'pool-all';
const INSTANCE = `${POOL}-n0-g0x2`;
const TYPES = ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] as const;
const TTL_MS = 3000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let h: Harness;
/** admissions the instance granted, by request id. */
const admits = new Map<string, number>();
/** error chunks on any stream (only a leader that takes the live instance for dead ends its streams). */
const errors: { id: string; message: string }[] = [];
/** each pool status: its leader and when it came. */
const statuses: { leader: string; atMs: number }[] = [];
let statusTimer: NodeJS.Timeout | undefined;
let seq = 0;
const startedMs = Date.now();

function publishStatus(): void {
  const running = [...admits.keys()];
  const st: Status = {
    v: 1, id: INSTANCE, pool: POOL, node: 'n0', tp: 2, gpuIds: [0, 1], state: 'ready', startedMs, seq: seq++, sentMs: Date.now(), clockMhz: 1980, maxClockMhz: 1980,
    queued: 0, running: running.length, queuedIds: [], runningIds: running, runningSeqs: running.map(() => 3), loadByType: {},
  };
  h.bus.publish(controlSubjects.instanceStatus(POOL, INSTANCE), InstanceStatus, st);
}

function request(id: string): Req {
  const now = Date.now();
  return { v: 1, id, model: 'llama3.1-8b', kind: 'completion', prompt: 'hello', inputTokens: 10, maxTokens: 2000, arrivalMs: now, giveUpAtMs: now + 120_000, streamSubject: subjects.stream(id), type: 'SS' };
}

async function until<T>(f: () => T | undefined, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

beforeAll(async () => {
  h = await startHarness({
    model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.json',
    servers: [{ id: 'n0', gpus: 4 }],
    pools: [{ id: POOL, types: [...TYPES] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 1 },
    engine: { kind: 'emulator', initialTp: 2 },
    liveness: { statusIntervalMs: 100, deadAfterMs: 1000, leaseTtlMs: TTL_MS },
  });
  // the buckets, as a deploy's admin step makes them (no cluster manager runs here, and a pool manager may not)
  await setUpBuckets(h.bus);
  h.bus.serve(subjects.instanceAdmit(INSTANCE), InferenceRequest, Admission, async (r) => {
    admits.set(r.id, (admits.get(r.id) ?? 0) + 1);
    return { v: 1 as const, id: r.id, ok: true, instance: INSTANCE };
  }, { capacity: 1024, concurrency: 64 });
  h.bus.subscribe(subjects.streamAll(), TokenChunk, (c) => {
    if (c.error) errors.push({ id: c.id, message: c.error.message });
  }, { capacity: 4096 });
  h.bus.subscribe(controlSubjects.poolStatus(POOL), PoolStatus, (s) => void statuses.push({ leader: s.leader, atMs: Date.now() }), { capacity: 4096 });
  await h.bus.nc.flush();
  publishStatus();
  statusTimer = setInterval(publishStatus, 100);
}, 60_000);

afterAll(async () => {
  if (statusTimer) clearInterval(statusTimer);
  for (const p of h?.procs.values() ?? []) if (p.pid && p.exitCode === null) try { process.kill(p.pid, 'SIGCONT'); } catch { /* gone */ }
  await h?.stop();
}, 30_000);

/** Dispatch `r` and collect every answer to it (one per process that serves it), for `ms`. */
function dispatchAll(r: Req, ms: number): { answers: Admission[]; first: Promise<Admission> } {
  const answers: Admission[] = [];
  let resolve!: (a: Admission) => void;
  const first = new Promise<Admission>((res) => (resolve = res));
  const inbox = `_INBOX.stall.${r.id}`;
  const sub = h.bus.nc.subscribe(inbox, {
    callback: (_err, m) => {
      let a: Admission;
      try {
        a = Admission.decode(m.data);
      } catch {
        const e = Ack.decode(m.data); // an error reply
        a = { v: 1, id: r.id, ok: false, ...(e.error ? { error: e.error } : {}) };
      }
      answers.push(a);
      if (a.ok) resolve(a);
    },
  });
  setTimeout(() => sub.unsubscribe(), ms);
  h.bus.nc.publish(subjects.poolDispatch(POOL), InferenceRequest.encode(r), { reply: inbox });
  return { answers, first };
}

describe('a pool leader stalled past its lease', () => {
  it('resumed after a standby took over: serves no queued dispatch, ends no stream, admits nothing twice', async () => {
    const pm0 = h.startActor('pool', 'pm-0');
    await until(() => statuses.find((s) => s.leader === 'pm-0'), 30_000, 'pm-0 to lead');
    h.startActor('pool', 'pm-1');
    await sleep(2000); // pm-1 hears the instance

    // requests pm-0 dispatched: they run on the instance (its statuses list them)
    const before = await Promise.all([0, 1, 2].map((i) => h.bus.request(subjects.poolDispatch(POOL), InferenceRequest, request(`before-${i}`), Admission, { timeoutMs: 5000 })));
    expect(before.every((a) => a.ok && a.instance === INSTANCE)).toBe(true);
    await sleep(500);

    // stopped right after a renewal of its lease: its next renewal is ttl/3 away, its liveness sweep at most deadAfterMs/4
    const kv = await h.bus.kv(jetstream.leasesBucket);
    const watch = await kv.watch({ key: leaseKeys.poolLeader(POOL), include: 'updates' });
    for await (const e of watch) {
      if (e.value.length && LeaseValue.decode(e.value).holder === 'pm-0') break;
    }
    process.kill(pm0.pid!, 'SIGSTOP');
    const stoppedAt = Date.now();
    try {
      await until(() => statuses.find((s) => s.leader === 'pm-1' && s.atMs > stoppedAt), 4 * TTL_MS, 'pm-1 to take over');
      // dispatches while pm-0 is stopped: pm-1 serves them, pm-0 has them queued
      const during = [0, 1, 2, 3, 4, 5].map((i) => ({ id: `during-${i}`, ...dispatchAll(request(`during-${i}`), 8000) }));
      for (const d of during) expect((await d.first).instance).toBe(INSTANCE);
      await sleep(Math.max(0, stoppedAt + TTL_MS + 500 - Date.now()));
      process.kill(pm0.pid!, 'SIGCONT');
      const resumedAt = Date.now();
      await sleep(3000);

      expect(errors).toEqual([]);
      expect([...admits].filter(([, n]) => n !== 1)).toEqual([]);
      expect([...admits.keys()].sort()).toEqual([...before.map((a) => a.id), ...during.map((d) => d.id)].sort());
      // each dispatch of the stall: one admission (pm-1's); pm-0's answer, if any, a retryable refusal
      for (const d of during) {
        expect(d.answers.filter((a) => a.ok)).toHaveLength(1);
        for (const a of d.answers.filter((x) => !x.ok)) expect(a.error).toMatchObject({ code: 'unavailable', retryable: true });
      }
      expect(statuses.filter((s) => s.atMs > resumedAt && s.leader !== 'pm-1')).toEqual([]);
    } finally {
      try {
        process.kill(pm0.pid!, 'SIGCONT');
      } catch { /* gone */ }
    }
  }, 90_000);
});

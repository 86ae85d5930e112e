/**
 * A leader lease on a loaded host (src/runtime/lease.ts), on a virtual clock: every KV read and write answers late,
 * with deploy/chaos.yaml's lease (ttl 1.5 s, renewed every 0.5 s). The acquisition takes most of the TTL; each renewal
 * must still be answered before the expiry. Scheduled renewMs after the election or after the last renewal's answer
 * (not after the value was made), the new leader stepped down ('expired') 0.75-1.35 s after its election and was
 * elected again, over and over: in `dynamollm chaos --kinds pool,nats` at load 14-45 a pool leader was 'elected' and
 * 'lost' 0.4-0.8 s apart.
 *
 * The bus is an in-memory stand-in for one KV bucket (compare-and-set on the key's last revision), answering on the
 * virtual clock (the other layout's bucket: none), with one bucket and with three.
 */
import { describe, expect, it } from 'vitest';
import type { Bus } from '../../src/runtime/bus.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { LeaderLease } from '../../src/runtime/lease.ts';

/** KV buckets' records (by subject), each read and write answered `opMs` after it was sent, on `clock`. */
function slowBus(clock: ManualClock, opMs: number): Bus {
  const records = new Map<string, { seq: number; value: Uint8Array }>();
  let seq = 0;
  const later = <T>(f: () => T) => new Promise<T>((resolve, reject) => clock.setTimeout(() => {
    try {
      resolve(f());
    } catch (err) {
      reject(err as Error);
    }
  }, opMs));
  const kv = (bucket: string) => ({
    get: (key: string) => later(() => {
      const r = records.get(`$KV.${bucket}.${key}`);
      return r ? { bucket, key, value: r.value, revision: r.seq, operation: 'PUT', created: new Date(clock.now()) } : null;
    }),
  });
  return {
    jetstreamReplicas: 1,
    connected: true,
    jetstreamFailed: () => false,
    jetstreamUnanswered: () => Promise.resolve(false),
    kv: (bucket: string) => Promise.resolve(kv(bucket)),
    // the other layout's record (lease-other-layout.ts): no such bucket
    nc: { request: () => later(() => ({ data: new TextEncoder().encode(JSON.stringify({ error: { err_code: 10059, description: 'stream not found' } })) })) },
    jetstream: () => ({
      publish: (subject: string, value: Uint8Array, opts: { expect: { lastSubjectSequence: number } }) => later(() => {
        const last = records.get(subject)?.seq ?? 0;
        if (last !== opts.expect.lastSubjectSequence) throw new Error(`wrong last sequence: ${last}`);
        records.set(subject, { seq: ++seq, value });
        return { seq, duplicate: false, stream: 'KV', domain: '' };
      }),
    }),
  } as unknown as Bus;
}

/** Moves the clock on by `ms` in 5-ms steps, letting the lease's promise chains run between steps. */
async function run(clock: ManualClock, ms: number, each: () => void): Promise<void> {
  for (let t = 0; t < ms; t += 5) {
    clock.advance(5);
    for (let i = 0; i < 10; i++) await Promise.resolve();
    each();
  }
}

describe('a lease whose every KV operation answers late (ttl 1.5 s, renew 0.5 s)', () => {
  // one bucket: a read and a write, elected 1.2 s in (its first renewal's answer 0.5 s later came past the step-down);
  // three buckets: the reads, the first bucket's write, the others' writes and the other layout read again, elected
  // 1.2 s in (0.9 s after its value was made: a renewal 0.5 s later answered past the step-down)
  it.each([
    ['one bucket (one NATS server), 600-ms answers', { bucket: 'dyn_v1_leases' }, 600],
    ['a majority of three buckets (a NATS cluster), 300-ms answers', { replicas: 3 }, 300],
  ])('%s: the elected leader renews in time and leads throughout', async (_layout, layout, opMs) => {
    const clock = new ManualClock(1_000_000);
    const dbg = (l: string) => (o: unknown, m: string) => (process.env.DBG ? console.log(clock.now() - 1_000_000, l, m, JSON.stringify(o)) : undefined);
    const log = { debug: dbg('debug'), info: dbg('info'), warn: dbg('warn'), error: dbg('error') } as unknown as import('pino').Logger;
    const lease = new LeaderLease({ bus: slowBus(clock, opMs), key: 'pool.slow', holder: 'pm-slow', ttlMs: 1500, renewMs: 500, opTimeoutMs: 1000, ...layout, clock, log });
    const events: string[] = [];
    lease.on('elected', ({ term }: { term: number }) => events.push(`elected ${term} at ${clock.now() - 1_000_000}`));
    lease.on('lost', ({ reason }: { reason: string }) => events.push(`lost (${reason}) at ${clock.now() - 1_000_000}`));
    void lease.start();
    let firstLeadMs: number | undefined;
    let notLeading = 0;
    await run(clock, 10_000, () => {
      if (lease.isLeader()) firstLeadMs ??= clock.now();
      else if (firstLeadMs !== undefined) notLeading++;
    });
    expect(firstLeadMs! - 1_000_000).toBeLessThanOrEqual(2000);
    expect(events, 'one election, never lost').toEqual([events[0]]);
    expect(notLeading).toBe(0);
    // the release is a write too
    const stopped = lease.stop();
    await run(clock, 2 * opMs, () => {});
    await stopped;
    expect(lease.isLeader()).toBe(false);
  });
});

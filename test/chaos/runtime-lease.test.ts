/**
 * Repeated SIGKILL of the lease holder among three real `test-lease` actor processes (pool role, lease
 * ttl 3000 ms, renew 1000 ms: the defaults). Each actor reports in every heartbeat (200 ms) whether it is
 * leader and under which term. Checks: a standby holds the lease within twice the TTL of each kill (the dead holder's
 * lease lapses within one TTL; a standby that waited a second TTL, or a restart of the killed process, would be late), and no two
 * processes ever claim leadership at overlapping times: every term belongs to one holder, and ordered by
 * send time, claimed terms never go back.
 */
import { setUpBuckets } from '../../actors/common/jetstream-setup.ts';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { startNatsServer, REPO_ROOT, type TestNats } from '../helpers/nats.ts';
import { Bus, Supervisor, silentLogger } from '../../src/runtime/index.ts';
import { Heartbeat, subjects, type Heartbeat as Hb } from '../../protocols/index.ts';

/** the lease TTL the test-lease actors are given (their default), ms. */
const TTL_MS = 3000;

let nats: TestNats;
let bus: Bus;
beforeAll(async () => {
  nats = await startNatsServer();
  bus = await Bus.connect({ servers: nats.url, name: 'chaos-observer', ...nats.as('observer'), log: silentLogger() });
  // the lease buckets, as the cluster manager or a deploy's admin makes them: a pool manager may not
  const admin = await Bus.connect({ servers: nats.url, name: 'chaos-setup', ...nats.as('admin'), log: silentLogger() });
  await setUpBuckets(admin);
  await admin.close();
});
afterAll(async () => {
  await bus?.close();
  await nats?.stop();
});

describe('leader lease under SIGKILL', () => {
  it('a standby takes over within twice the TTL of each kill; never two leaders', async () => {
    const claims: { id: string; term: number; sentMs: number }[] = [];
    const latest = new Map<string, Hb>();
    let beats = 0;
    bus.subscribe(subjects.heartbeatAll(), Heartbeat, (hb) => {
      if (hb.kind !== 'pool') return;
      beats++;
      latest.set(hb.id, hb);
      if (hb.meta?.leader === true) claims.push({ id: hb.id, term: Number(hb.meta.term), sentMs: hb.sentMs });
    });
    const { user, pass } = nats.creds('pool');
    const names = ['l1', 'l2', 'l3'];
    const sup = new Supervisor({
      children: names.map((id) => ({
        name: id,
        command: process.execPath,
        args: ['--import', 'tsx', join(REPO_ROOT, 'test/fixtures/actors/main.ts'), 'test-lease', '--id', id, '--nats', nats.url, '--user', user, '--pass', pass,
          '--set', 'pool=chaos', '--set', `ttlMs=${TTL_MS}`, '--set', 'heartbeatMs=200', '--log-level', 'warn'],
        cwd: REPO_ROOT,
        stopGraceMs: 5000,
      })),
      log: silentLogger(),
      // the killed process comes back only after the standbys have had the lease's TTL to take over, so the
      // takeover measured is a standby's (a quick restart could otherwise win the expired lease itself)
      backoff: { initialMs: 6000, maxMs: 6000 },
    });
    const leaderNow = (minTerm: number): { id: string; term: number } | undefined => {
      const c = claims.at(-1);
      return c && c.term >= minTerm && Date.now() - c.sentMs < 500 ? c : undefined;
    };
    const waitLeader = async (minTerm: number, timeoutMs: number) => {
      const end = Date.now() + timeoutMs;
      while (Date.now() < end) {
        const l = leaderNow(minTerm);
        if (l) return l;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`no leader with term >= ${minTerm} within ${timeoutMs} ms`);
    };
    const takeovers: number[] = [];
    try {
      await sup.start();
      let leader = await waitLeader(1, 30_000);
      for (let round = 0; round < 3; round++) {
        // let every process be up (the killed one restarted) before the next kill
        const end = Date.now() + 20_000;
        while (names.some((n) => !latest.has(n) || Date.now() - latest.get(n)!.sentMs > 400) && Date.now() < end) {
          await new Promise((r) => setTimeout(r, 50));
        }
        const pid = sup.children().find((c) => c.name === leader.id)!.pid!;
        const tKill = Date.now();
        process.kill(pid, 'SIGKILL');
        const next = await waitLeader(leader.term + 1, 8000);
        takeovers.push(Date.now() - tKill);
        expect(next.id).not.toBe(leader.id);
        leader = next;
      }
    } finally {
      await sup.stop();
    }
    console.log(`takeover after SIGKILL (ms): ${takeovers.join(', ')} (lease TTL ${TTL_MS} ms); ${claims.length} leader claims checked among ${beats} heartbeats`);
    for (const t of takeovers) expect(t).toBeLessThan(2 * TTL_MS);
    // every term has exactly one holder
    const holderOfTerm = new Map<number, string>();
    for (const c of claims) {
      const h = holderOfTerm.get(c.term);
      if (h !== undefined) expect(h, `term ${c.term}`).toBe(c.id);
      holderOfTerm.set(c.term, c.id);
    }
    expect(holderOfTerm.size).toBeGreaterThanOrEqual(4);
    // in send-time order, claimed terms never decrease: an older leader never claims after a newer one
    const byTime = [...claims].sort((a, b) => a.sentMs - b.sentMs);
    for (let i = 1; i < byTime.length; i++) expect(byTime[i].term).toBeGreaterThanOrEqual(byTime[i - 1].term);
  });
});

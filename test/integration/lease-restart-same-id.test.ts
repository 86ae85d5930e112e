/**
 * A leader SIGKILLed and started again under the same id (what `up`'s supervisor, systemd or a StatefulSet do):
 * the new process finds the lease held under its own id by a process of this machine that is gone, and takes it at
 * once instead of waiting out the dead process's TTL. While that other process is alive (the same id given to two
 * live processes) it does not: no two leaders. Real nats-server; the first holder is a real `test-lease` actor
 * process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { startNatsServer, REPO_ROOT, type TestNats } from '../helpers/nats.ts';
import { setUpBuckets } from '../../actors/common/jetstream-setup.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { LeaderLease } from '../../src/runtime/lease.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { LeaseValue, jetstream, leaseKeys } from '../../protocols/index.ts';

let nats: TestNats;
let admin: Bus;
const buses: Bus[] = [];
let child: ChildProcess | undefined;

beforeAll(async () => {
  nats = await startNatsServer();
  admin = await Bus.connect({ servers: nats.url, name: 'lease-restart-admin', ...nats.as('admin'), log: silentLogger() });
  // the buckets, as the cluster manager makes them (a pool manager may not create one)
  await setUpBuckets(admin);
});
afterAll(async () => {
  child?.kill('SIGKILL');
  await Promise.all([admin, ...buses].map((b) => b?.close()));
  await nats?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a lease held under our id by a process that is gone', () => {
  it('the restarted process takes it at once; while the other process lives, it waits', async () => {
    const id = 'pm-again';
    const key = leaseKeys.poolLeader('again');
    const ttlMs = 8000;
    const { user, pass } = nats.creds('pool');
    child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test/fixtures/actors/main.ts'), 'test-lease', '--id', id, '--nats', nats.url,
      '--user', user, '--pass', pass, '--set', 'pool=again', '--set', `ttlMs=${ttlMs}`, '--set', 'renewMs=1000', '--log-level', 'warn'], { cwd: REPO_ROOT, stdio: 'ignore' });
    const kv = await admin.kv(jetstream.leasesBucket, { history: 1 });
    const record = async () => {
      const e = await kv.get(key);
      return e?.value.length ? LeaseValue.decode(e.value) : undefined;
    };
    for (const end = Date.now() + 30_000; (await record())?.holder !== id; await sleep(100)) {
      if (Date.now() > end) throw new Error('the first process never took the lease');
    }
    const first = (await record())!;
    expect(first.proc, 'the record names its process').toMatch(new RegExp(`/${child.pid}$`));

    const b = await Bus.connect({ servers: nats.url, name: 'lease-restart-again', ...nats.as('pool', id), log: silentLogger() });
    buses.push(b);
    const again = new LeaderLease({ bus: b, key, holder: id, ttlMs, renewMs: 1000, log: silentLogger() });
    let electedAt = 0;
    again.on('elected', () => (electedAt = Date.now()));
    await again.start();
    try {
      // the other process under our id is alive: not ours to take
      await sleep(2500);
      expect(again.isLeader(), 'took a lease whose holder process is alive').toBe(false);
      const killedAt = Date.now();
      child.kill('SIGKILL');
      await new Promise((r) => child!.once('exit', r));
      for (const end = Date.now() + ttlMs + 2000; !electedAt && Date.now() < end; ) await sleep(50);
      expect(electedAt, 'never elected').toBeGreaterThan(0);
      // its last renewal left the dead process's lease ttlMs - renewMs (7 s) or more: taken well before that
      console.log(`the same id again: elected ${electedAt - killedAt} ms after the other process's kill (its lease ${ttlMs} ms)`);
      expect(electedAt - killedAt, 'waited out the dead process lease').toBeLessThan(ttlMs - 2000);
      const now = (await record())!;
      expect(now.holder).toBe(id);
      expect(now.term).toBeGreaterThan(first.term);
      expect(now.proc).toMatch(new RegExp(`/${process.pid}$`));
    } finally {
      await again.stop();
    }
  }, 60_000);
});

/**
 * Held dispatches do not occupy the pool leader's dispatch handlers (issue 13): a request the pool holds for a
 * ready instance frees its handler's place (ServeContext.release) and is answered when the machine dispatches
 * or refuses it, so a burst of holds larger than DISPATCH_HANDLERS (256) is held whole and none of it waits
 * unseen in the dispatch mailbox (where its caller gets no hold notice and runs into its intake budget).
 *
 * Real nats-server with the project's permissions; the PoolLeader runs in the test process on a pool-role
 * connection. The test plays the pool's one instance: a 'starting' status (capacity coming: the leader holds),
 * then 'ready' with an admission that says yes, and every held request is answered with that admission.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor as until } from '../helpers/wait.ts';
import { startNatsServer, as, type TestNats } from '../helpers/nats.ts';
import { setUpBuckets } from '../../actors/common/jetstream-setup.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { DISPATCH_HANDLERS, PoolLeader } from '../../actors/pool-manager/pool-leader.ts';
import { parseConfig } from '../../actors/common/config.ts';
import {
  Admission, InferenceRequest, InstanceStatus, TokenChunk, controlSubjects, subjects,
  type InferenceRequest as Req, type InstanceStatus as Status,
} from '../../protocols/index.ts';

const POOL = 'pool-burst';
const INSTANCE = `${POOL}-n0-g0x2`;
const TYPES = ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] as const;
/** more than the dispatch handlers: the burst would pin all of them. */
const N = DISPATCH_HANDLERS + 64;
let nats: TestNats;
let admin: Bus;
let pm: Bus;
let leader: PoolLeader;
let statusTimer: NodeJS.Timeout | undefined;
let state: Status['state'] = 'starting';
let admitted = 0;

beforeAll(async () => {
  nats = await startNatsServer();
  admin = await Bus.connect({ servers: nats.url, name: 'test-admin', ...nats.creds('admin'), log: silentLogger() });
  // the buckets, as the cluster manager (or a deploy's admin) makes them: a pool manager may not
  await setUpBuckets(admin);
  pm = await Bus.connect({ servers: nats.url, name: 'pm-burst', ...as('pool', 'pm-burst'), log: silentLogger() });
}, 30_000);

afterAll(async () => {
  if (statusTimer) clearInterval(statusTimer);
  await leader?.stop().catch(() => {});
  await pm?.close();
  await admin?.close();
  await nats?.stop();
}, 30_000);

function request(id: string): Req {
  const now = Date.now();
  return { v: 1, id, model: 'llama2-70b', kind: 'completion', prompt: 'hello', inputTokens: 10, maxTokens: 20, arrivalMs: now, giveUpAtMs: now + 120_000, streamSubject: subjects.stream(id), type: 'SS' };
}

let seq = 0;
const startedMs = Date.now();
function publishStatus(): void {
  const st: Status = {
    v: 1, id: INSTANCE, pool: POOL, node: 'n0', tp: 2, gpuIds: [0, 1], state, startedMs, seq: seq++, sentMs: Date.now(), clockMhz: 1980, maxClockMhz: 1980,
    queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {},
  };
  admin.publish(controlSubjects.instanceStatus(POOL, INSTANCE), InstanceStatus, st);
}

describe('a burst of held dispatches', () => {
  it(`${N} requests held at once (more than the ${DISPATCH_HANDLERS} dispatch handlers): each is told it is held, and each is answered once an instance is ready`, async () => {
    const holds = new Set<string>();
    admin.subscribe(subjects.streamAll(), TokenChunk, (c) => {
      if (c.hold) holds.add(c.id);
    }, { capacity: 8192 });
    admin.serve(subjects.instanceAdmit(INSTANCE), InferenceRequest, Admission, async (r) => {
      admitted++;
      return { v: 1 as const, id: r.id, ok: true, instance: INSTANCE };
    }, { capacity: 4096, concurrency: 512 });
    await admin.nc.flush();
    publishStatus();
    statusTimer = setInterval(publishStatus, 250);
    const config = parseConfig({
      pools: [{ id: POOL, types: [...TYPES] }],
      liveness: { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 },
      engine: { healthDeadlineMs: 60_000 },
    });
    leader = new PoolLeader({ pool: POOL, types: [...TYPES], holder: 'pm-burst', bus: pm, config, log: silentLogger() });
    await leader.start();
    // leading and serving dispatch: a first request is held (its instance is starting)
    await until(() => (leader.isLeader() ? true : undefined), 20_000, 'the lease');
    let probe: Promise<Admission> | undefined;
    await until(() => {
      if (holds.has('probe')) return true;
      probe ??= admin.request(subjects.poolDispatch(POOL), InferenceRequest, request('probe'), Admission, { timeoutMs: 60_000 }).catch((e: unknown) => {
        probe = undefined; // not serving dispatch yet (no responders): sent again
        throw e;
      });
      probe.catch(() => undefined);
      return undefined;
    }, 20_000, 'the first hold');

    const replies = Array.from({ length: N }, (_, i) => admin.request(subjects.poolDispatch(POOL), InferenceRequest, request(`burst-${i}`), Admission, { timeoutMs: 60_000 }));
    // every one of them is held (and told so), none waits behind the others for a handler
    await until(() => (holds.size === N + 1 ? true : undefined), 20_000, `hold notices for all ${N + 1} requests (got ${holds.size})`);
    expect(leader.heldNow()).toBe(N + 1);
    expect(leader.holds.held).toBe(N + 1);

    // the instance is ready: every held request is dispatched to it and its caller gets the admission
    state = 'ready';
    publishStatus();
    const all = await Promise.all([probe!, ...replies]);
    expect(all.every((a) => a.ok && a.instance === INSTANCE)).toBe(true);
    expect(new Set(all.map((a) => a.id)).size).toBe(N + 1);
    expect(admitted).toBe(N + 1);
    expect(leader.holds.dispatched).toBe(N + 1);
    expect(leader.heldNow()).toBe(0);
  }, 90_000);
});

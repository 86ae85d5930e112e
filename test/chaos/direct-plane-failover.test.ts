/**
 * Issue 13 on the gateway's direct request plane (docs/DATAPATH.md): the gateway routes each request itself
 * and asks the chosen instance for admission, so no pool leader dispatched the requests queued there. The pool
 * leader ends the streams a dead instance's last status names; a request admitted after that status, or one
 * whose pool leader is dead too, is named nowhere. Here the instance manager holding queued requests and the
 * pool leader (no standby) are SIGKILLed together: only the gateway can notice. It follows every instance's
 * status, sees the process that holds its leg gone (silent for deadAfterMs, or a new process under the id) and
 * admits the request again elsewhere within its deadline. Real processes: nats-server with the project's
 * permissions, cluster, pool and node managers, two instance managers with emulated engines; the gateway is
 * the real NatsBackend with its GatewayRouter on a gateway-role connection.
 *
 * Every request must complete as one stream (seq contiguous, every token once), the queued ones well before
 * their stream's silence timeout (chunkTimeoutMs): without the gateway's watch they fail with 'timeout' then.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { completionRequest, emulatedClusterConfig, expectOneStream, startGatewayCluster, type GatewayCluster } from '../helpers/gateway-cluster.ts';
import { sleep } from '../helpers/wait.ts';
import type { Harness } from '../integration/control-harness.ts';
import type { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import type { GatewayRouter } from '../../actors/gateway/router.ts';
import { RequestRecord, subjects, type RequestRecord as Rec, type TokenChunk } from '../../protocols/index.ts';

/** the gateway's stream silence timeout here: a request the fix does not save waits this long, then fails. */
const CHUNK_TIMEOUT_MS = 45_000;
let cluster: GatewayCluster;
let h: Harness;
let backend: NatsBackend;
const records = new Map<string, Rec>();

const request = (id: string, maxTokens: number) => completionRequest(id, maxTokens, { giveUpAfterMs: 180_000 });

/** both instances in the router's view: every request of the test is then admitted by the gateway's own routing */
function readyInView(router: GatewayRouter): number {
  const plan = router.plan(request(`probe-${Date.now()}`, 1));
  if (!plan) return 0;
  const seen = new Set<string>();
  for (let id = router.pick(plan.pools[0]!, plan.req, seen); id !== undefined; id = router.pick(plan.pools[0]!, plan.req, seen)) seen.add(id);
  return seen.size;
}

beforeAll(async () => {
  cluster = await startGatewayCluster({
    config: emulatedClusterConfig(2, {
      // one request in each engine at a time (~30 ms per token): the rest wait in the instance's own queue
      engine: { maxInEngine: 1, maxQueued: 32 },
      // TTFT SLOs and the ladder far above the waits here: a busy instance queues requests instead of refusing or moving them
      slo: { ttftMs: { S: 60_000, M: 60_000, L: 60_000 } },
      emergency: { rejectAfterMs: 60_000, retryAfterS: 1, moveQueueAbove: 64 },
    }),
    ready: 2, readyTimeoutMs: 60_000,
    gatewayId: 'gw-dpf',
    backend: () => ({ chunkTimeoutMs: CHUNK_TIMEOUT_MS }),
    // the routing table and both instances' statuses in the router's view (the table can arrive first)
    routed: {
      until: (r) => r.routable() && readyInView(r) >= 2,
      timeoutMs: 10_000,
      what: (r) => `the gateway's router to see both instances (routing table: ${r.routable()}, instances ready in its view: ${readyInView(r)})`,
    },
  });
  ({ h, backend } = cluster);
  h.bus.subscribe(subjects.telRequestAll(), RequestRecord, (r) => void records.set(r.id, r), { capacity: 4096 });
}, 90_000);

afterAll(async () => {
  await cluster?.stop();
}, 30_000);

interface Client { id: string; admittedOn?: string; chunks: TokenChunk[]; tokens: number; done: Promise<void>; endedMs?: number; error?: string }

describe('direct request plane: the instance manager holding queued requests dies', () => {
  it('the gateway sees its leg\'s holder gone and admits the request elsewhere; every request completes as one stream', async () => {
    const N = 4;
    const MAX = 60;
    const ac = new AbortController();
    const routed = backend.counters.routed;
    const migrated = backend.counters.migrated;
    const clients: Client[] = [];
    for (let i = 0; i < N; i++) {
      const c: Client = { id: `dpf-${Date.now()}-${i}`, chunks: [], tokens: 0, done: Promise.resolve() };
      c.done = (async () => {
        try {
          const s = await backend.submit(request(c.id, MAX), ac.signal);
          c.admittedOn = s.admission.instance;
          for await (const ch of s) {
            c.chunks.push(ch);
            c.tokens += ch.tokens;
          }
        } catch (err) {
          c.error = (err as Error).message;
        } finally {
          c.endedMs = Date.now();
        }
      })();
      clients.push(c);
    }
    // every request admitted, each by an instance the gateway chose itself (no pool leader knows them)
    const t0 = Date.now();
    while (clients.some((c) => c.admittedOn === undefined && c.error === undefined) && Date.now() - t0 < 30_000) await sleep(50);
    expect(clients.map((c) => c.error ?? c.admittedOn ?? 'not admitted').filter((x) => !x.startsWith('pool-all-'))).toEqual([]);
    expect(backend.counters.routed - routed).toBe(N);
    // the victim: the instance holding the most requests, once it streams its first one (the others wait in its queue)
    const on = new Map<string, Client[]>();
    for (const c of clients) on.set(c.admittedOn!, [...(on.get(c.admittedOn!) ?? []), c]);
    const [victim, held] = [...on].sort((a, b) => b[1].length - a[1].length)[0]!;
    expect(held.length).toBeGreaterThanOrEqual(2);
    const t1 = Date.now();
    while (!held.some((c) => c.tokens >= 10) && Date.now() - t1 < 30_000) await sleep(20);
    const queuedAtKill = held.filter((c) => c.chunks.length === 0);
    const im = h.pidsOf(`--id ${victim} `)[0];
    expect(im, `the instance manager of ${victim}`).toBeGreaterThan(0);
    const pm = h.procs.get('pm-0')!.pid!;
    const killedAt = Date.now();
    // the pool leader too (it has no standby): it would end the streams its instance's last status names, and
    // a request admitted after that status is named nowhere; without it, only the gateway knows them all
    process.kill(pm, 'SIGKILL');
    process.kill(im!, 'SIGKILL');
    // the instance's own queue held requests nobody else knows of
    expect(queuedAtKill.length, `requests on ${victim} without a chunk at the kill`).toBeGreaterThanOrEqual(1);

    await Promise.all(clients.map((c) => c.done));
    if (process.env.DYN_DEBUG) {
      for (const c of clients) {
        const runs: string[] = [];
        for (const x of c.chunks) if (runs.at(-1)?.startsWith(`${x.instance}:`) !== true) runs.push(`${x.instance}:${x.seq}`);
        console.log(`${c.id} on ${c.admittedOn} queued ${queuedAtKill.includes(c)} ended +${c.endedMs! - killedAt} ms tokens ${c.tokens} runs ${runs.join(' ')} ${c.error ?? JSON.stringify(c.chunks.at(-1)?.error ?? null)}`);
        for (const r of records.values()) if (r.id.startsWith(c.id)) console.log(`  leg ${r.id} on ${r.instance} ${r.outcome} tokens ${r.completionTokens}`);
      }
    }
    for (const c of clients) {
      const last = c.chunks.at(-1);
      const runs: string[] = [];
      for (const x of c.chunks) if (runs.at(-1)?.startsWith(`${x.instance}:`) !== true) runs.push(`${x.instance}:${x.seq}`);
      const what = `${c.id} (admitted on ${c.admittedOn}${queuedAtKill.includes(c) ? ', queued at the kill' : ''}; ended ${c.endedMs! - killedAt} ms after the kill; chunks by instance ${runs.join(' ')}; gateway ${JSON.stringify(backend.counters)}): ${c.error ?? JSON.stringify(last?.error ?? null)}`;
      expect(c.error, what).toBeUndefined();
      expect(last, what).toBeDefined();
      // every token once, none twice (c.tokens is what the client counted of the same chunks)
      expectOneStream(c.chunks, MAX, what);
      expect(c.tokens, what).toBe(MAX);
    }
    // the queued ones were admitted again (and the running one migrated) long before their stream's silence timeout
    for (const c of queuedAtKill) expect(c.endedMs! - killedAt, c.id).toBeLessThan(CHUNK_TIMEOUT_MS);
    expect(backend.counters.migrated - migrated).toBeGreaterThanOrEqual(queuedAtKill.length);
  }, 150_000);
});

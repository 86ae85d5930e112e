/**
 * Where requests go when an instance dies while no cluster planner serves: the gateway's own routing view and the pool
 * leader's dispatch view, read as the observer through subjects.dispatchView (what `dynamollm chaos` times). Real
 * processes on the project's generated nats.conf (nats-server, a cluster and a pool manager, a node agent with two
 * instance managers and their emulated engines, a gateway as the gateway role):
 * - both views list both instances ready; the gateway routes (a routing table);
 * - the cluster manager is SIGKILLed (no planner answers the status), then the node agent (nobody restarts the instance
 *   or reports its end), then one instance manager: it leaves the gateway's view and the pool leader's on the NATS
 *   server's disconnect advisory (why `conn_ended`), sooner than the death verdict (deadAfterMs after its last status)
 *   would drop it, and its peer stays ready in both all along;
 * - a request sent through the gateway then is served by the peer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { startHarness, type Harness } from '../integration/control-harness.ts';
import { freePort } from '../helpers/net.ts';
import { as } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { DispatchView, StatusRequest, subjects, type DispatchView as DispatchViewT, type DispatchViewKind } from '../../protocols/index.ts';
import { adoptionDir, readRecords } from '../../src/runtime/adoption.ts';
import { killTree } from '../helpers/procs.ts';

let h: Harness;
let observer: Bus;
let dir: string;
let url: string;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const LIVENESS = { statusIntervalMs: 250, deadAfterMs: 1500, leaseTtlMs: 1500 };

beforeAll(async () => {
  h = await startHarness({
    model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.json',
    servers: [{ id: 'n0', gpus: 4 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 600, poolS: 600, instanceS: 1 },
    liveness: LIVENESS,
    engine: { kind: 'emulator', timeScale: 4, healthDeadlineMs: 30_000, initialTp: 2, maxInEngine: 32, maxQueued: 128 },
  });
  // the gateway connects as the gateway role
  const cfg = JSON.parse(readFileSync(h.cfgPath, 'utf8')) as { nats: { roles: Record<string, unknown> } };
  cfg.nats.roles.gateway = h.nats.creds('gateway');
  writeFileSync(h.cfgPath, JSON.stringify(cfg));
  h.startActor('cluster', 'cm-0');
  h.startActor('pool', 'pm-0');
  h.startActor('node', 'n0');
  dir = adoptionDir(`dynamollm|${h.nats.url}|n0`);
  await h.waitReady(2, 120_000);
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  h.startActor('gateway', 'gw-a', ['--port', String(port)]);
  observer = await Bus.connect({ servers: h.nats.url, name: 'test-observer', ...as('observer'), log: silentLogger() });
}, 180_000);

afterAll(async () => {
  const pids = readRecords(dir ?? '/nonexistent').map((r) => r.pid);
  await observer?.close();
  await h?.stop();
  killTree(pids);
}, 60_000);

/** The view of `kind` `id`, asked as the observer; undefined when unanswered. */
const view = (kind: DispatchViewKind, id: string): Promise<DispatchViewT | undefined> =>
  observer.request(subjects.dispatchView(kind, id), StatusRequest, { v: 1 }, DispatchView, { timeoutMs: 1000 }).catch(() => undefined);
const readyIn = (v: DispatchViewT | undefined): string[] | undefined => v?.pools.filter((p) => v.kind === 'gateway' || p.leader).flatMap((p) => p.ready);
const whyOut = (v: DispatchViewT | undefined, id: string) => v?.pools.flatMap((p) => p.out).find((o) => o.id === id)?.why;

async function until(pred: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const t = Date.now() + ms;
  while (Date.now() < t) {
    if (await pred()) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('a dead instance leaves the gateway\'s and the pool leader\'s dispatch views while no cluster planner serves', () => {
  it.runIf(process.platform === 'linux')('out of both views sooner than deadAfterMs after its SIGKILL (the server\'s advisory); its peer stays ready; the gateway routes to the peer', async () => {
    const ids = readRecords(dir).map((r) => r.name).sort();
    expect(ids).toHaveLength(2);
    // both instances ready in the gateway's routing view (it holds a routing table) and in the pool leader's view
    await until(async () => {
      const [g, p] = await Promise.all([view('gateway', 'gw-a'), view('pool', 'pm-0')]);
      return g?.routing === true && readyIn(g)?.length === 2 && p?.pools[0]?.leader === true && readyIn(p)?.length === 2;
    }, 60_000, 'both instances ready in both views');

    // no planner: the cluster manager dies, and no cluster status is answered from then on
    const cm = h.procs.get('cm-0')!;
    const cmGone = new Promise((r) => cm.once('exit', r));
    cm.kill('SIGKILL');
    await cmGone;
    // nobody restarts the instance or reports its end: the node agent dies too
    const agent = h.procs.get('n0')!;
    const agentGone = new Promise((r) => agent.once('exit', r));
    agent.kill('SIGKILL');
    await agentGone;
    await until(async () => (await h.status()) === undefined, 10_000, 'no cluster status answered with the cluster manager dead');
    expect(readyIn(await view('gateway', 'gw-a'))?.sort()).toEqual(ids);
    expect(readyIn(await view('pool', 'pm-0'))?.sort()).toEqual(ids);

    const [victim, peer] = ids as [string, string];
    const pid = readRecords(dir).find((r) => r.name === victim)!.pid;
    const at = Date.now();
    process.kill(pid, 'SIGKILL');
    const out: Partial<Record<DispatchViewKind, { ms: number; why?: string }>> = {};
    const peerOut: Record<DispatchViewKind, number> = { gateway: 0, pool: 0 };
    // polled for deadAfterMs + 1 s: the victim must leave both on the advisory, the peer must never leave
    while (Date.now() - at < LIVENESS.deadAfterMs + 1000) {
      const [g, p] = await Promise.all([view('gateway', 'gw-a'), view('pool', 'pm-0')]);
      for (const [kind, v] of [['gateway', g], ['pool', p]] as const) {
        const ready = readyIn(v);
        if (!ready) continue;
        if (out[kind] === undefined && !ready.includes(victim)) out[kind] = { ms: Date.now() - at, why: whyOut(v, victim) };
        if (!ready.includes(peer)) peerOut[kind]++;
      }
      await sleep(25);
    }
    console.log(`${victim}: out of the gateway's view after ${out.gateway?.ms} ms (${out.gateway?.why}), of the pool leader's after ${out.pool?.ms} ms (${out.pool?.why})`);
    expect(await h.status(), 'still no cluster status').toBeUndefined();
    for (const kind of ['gateway', 'pool'] as const) {
      expect(out[kind], `${victim} left the ${kind}'s view`).toBeDefined();
      // the advisory beats the death verdict (deadAfterMs after its last status); `why` below names which one dropped it
      expect(out[kind]!.ms, `${victim} out of the ${kind}'s view before the death verdict`).toBeLessThan(LIVENESS.deadAfterMs);
      expect(out[kind]!.why, `why the ${kind}'s view dropped ${victim}`).toBe('conn_ended');
      expect(peerOut[kind], `${peer} out of the ${kind}'s view in ${peerOut[kind]} polls`).toBe(0);
    }

    // the gateway routes a request to the peer, with no planner
    const r = await fetch(`${url}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'llama3.1-8b', prompt: 'hello', max_tokens: 4 }), signal: AbortSignal.timeout(20_000),
    });
    expect(r.status).toBe(200);
  }, 180_000);
});

/**
 * A frozen engine (docs/DATAPATH.md "A hung engine"), on a real nats-server, real actor processes (cluster, pool and
 * node managers, two instance managers) and emulated engines; the gateway is the real NatsBackend routing itself
 * and reading the engines directly. The serving engine is SIGSTOPped at the 30th token of a 300-token stream: its
 * process and its socket stay, so nothing breaks, and only deadlines can tell.
 *
 * - The gateway's idle deadline: the engine sends nothing for longer than the request's next-token bound
 *   (timeouts.engineIdle), the leg ends as an engine failure and the request continues on the peer. The engine is
 *   let go (SIGCONT) once the gateway migrated, before its instance's health watch would find it hung: the client's
 *   stream is whole (exactly 300 tokens, one word each, contiguous seq), its tokens after the stall from the peer,
 *   and the stopped engine was not killed (the migration was the idle deadline's).
 * - The instance manager's health watch: the engine stays stopped; its /health misses timeouts.engineHealth.misses
 *   probes, the instance leaves `ready` (the pool's status shows it), SIGKILLs the engine and restarts it as after a
 *   crash: a new engine process, the instance ready again; the stream is whole on the peer.
 *
 * Each prints the stall's figures: time to the migration, to the instance leaving ready, to the kill, to ready again.
 */
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { completionRequest, emulatedClusterConfig, expectOneStream, servingPids, startGatewayCluster, type GatewayCluster } from '../helpers/gateway-cluster.ts';
import { waitFor } from '../helpers/wait.ts';
import type { Harness } from './control-harness.ts';
import type { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { InstanceStatus, controlSubjects, type TokenChunk } from '../../protocols/index.ts';

/** the stream's idle deadline after its first token: 3 s (this suite's; the default is 10 s) */
const IDLE = { nextTokenMultiple: 1, nextTokenFloorMs: 3000 };
/** the health watch: a probe every 1.5 s within 1 s, 6 misses: a stopped engine is hung 8.5-10 s after its stall */
const HEALTH = { intervalMs: 1500, deadlineMs: 1000, misses: 6 };
let cluster: GatewayCluster;
let h: Harness;
let backend: NatsBackend;
/** each instance's published states, with when they arrived */
const states: { id: string; atMs: number; state: string }[] = [];

beforeAll(async () => {
  cluster = await startGatewayCluster({
    config: emulatedClusterConfig(2, {
      engine: { healthDeadlineMs: 60_000 },
      timeouts: { engineIdle: IDLE, engineHealth: HEALTH },
    }),
    ready: 2, readyTimeoutMs: 90_000,
    gatewayId: 'gw-hang',
    // the gateway actor's own wiring (actors/gateway/main.ts): the config's idle deadline, the most lenient SLO as fallback
    backend: (config) => ({ chunkTimeoutMs: 60_000, engineIdle: { settings: config.timeouts.engineIdle, fallback: { ttftMs: config.slo.ttftMs.L, tbtMs: config.slo.tbtMs } } }),
    routed: { until: (r) => r.routable(), timeoutMs: 20_000, what: () => "the cluster's routing table at the gateway" },
  });
  ({ h, backend } = cluster);
  h.bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (st) => void states.push({ id: st.id, atMs: Date.now(), state: st.state }), { capacity: 4096 });
}, 150_000);

afterAll(async () => {
  await cluster?.stop();
}, 30_000);

const request = (id: string, maxTokens: number) => completionRequest(id, maxTokens, { giveUpAfterMs: 180_000 });

/** the engine process of `instance` now (its manager's emulator child), or 0. */
const enginePid = (instance: string): number => servingPids(h, instance).engine;

/** gone, or a zombie not reaped yet */
function dead(pid: number): boolean {
  if (!existsSync(`/proc/${pid}`)) return true;
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z') ?? true;
  } catch {
    return true;
  }
}

async function instanceState(id: string): Promise<string | undefined> {
  const s = await h.status();
  return s?.pools.flatMap((p) => p.instances).find((i) => i.id === id)?.state;
}

interface Stall {
  chunks: TokenChunk[];
  victim: string;
  pid: number;
  stallAt: number;
  /** the gateway's migration counter moved, ms after the stall */
  migratedMs?: number;
}

/**
 * Streams 300 tokens; at the 30th SIGSTOPs the serving engine, and `after` runs alongside the rest of the stream
 * (it may SIGCONT the engine, or watch it die). Returns the client's chunks once the stream and `after` are done.
 */
async function stallMidStream(id: string, after: (s: Stall) => Promise<void>): Promise<Stall> {
  const before = backend.counters.migrated;
  const st: Partial<Stall> & { chunks: TokenChunk[] } = { chunks: [] };
  let watching: Promise<void> | undefined;
  let n = 0;
  for await (const c of await backend.submit(request(id, 300), new AbortController().signal)) {
    st.chunks.push(c);
    n += c.tokens;
    st.victim ??= c.instance;
    if (!watching && n >= 30 && st.victim) {
      st.pid = enginePid(st.victim);
      if (!(st.pid > 0)) throw new Error(`no engine process of ${st.victim}`);
      process.kill(st.pid, 'SIGSTOP');
      st.stallAt = Date.now();
      const s = st as Stall;
      watching = (async () => {
        await waitFor(() => (backend.counters.migrated > before ? true : undefined), 60_000, 'the gateway migrating the stalled leg');
        s.migratedMs = Date.now() - s.stallAt;
        await after(s);
      })();
      watching.catch(() => {}); // its failure is the test's, thrown below once the stream ends
    }
  }
  await watching;
  return st as Stall;
}

/** The client's stream is whole: 300 tokens once each (one word each from the emulator), seq contiguous; the tokens after the stall from the peer. */
function checkWhole(s: Stall): void {
  const { chunks } = s;
  const runs: string[] = [];
  for (const c of chunks) if (runs.at(-1)?.startsWith(`${c.instance}:`) !== true) runs.push(`${c.instance}:${c.seq}`);
  const diag = `chunks by instance ${runs.join(' ')}; stalled engine ${s.pid} of ${s.victim}`;
  expectOneStream(chunks, 300, diag);
  // the first leg's tokens, then the peer's: the stream went on elsewhere
  const other = chunks.filter((c) => c.tokens > 0 && c.instance !== s.victim);
  expect(other.length, diag).toBeGreaterThan(0);
  expect(chunks.findIndex((c) => c.tokens > 0 && c.instance !== s.victim), diag).toBeGreaterThan(0);
}

const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

describe('a SIGSTOPped engine mid-stream', () => {
  it("the gateway's idle deadline ends the leg and the request continues on the peer, whole", async () => {
    const s = await stallMidStream(`hang-idle-${Date.now()}`, async (x) => {
      // let the engine go at once: the migration was the gateway's, the health watch (>= 8.5 s) had not acted
      process.kill(x.pid, 'SIGCONT');
    });
    checkWhole(s);
    console.log(`idle deadline: stall -> migration ${s.migratedMs} ms (bound ${IDLE.nextTokenFloorMs} ms); ${new Date().toISOString()}, load ${load()}`);
    expect(s.migratedMs).toBeGreaterThanOrEqual(IDLE.nextTokenFloorMs - 1000);
    // not killed: the migration came from the idle deadline, not from a restarted engine's broken socket
    expect(dead(s.pid)).toBe(false);
    expect(enginePid(s.victim)).toBe(s.pid);
  }, 120_000);

  it("the instance's health watch takes it out of dispatch, kills it and restarts it; the request continues on the peer", async () => {
    // the other instance served last; the victim of the first case is ready again
    await h.waitReady(2, 60_000);
    const seen: { notReadyMs?: number; killedMs?: number; readyMs?: number; newPid?: number } = {};
    const s = await stallMidStream(`hang-health-${Date.now()}`, async (x) => {
      // the kill, seen every 50 ms (apart from the slower status reads below)
      const poll = setInterval(() => {
        if (dead(x.pid)) seen.killedMs ??= Date.now() - x.stallAt;
      }, 50);
      await waitFor(async () => {
        const now = Date.now() - x.stallAt;
        const st = await instanceState(x.victim);
        // the instance's own status leaving ready (what its pool dispatches by)
        const left = states.find((t) => t.id === x.victim && t.atMs > x.stallAt && t.state !== 'ready');
        if (left) seen.notReadyMs ??= left.atMs - x.stallAt;
        if (dead(x.pid)) seen.killedMs ??= now;
        const pid = enginePid(x.victim);
        if (seen.killedMs !== undefined && pid > 0 && pid !== x.pid && st === 'ready') {
          seen.readyMs = now;
          seen.newPid = pid;
          return true;
        }
        return undefined;
      }, 120_000, `instance ${x.victim} back ready with a new engine`).finally(() => clearInterval(poll));
    });
    checkWhole(s);
    console.log(`health watch: stall -> migration ${s.migratedMs} ms, -> out of ready ${seen.notReadyMs} ms, -> engine killed ${seen.killedMs} ms, -> ready with a new engine ${seen.readyMs} ms (pid ${s.pid} -> ${seen.newPid}); ${new Date().toISOString()}, load ${load()}`);
    expect(seen.notReadyMs).toBeDefined();
    expect(seen.killedMs).toBeDefined();
    // hung only after `misses` probes: never before (misses - 1) intervals
    expect(seen.killedMs!).toBeGreaterThanOrEqual((HEALTH.misses - 1) * HEALTH.intervalMs);
    expect(seen.newPid).not.toBe(s.pid);
    // the stall is an engine failure: the instance says why it left ready
    const events = await h.streamEvents();
    expect(events.some((e) => e.kind === 'failure' && e.actor === s.victim && /engine hung/.test(e.summary))).toBe(true);
  }, 180_000);
});

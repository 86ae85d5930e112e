/**
 * A resumable stream resumed on another gateway while the gateway that streams it is still alive (docs/DATAPATH.md
 * "A gateway's death: resumable streams and the journal"): the client's connection to gateway A half died (no reset:
 * a mobile network switch), so A keeps reading the engine, and its client reconnected to gateway B with
 * Last-Event-ID. Real nats-server with the project's permissions, cluster, pool and node managers, one instance
 * manager with its emulated engine; two gateways, each the real NatsBackend and GatewayRouter on its own
 * gateway-role connection (as the gateway actor wires them), A's journaled leg handed to B's resume as the journal
 * would (StreamHooks.onLeg).
 *
 * Expected: B's end report for A's leg (LegReport.resumed) makes the instance stop A's direct leg (a non-retryable
 * error chunk on its stream subject), so A drops its engine call at once: A's stream ends with that error within
 * 2 s, far short of its 300 tokens, and opens no leg of its own; while B's continuation streams, the engine runs
 * one request (B's), not two; B's stream carries the rest of the answer, each token once; the request's legs are
 * recorded once each (A's failed, B's ok) and the engine ends with nothing running.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { completionRequest, emulatedClusterConfig, servingPids, startGatewayCluster, type GatewayCluster } from '../helpers/gateway-cluster.ts';
import { as } from '../helpers/nats.ts';
import { sleep, waitFor } from '../helpers/wait.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { GatewayRouter } from '../../actors/gateway/router.ts';
import { loadProfile } from '../../src/telemetry/profile-io.ts';
import { profilePathOf } from '../../actors/common/config.ts';
import type { JournalLeg } from '../../actors/gateway/resume.ts';
import { RequestRecord, subjects, type RequestRecord as Rec, type TokenChunk } from '../../protocols/index.ts';

const MAX_TOKENS = 300;
let cluster: GatewayCluster;
let gwB: Bus;
let routerB: GatewayRouter;
let backendB: NatsBackend;
const records: Rec[] = [];

beforeAll(async () => {
  cluster = await startGatewayCluster({
    config: emulatedClusterConfig(1), ready: 1, readyTimeoutMs: 60_000, gatewayId: 'gw-a',
    backend: () => ({ chunkTimeoutMs: 20_000 }),
  });
  const { h, config } = cluster;
  h.bus.subscribe(subjects.telRequestAll(), RequestRecord, (r) => void records.push(r), { capacity: 4096 });
  gwB = await Bus.connect({ servers: h.nats.url, ...as('gateway', 'gw-b'), name: 'gw-b', log: silentLogger() });
  routerB = new GatewayRouter(gwB, config, loadProfile(profilePathOf(config)), undefined);
  routerB.start();
  backendB = new NatsBackend(gwB, { chunkTimeoutMs: 20_000, router: routerB });
  await waitFor(() => (routerB.routable() ? true : undefined), 10_000, "the cluster's routing table at gateway B");
}, 120_000);

afterAll(async () => {
  routerB?.stop();
  backendB?.close();
  await gwB?.close();
  await cluster?.stop();
}, 30_000);

/** The port the process `pid` listens on (IPv4): a listening socket of /proc/net/tcp whose inode is one of its fds. */
function listeningPort(pid: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const row = readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/)).find((f) => f[3] === '0A' && inodes.has(f[9] ?? ''));
  if (!row) throw new Error(`process ${pid} listens on no IPv4 port`);
  return parseInt(row[1]!.split(':')[1]!, 16);
}

/** The requests the engine listening on `port` runs now (its vllm:num_requests_running). */
async function engineRunning(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
  return Number(/vllm:num_requests_running\{[^}]*\} ([\d.]+)/.exec(text)?.[1] ?? NaN);
}

describe('a stream resumed on gateway B while gateway A still streams it', () => {
  it('A drops its engine call at once: the engine runs B\'s leg alone, each token reaches B\'s client once, each leg is recorded once', async () => {
    const id = `alive-${Date.now()}`;
    const req = completionRequest(id, MAX_TOKENS);
    let legA: JournalLeg | undefined;
    // A's client: it stops reading what A sends once it reconnects elsewhere, but A does not know (no reset)
    const fromA: TokenChunk[] = [];
    let sentA = 0;
    let textA = '';
    let endedA = 0;
    let reached: () => void = () => {};
    const atSnapshot = new Promise<void>((r) => (reached = r));
    const streamA = (async () => {
      for await (const c of await cluster.backend.submit(req, new AbortController().signal, { onLeg: (l) => void (legA = l) })) {
        fromA.push(c);
        sentA += c.tokens;
        textA += c.text;
        if (sentA >= 20) reached();
      }
      endedA = Date.now();
    })();
    await atSnapshot;
    // what the journal holds when the client reconnects to B: the tokens and text it was sent, A's leg
    const snapshot = { sent: sentA, text: textA };
    expect(legA?.instance).toBeDefined();
    const port = listeningPort(servingPids(cluster.h, legA!.instance!).engine);
    const resumedAt = Date.now();
    const fromB: TokenChunk[] = [];
    let runningDuringB: number | undefined;
    for await (const c of await backendB.resume(req, { ...snapshot, leg: legA!, resumes: 0 }, new AbortController().signal)) {
      fromB.push(c);
      // mid-way through B's continuation (over a second after the resume): the engine's count of what it runs
      if (runningDuringB === undefined && fromB.reduce((n, x) => n + x.tokens, 0) >= 60) runningDuringB = await engineRunning(port);
    }
    await streamA;
    const diag = JSON.stringify({ endedAfterMs: endedA - resumedAt, tokensA: sentA, lastA: fromA.at(-1), runningDuringB, counters: cluster.backend.counters });

    // A's stream ended with the instance's error promptly, not at its 300th token: its engine call was dropped
    const lastA = fromA.at(-1)!;
    expect(lastA.error?.code, diag).toBe('cancelled');
    expect(lastA.error?.retryable, diag).toBe(false);
    expect(endedA - resumedAt, diag).toBeLessThan(2000);
    expect(sentA, diag).toBeLessThan(MAX_TOKENS);
    // the engine ran B's leg alone while it streamed
    expect(runningDuringB, diag).toBe(1);

    // B's client got the rest of the answer after what it had: every token once (the emulator's tokens are a word each)
    const lastB = fromB.at(-1)!;
    expect(lastB.error, diag).toBeUndefined();
    expect(lastB.done, diag).toBe(true);
    expect(lastB.usage?.completionTokens, diag).toBe(MAX_TOKENS);
    const text = snapshot.text + fromB.map((c) => c.text).join('');
    expect(text.trim().split(/\s+/).length, diag).toBe(MAX_TOKENS);

    // each leg recorded once: A's (ended by B's report, failed) and B's continuation; A opened no leg of its own
    await sleep(1000);
    const legs = records.filter((r) => r.id === id || r.id.startsWith(`${id}-`));
    expect(legs.map((r) => r.outcome).sort(), JSON.stringify(legs)).toEqual(['failed', 'ok']);
    expect(new Set(legs.map((r) => r.id)).size).toBe(2);
    expect(legs.find((r) => r.id === id)?.completionTokens).toBe(snapshot.sent);
    await waitFor(async () => ((await engineRunning(port)) === 0 ? true : undefined), 5000, 'the engine running nothing');
  }, 120_000);
});

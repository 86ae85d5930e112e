/**
 * The resume journal of a 3-server NATS cluster (replicated, R3) is read through its stream leader, never by direct
 * get: a direct get may be answered by a follower that has not applied an acknowledged append yet (one catching up
 * after its restart), and a resume would then find the stream unknown (404 stream_not_found, final for the client).
 * Real nats-servers with the project's permissions: the cluster manager's role makes the stream (and turns direct get
 * off on one made with it on), the gateway's role appends and reads back; an admin subscriber counts the direct gets
 * and the message gets the reads send. A reader configured for one replica finds the leader's read when its direct get
 * gets no answer.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { ensureResumeStream } from '../../actors/common/events.ts';
import { foldJournal, jetStreamAppend, readJournal } from '../../actors/gateway/resume.ts';
import { inboxPrefix, jetstream } from '../../protocols/index.ts';
import type { ResumeEntry } from '../../protocols/journal.ts';
import { creds, startNatsCluster } from '../helpers/nats.ts';

const stops: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const s of stops.reverse()) await s().catch(() => {});
});

const head = (id: string): ResumeEntry => ({
  v: 1, id, gen: 0,
  head: { req: { v: 1, id, model: 'm', kind: 'completion', prompt: 'p', inputTokens: 1, maxTokens: 4, arrivalMs: 0, giveUpAtMs: 1, streamSubject: `dyn.v1.stream.${id}` }, created: 1, includeUsage: false, continuousUsage: false },
});

/** the journal's reads published on `url`'s account, by kind, counted by an admin subscriber. */
async function reads(url: string): Promise<{ direct: () => number; leader: () => number; nc: NatsConnection }> {
  const nc = await connect({ servers: url, ...creds('admin') });
  stops.push(() => nc.close());
  let direct = 0;
  let leader = 0;
  nc.subscribe(`$JS.API.DIRECT.GET.${jetstream.resumeStream}`, { callback: () => { direct++; } });
  nc.subscribe(`$JS.API.DIRECT.GET.${jetstream.resumeStream}.>`, { callback: () => { direct++; } });
  nc.subscribe(`$JS.API.STREAM.MSG.GET.${jetstream.resumeStream}`, { callback: () => { leader++; } });
  await nc.flush();
  return { direct: () => direct, leader: () => leader, nc };
}

describe('the resume journal of a NATS cluster', () => {
  it('is made without direct get (turned off on a stream made with it), and read back whole through its leader', async () => {
    const c = await startNatsCluster(3);
    stops.push(() => c.stop());
    const servers = c.urls.join(',');
    const seen = await reads(c.urls[0]!);
    // a stream made as a one-server cluster makes it (direct get on), then the cluster's own manager ensures it
    const admin = await Bus.connect({ servers, name: 'admin', ...creds('admin'), log: silentLogger() });
    stops.push(() => admin.close());
    let jsm!: Awaited<ReturnType<typeof jetstreamManager>>;
    for (let t = 0; ; t++) {
      try {
        // the cluster's meta leader may still be electing (the manager's API check, the stream's creation)
        jsm = await jetstreamManager(admin.nc, { timeout: 2000 });
        await jsm.streams.add({ name: jetstream.resumeStream, subjects: [...jetstream.resumeSubjects], num_replicas: 3, allow_direct: true });
        break;
      } catch (err) {
        if (t >= 40) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    const cm = await Bus.connect({ servers, name: 'cm', ...creds('cluster'), inboxPrefix: inboxPrefix('cluster', 'cm-0'), log: silentLogger() });
    stops.push(() => cm.close());
    cm.jetstreamReplicas = 3;
    await ensureResumeStream(cm);
    expect((await jsm.streams.info(jetstream.resumeStream)).config.allow_direct ?? false).toBe(false);

    const gw = await Bus.connect({ servers, name: 'gw', ...creds('gateway'), inboxPrefix: inboxPrefix('gateway', 'gw-1'), log: silentLogger() });
    stops.push(() => gw.close());
    gw.jetstreamReplicas = 3;
    const append = jetStreamAppend(gw);
    await append(head('r1'), 5000);
    for (let i = 0; i < 20; i++) await append({ v: 1, id: 'r1', gen: 0, from: i, events: [{ text: ` t${i}`, tokens: 1 }] }, 5000);
    await append(head('r2'), 5000);
    const s = foldJournal(await readJournal(gw, 'r1', 5000))!;
    expect(s.events.map((e) => e.text)).toEqual(Array.from({ length: 20 }, (_, i) => ` t${i}`));
    expect((await readJournal(gw, 'r2', 5000)).map((e) => e.head?.req.id)).toEqual(['r2']);
    expect(await readJournal(gw, 'none', 5000)).toEqual([]);
    await seen.nc.flush();
    console.log(`journal reads: ${seen.leader()} through the leader, ${seen.direct()} by direct get`);
    expect(seen.direct()).toBe(0);
    expect(seen.leader()).toBe(21 + 1 + 1 + 1 + 1);

    // a gateway configured for one replica (its direct get unanswered: the stream has none) reads through the leader
    const one = await Bus.connect({ servers, name: 'gw-one', ...creds('gateway'), inboxPrefix: inboxPrefix('gateway', 'gw-2'), log: silentLogger() });
    stops.push(() => one.close());
    const t0 = Date.now();
    const again = foldJournal(await readJournal(one, 'r1', 5000))!;
    console.log(`a one-replica reader of the replicated journal: read in ${Date.now() - t0} ms`);
    expect(again.events.map((e) => e.text)).toEqual(Array.from({ length: 20 }, (_, i) => ` t${i}`));
  }, 90_000);
});

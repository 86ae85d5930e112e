/**
 * The resume journal's appends (actors/gateway/resume.ts jetStreamAppend) over a real nats-server with JetStream,
 * as the gateway role (nats.conf's permissions: its inbox, the journal's subjects): before the journal's stream
 * exists an append is refused at once (no responders), not after its deadline; once it exists an append resolves
 * when the stream holds the entry, and the entries read back (readJournal) are the ones appended, in order; with
 * the server stopped an append is refused within its deadline. A JournalWriter over these appends sends an entry
 * refused while the stream was missing again until the stream holds it.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.ts';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { Bus } from '../../src/runtime/bus.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { ensureResumeStream } from '../../actors/common/events.ts';
import { JournalWriter, foldJournal, jetStreamAppend, readJournal } from '../../actors/gateway/resume.ts';
import { inboxPrefix } from '../../protocols/index.ts';
import type { ResumeEntry } from '../../protocols/journal.ts';

/** the process's state letter from /proc/<pid>/stat (R, S, T for stopped, ...). */
function processState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).charAt(0);
}

let nats: TestNats;
let admin: Bus;
let gw: Bus;

beforeAll(async () => {
  nats = await startNatsServer();
  admin = await Bus.connect({ servers: nats.url, name: 'admin', ...nats.creds('admin'), log: silentLogger() });
  gw = await Bus.connect({ servers: nats.url, name: 'gw', ...nats.creds('gateway'), inboxPrefix: inboxPrefix('gateway', 'gw-1'), log: silentLogger(), reconnect: false });
}, 30_000);

afterAll(async () => {
  await gw?.close().catch(() => {});
  await admin?.close().catch(() => {});
  await nats?.stop();
});

const head = (id: string): ResumeEntry => ({
  v: 1, id, gen: 0,
  head: { req: { v: 1, id, model: 'm', kind: 'completion', prompt: 'p', inputTokens: 1, maxTokens: 4, arrivalMs: 0, giveUpAtMs: 1, streamSubject: `dyn.v1.stream.${id}` }, created: 1, includeUsage: false, continuousUsage: false },
});

describe('jetStreamAppend', () => {
  it('refused at once without the stream; held, and read back in order, with it; a writer sends a refused entry again', async () => {
    const append = jetStreamAppend(gw);
    // refused as no_responders, well before the deadline it would be refused at if it waited (a timeout)
    const t0 = Date.now();
    await expect(append(head('j1'), 10_000)).rejects.toMatchObject({ code: 'no_responders' });
    const refusedMs = Date.now() - t0;
    console.log(`append without the stream refused after ${refusedMs} ms (deadline 10000 ms)`);
    expect(refusedMs).toBeLessThan(5000);

    // a writer whose head is refused until the stream exists
    const w = new JournalWriter(append, 'j2', 0, 1 << 20, { headMs: 10_000, attemptMs: 500, lagMs: 0, giveUpMs: 10_000 });
    const held = w.head(head('j2').head!);
    w.text(0, ' a', 1);
    w.flush();
    await new Promise((r) => setTimeout(r, 400));
    await ensureResumeStream(admin);
    expect(await held).toBe(true);
    w.text(1, ' b', 1);
    w.end({ at: 2, text: ' c', tokens: 1, finish: 'length', stopReason: null });
    while (w.held()) await new Promise<void>((r) => w.onRelease(r));
    const s = foldJournal(await readJournal(gw, 'j2', 5000))!;
    expect(s.events.map((e) => e.text)).toEqual([' a', ' b']);
    expect(s.end).toMatchObject({ at: 2, text: ' c' });

    await append(head('j3'), 2000);
    expect((await readJournal(gw, 'j3', 5000)).map((e) => e.head?.req.id)).toEqual(['j3']);
  }, 30_000);

  it('an append waiting when its connection closes: refused at once, not left waiting past its deadline', async () => {
    const gw2 = await Bus.connect({ servers: nats.url, name: 'gw2', ...nats.creds('gateway'), inboxPrefix: inboxPrefix('gateway', 'gw-2'), log: silentLogger(), reconnect: false });
    const append = jetStreamAppend(gw2);
    await append(head('j6'), 2000);
    // the server stopped (SIGSTOP): the entry is sent, no answer comes; then the connection closes under it
    process.kill(nats.pid, 'SIGSTOP');
    try {
      // kill() returns once the signal is queued; the server's threads stop when the kernel next runs them (on a
      // loaded host, later): the entry is sent only once the process reads as stopped
      await waitFor(() => (processState(nats.pid) === 'T' ? true : undefined), 5000, 'nats-server stopped');
      const waiting = append(head('j7'), 20_000);
      const settled = waiting.then(() => 'held', (e: unknown) => (e as Error).message);
      await new Promise((r) => setTimeout(r, 200));
      // refused when the connection closes, not at its 20 s deadline: half of it is the bound
      const t0 = Date.now();
      await gw2.close().catch(() => {});
      expect(await Promise.race([settled, new Promise((r) => setTimeout(() => r('still waiting'), 10_000))])).toMatch(/closed/);
      console.log(`an append waiting when its connection closed: refused ${Date.now() - t0} ms after the close`);
      await expect(append(head('j8'), 20_000)).rejects.toMatchObject({ code: 'unavailable' });
    } finally {
      process.kill(nats.pid, 'SIGCONT');
    }
  }, 30_000);

  it('with the server gone: refused within the deadline', async () => {
    const append = jetStreamAppend(gw);
    await append(head('j4'), 2000);
    await nats.stop();
    // a 500 ms deadline: refused by it at the latest, not left waiting (a bound of 10 deadlines, for a loaded host)
    const t0 = Date.now();
    await expect(append(head('j5'), 500)).rejects.toBeDefined();
    console.log(`an append with the server gone refused after ${Date.now() - t0} ms (deadline 500 ms)`);
    expect(Date.now() - t0).toBeLessThan(5000);
  }, 30_000);
});

/**
 * Resumable SSE streams (docs/PROTOCOL.md "Resumable streams"): a client that opts in (header
 * `x-dynamollm-resumable: 1`) gets an SSE `id:` line on every event, `<request id>:<event index>`, and the gateway
 * journals what it sent (one ResumeEntry per engine read, on subjects.resume, kept by the JetStream stream
 * jetstream.resumeStream). When the gateway replica carrying the stream dies, the client sends the same request
 * again to any replica with the `Last-Event-ID` header, as EventSource does: that replica reads the journal,
 * sends the events after the client's last one again, and continues the generation as a migration (the prompt
 * plus the text already sent; nats-backend.ts resume), so the client sees one stream.
 *
 * Here: the pure part (event ids, the journal's fold, what to send again) and the journal's I/O (appends with
 * JetStream's acknowledgement, a reader with a deadline); the writer of one stream is journal-writer.ts.
 */
import { createInbox } from '@nats-io/transport-node';
import type { Bus } from '../../src/runtime/bus.ts';
import { systemClock, type Clock } from '../../src/runtime/clock.ts';
import { DynError } from '../../protocols/errors.ts';
import { ResumeEntry } from '../../protocols/journal.ts';
import { jetstream, subjects } from '../../protocols/subjects.ts';
import { resumeDirectGet, resumeLeaderGet } from '../../protocols/permissions.ts';
import type { JournalAppend, JournalEnd, JournalHead, JournalLeg, JournalSlo, JournalWriter } from './journal-writer.ts';
export { JournalWriter, DEFAULT_JOURNAL_TIMING, journalBounds, type JournalAppend, type JournalEnd, type JournalHead, type JournalLeg, type JournalSlo, type JournalTiming, type JournalTimeout } from './journal-writer.ts';

/** What a resumable stream's HTTP layer learns from the backend besides its tokens. */
export interface StreamHooks {
  /** a leg started generating (the first, a migration, a resume's): journaled, so that a resume elsewhere can end it. */
  onLeg?(leg: JournalLeg): void;
}

/** Where a resumed stream continues: the tokens and text its client was sent, the leg that was generating, the resumes before. */
export interface ResumeFrom {
  sent: number;
  text: string;
  leg?: JournalLeg;
  resumes: number;
}

/** The resume journal: a writer per resumable stream, and its entries read back. */
export interface StreamJournal {
  /** the writer of generation `gen` of stream `id`, its waits bounded by the request's SLO (journal-writer.ts). */
  writer(id: string, gen: number, slo?: JournalSlo): JournalWriter;
  /** every entry of request `id`'s journal, in order (empty: none); rejects with a retryable DynError when the journal does not answer in time. */
  read(id: string): Promise<ResumeEntry[]>;
}

/** The opt-in request header: value `1`. Without it the stream's bytes are exactly vLLM's (no `id:` lines, no journal). */
export const RESUMABLE_HEADER = 'x-dynamollm-resumable';
/** The reconnect header of the SSE specification (EventSource sends it): the id of the last event the client has. */
export const LAST_EVENT_ID_HEADER = 'last-event-id';

/** The SSE id of event `index` of request `id`. */
export function eventId(id: string, index: number): string {
  return `${id}:${index}`;
}

const LAST_EVENT_ID = /^([A-Za-z0-9_-]{1,128}):(\d{1,9})$/;

/** `Last-Event-ID` as request id and event index; undefined: the header is absent; 'invalid': present but not an id this gateway wrote. */
export function parseLastEventId(header: string | string[] | undefined): { id: string; index: number } | undefined | 'invalid' {
  if (header === undefined) return undefined;
  const m = typeof header === 'string' ? LAST_EVENT_ID.exec(header.trim()) : null;
  if (!m) return 'invalid';
  return { id: m[1]!, index: Number(m[2]) };
}

/** Whether the request opted in to a resumable stream (header value `1`); any other value is a client error. */
export function resumableOf(header: string | string[] | undefined): boolean | 'invalid' {
  if (header === undefined) return false;
  return header === '1' ? true : 'invalid';
}


/** A stream's journal read back: what its client was sent, and the leg generating it. */
export interface JournalState {
  head: JournalHead;
  /** the last writer's generation (a resume writes as gen + 1). */
  gen: number;
  /** index of the first plain text event: 1 for a chat stream (event 0 is its role chunk), else 0. */
  base: number;
  /** the plain text events, event `base + i` at i. */
  events: { text: string; tokens: number }[];
  leg?: JournalLeg;
  end?: JournalEnd;
  /** not resumable, and why. */
  stop?: string;
  /** the last unresumable range marked (ResumeEntry.unresumable): no `until`, open (no resume); else a resume from before `until` is refused. */
  unresumable?: { from: number; until?: number; why?: string };
  /** an entry starts past the events held before it: the entries between are missing from what was read. */
  gap?: true;
}

/**
 * The journal's entries (in the stream's order) folded into one state; undefined without a head (unknown,
 * expired, or cut by the stream's limits). An entry of an older generation than one already read is dropped
 * (a gateway still writing after a resume took its stream over); an entry's events replace those from its
 * `from` on (the resuming writer continues after what it read); an entry that starts past the events held means
 * entries are missing from what was read (`gap`; a writer appends in order, each entry once held before the next);
 * the last unresumable range marked counts (a closing marker follows its opening one). A later generation drops an
 * older one's stop (the older writer's client got an error once that resume ended its leg) and its open range.
 */
export function foldJournal(entries: Iterable<ResumeEntry>): JournalState | undefined {
  let s: JournalState | undefined;
  for (const e of entries) {
    if (e.head && e.gen === 0 && !s) s = { head: e.head, gen: 0, base: e.head.req.kind === 'chat' ? 1 : 0, events: [] };
    if (!s || e.gen < s.gen) continue;
    // a later writer resumed past the ranges closed before it; one an older writer left open is not its client's
    if (e.gen > s.gen && s.unresumable && s.unresumable.until === undefined) delete s.unresumable;
    // nor is an older writer's stop: its resume read none (else it was refused), so it came later (the older writer's
    // leg ended by that resume: its error)
    if (e.gen > s.gen) delete s.stop;
    s.gen = e.gen;
    if (e.events && e.from !== undefined) {
      const at = e.from - s.base;
      if (at < 0 || at > s.events.length) {
        s.gap = true;
        continue;
      }
      s.events.length = at;
      for (const x of e.events) s.events.push(x);
      // a later generation's events replace an end an older one wrote past them
      if (s.end && s.end.at < s.base + s.events.length) delete s.end;
    }
    if (e.leg) s.leg = e.leg;
    if (e.end) s.end = e.end;
    if (e.stop !== undefined) s.stop ??= e.stop;
    if (e.unresumable) s.unresumable = e.unresumable;
  }
  return s;
}

/** An event to send again: its index, text, tokens, and the completion tokens up to and with it (continuous usage). */
export interface ReplayEvent { index: number; text: string; tokens: number; upTo: number }

/**
 * What a client whose last event is `last` is sent again from the journal: the text events after it, and whether
 * the end (last event, usage event, [DONE]) follows; `sent`/`text`: the tokens and text of every text event (the
 * continuation's prompt); `next`: the index of the first event a continuation writes. An error when the client has
 * an event the journal does not (it was cut, or the client names an index it was never sent).
 */
export function replayAfter(s: JournalState, last: number):
  | { ok: true; events: ReplayEvent[]; sent: number; text: string; next: number; end?: JournalEnd; endEvents: number[] }
  | { ok: false; reason: string } {
  const lastText = s.base + s.events.length - 1;
  const lastIndex = s.end ? s.end.at + (s.head.includeUsage ? 1 : 0) : lastText;
  if (last > lastIndex) return { ok: false, reason: `the journal of this stream ends at event ${lastIndex}, before the client's last event ${last}` };
  const events: ReplayEvent[] = [];
  let sent = 0;
  let text = '';
  for (let i = 0; i < s.events.length; i++) {
    const x = s.events[i]!;
    sent += x.tokens;
    text += x.text;
    if (s.base + i > last) events.push({ index: s.base + i, text: x.text, tokens: x.tokens, upTo: sent });
  }
  const endEvents: number[] = [];
  if (s.end) {
    if (s.end.at > last) endEvents.push(s.end.at);
    if (s.head.includeUsage && s.end.at + 1 > last) endEvents.push(s.end.at + 1);
  }
  return { ok: true, events, sent, text, next: lastText + 1, ...(s.end ? { end: s.end } : {}), endEvents };
}

/** how often the appends' deadlines are checked (one timer for all of them), ms. */
const APPEND_SWEEP_MS = 100;

/**
 * Appends of `bus`'s connection to the resume journal: each entry published on its subject with a reply subject of
 * one subscription (this connection's inbox, one token per append), answered by the JetStream stream that keeps it
 * (its PubAck) once it holds the entry. Rejects when the stream refuses it (an error PubAck), nobody answers (the
 * server's no-responders status: the stream has no leader) or no answer came within timeoutMs (one timer checks
 * every append's deadline each APPEND_SWEEP_MS until the connection closes, so an append costs no timer, promise race or Error of its own).
 */
export function jetStreamAppend(bus: Bus, clock: Clock = systemClock): JournalAppend {
  const ok = `"stream":"${jetstream.resumeStream}"`;
  const waiting = new Map<string, { held: () => void; refused: (e: Error) => void; until: number }>();
  let prefix = '';
  let next = 0;
  const start = () => {
    prefix = createInbox((bus.nc as unknown as { options?: { inboxPrefix?: string } }).options?.inboxPrefix);
    bus.nc.subscribe(`${prefix}.*`, {
      callback: (_err, m) => {
        const w = waiting.get(m.subject.slice(prefix.length + 1));
        if (!w) return; // answered after its deadline
        waiting.delete(m.subject.slice(prefix.length + 1));
        if (m.headers?.code === 503) return w.refused(new DynError('no_responders', 'the resume journal has no leader', { retryable: true }));
        // {"stream":"DYN_V1_RESUME","seq":N} or {"error":{...}}: a substring test, no JSON parse per entry
        const ack = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength).toString('latin1');
        if (ack.includes(ok) && !ack.includes('"error"')) w.held();
        else w.refused(new DynError('unavailable', `the resume journal refused an entry: ${ack.slice(0, 200)}`, { retryable: true }));
      },
    });
    const sweep = clock.setInterval(() => {
      const now = clock.now();
      for (const [k, w] of waiting) {
        if (w.until > now) continue;
        waiting.delete(k);
        w.refused(new DynError('timeout', 'the resume journal did not answer in time', { retryable: true }));
      }
    }, APPEND_SWEEP_MS);
    // a closed connection answers nothing more: every append still waiting is refused at once, not left unsettled
    void bus.nc.closed().then(() => {
      clock.clearInterval(sweep);
      for (const [k, w] of waiting) {
        waiting.delete(k);
        w.refused(new DynError('unavailable', 'the NATS connection closed before the resume journal answered', { retryable: true }));
      }
    });
  };
  return (e, timeoutMs) => new Promise<void>((held, refused) => {
    if (bus.nc.isClosed()) return refused(new DynError('unavailable', 'the NATS connection is closed', { retryable: true }));
    if (prefix === '') start();
    const token = (next++).toString(36);
    waiting.set(token, { held, refused, until: clock.now() + timeoutMs });
    try {
      bus.nc.publish(subjects.resume(e.id), ResumeEntry.encode(e), { reply: `${prefix}.${token}` });
    } catch (err) {
      waiting.delete(token);
      refused(err as Error);
    }
  });
}

/** entries of one stream read at most (the stream's own per-subject cap is larger only for streams longer than any served). */
export const MAX_JOURNAL_ENTRIES = 65_536;

/** The JetStream direct get's answer headers: status code, and the message's sequence. */
interface DirectReply { data: Uint8Array; headers?: { code: number; get(k: string): string } }

/** The stream message get's answer (JSON): the message (data in base64) or an error. */
interface LeaderReply { message?: { seq?: number; data?: string }; error?: { code?: number; description?: string } }

/** One read of the journal: the entry's bytes and sequence, or null when no entry of the subject is at or past `seq`. */
type ReadOne = (seq: number, timeoutMs: number) => Promise<{ seq: number; data: Uint8Array } | null>;

/** A read through the stream's leader (`$JS.API.STREAM.MSG.GET`): what a replicated journal is read by. */
function leaderRead(bus: Bus, subject: string): ReadOne {
  return async (seq, timeoutMs) => {
    const m = await bus.nc.request(resumeLeaderGet(), JSON.stringify({ seq, next_by_subj: subject }), { timeout: timeoutMs });
    let r: LeaderReply;
    try {
      r = JSON.parse(new TextDecoder().decode(m.data)) as LeaderReply;
    } catch {
      throw new DynError('internal', 'the resume journal answered what is not JSON', { retryable: false });
    }
    if (r.error) {
      if (r.error.code === 404) return null;
      throw new DynError('unavailable', `the resume journal answered ${r.error.code ?? '?'}: ${r.error.description ?? ''}`, { retryable: true, retryAfterS: 1 });
    }
    return { seq: Number(r.message?.seq), data: Buffer.from(r.message?.data ?? '', 'base64') };
  };
}

/** A direct get (`$JS.API.DIRECT.GET`): what a one-replica journal is read by (nats-server < 2.9.15 may crash on a message get there: kv-open.ts). */
function directRead(bus: Bus, subject: string): ReadOne {
  return async (seq, timeoutMs) => {
    const r = (await bus.nc.request(resumeDirectGet(), JSON.stringify({ seq, next_by_subj: subject }), { timeout: timeoutMs })) as unknown as DirectReply;
    const code = r.headers?.code ?? 0;
    if (code === 404) return null;
    if (code !== 0 && code !== 200) throw new DynError('unavailable', `the resume journal answered ${code}`, { retryable: true, retryAfterS: 1 });
    return { seq: Number(r.headers?.get('Nats-Sequence')), data: r.data };
  };
}

/**
 * The journal entries of request `id`, in the stream's order, read one entry a round trip (`next_by_subj`) within
 * `timeoutMs` in all on `clock`: by direct get when the journal has one replica, through the stream's leader when
 * it is replicated (`bus.jetstreamReplicas`, the cluster's nats.jetstreamReplicas; a follower's direct get could miss
 * an acknowledged entry, and a resume would be refused as unknown). A stream made with the other setting (a process
 * configured otherwise, an upgrade under way) answers the other read only: when the first read gets no answer within
 * half of the time (or no responders) the other is tried, and the one that answers reads the rest. Throws a retryable
 * DynError ('timeout' or 'unavailable') when the journal did not answer in time, so the client may try the resume
 * again.
 */
export async function readJournal(bus: Bus, id: string, timeoutMs: number, clock: Clock = systemClock): Promise<ResumeEntry[]> {
  const subject = subjects.resume(id);
  const reads = bus.jetstreamReplicas > 1 ? [leaderRead(bus, subject), directRead(bus, subject)] : [directRead(bus, subject), leaderRead(bus, subject)];
  let read = reads[0]!;
  const until = clock.now() + timeoutMs;
  const first = async (left: number): Promise<{ seq: number; data: Uint8Array } | null> => {
    try {
      return await reads[0]!(1, Math.max(1, Math.floor(left / 2)));
    } catch (err) {
      if (err instanceof DynError || clock.now() >= until) throw err;
      read = reads[1]!;
      return read(1, Math.max(1, until - clock.now()));
    }
  };
  const out: ResumeEntry[] = [];
  let seq = 1;
  while (out.length < MAX_JOURNAL_ENTRIES) {
    const left = until - clock.now();
    if (left <= 0) throw new DynError('timeout', 'the resume journal did not answer in time', { retryable: true, retryAfterS: 1 });
    let r: { seq: number; data: Uint8Array } | null;
    try {
      r = seq === 1 && out.length === 0 && read === reads[0] ? await first(left) : await read(seq, left);
    } catch (err) {
      if (err instanceof DynError) throw err;
      const timeout = /timeout/i.test((err as Error).message);
      throw new DynError(timeout ? 'timeout' : 'unavailable', `the resume journal could not be read: ${(err as Error).message}`, { retryable: true, retryAfterS: 1 });
    }
    if (!r) break; // no entry past seq
    if (!Number.isInteger(r.seq) || r.seq < seq) throw new DynError('internal', 'the resume journal answered without a sequence', { retryable: false });
    try {
      out.push(ResumeEntry.decode(r.data, subject));
    } catch {
      // an entry this gateway cannot read is skipped: the fold finds the gap if it mattered
    }
    seq = r.seq + 1;
  }
  return out;
}

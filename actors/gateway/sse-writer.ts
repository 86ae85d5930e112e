import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** Held bytes at which a client's SSE stream is written at once rather than at the end of the turn. */
export const SSE_COALESCE_MAX_BYTES = 65_536;

/** The writers holding bytes for the end of this turn, written by one setImmediate for all of them. */
let held: SseWriter[] = [];
let heldTimer: NodeJS.Immediate | undefined;

function writeHeld(): void {
  heldTimer = undefined;
  const ws = held;
  held = [];
  let failure: Error | undefined;
  for (const w of ws) {
    try {
      w.writeHeld();
    } catch (e) {
      failure ??= e as Error; // the others are written all the same
    }
  }
  if (failure) throw failure;
}

/**
 * A client's SSE stream as socket writes. Events are appended as they are framed; `flush` ends a batch. The
 * first flush (status line, headers and the first event: the client's TTFT) is written at once. Every later
 * flush is held until the end of the current event-loop turn (`setImmediate`: after the other sockets the
 * poll phase has ready), so the events of one stream that arrive in one turn (several engine reads, the
 * choices of an `n > 1` request) leave in one write, or at once when `maxBytes` are held. The bytes and their
 * order are those of one write per event; only the number of writes changes. The writers holding bytes at the
 * end of a turn are written by one setImmediate (not one per stream). A write after the first goes to
 * the socket as one string framed as Node frames a chunk of a chunked response (size in hex, CRLF, data,
 * CRLF): the same bytes as `res.write`, without its four-part corked write; Node writes it where the response
 * is not yet on its socket (a pipelined request waiting its turn) or is not chunked.
 *
 * `gate` (a resumable stream: its JournalWriter, journal-writer.ts): while it is held (the journal has not yet acknowledged
 * an entry), writes and the end wait for its release, and the bytes held meanwhile leave together: a client never holds
 * an event that its journal may lack. While the gate says the stream is in an unresumable range (`unresumable`: the
 * journal did not hold an entry within its bound), the events leave without their `id:` lines, and the first of them
 * carries an SSE comment saying why and an empty `id:` (SSE: the client's last event id is reset, so a reconnect does
 * not ask to resume from an event before those it was sent). Before each write in such a range the gate is asked to
 * close it at the first event held here (`regain`: the journal holds every event the client was sent); once it
 * does, the events carry their ids again and wait for the journal as before.
 */
/** What a stream's writes wait for (a resumable stream's journal). */
export interface WriteGate {
  held(): boolean;
  /** `fn` runs once, at the gate's next release. */
  onRelease(fn: () => void): void;
  /** why the stream is in an unresumable range; undefined: its events carry ids the journal holds. */
  readonly unresumable?: string | undefined;
  /** closes the unresumable range at event `index` when the journal holds every event before it: true once closed. */
  regain?(index: number): boolean;
}

/** an event's id line (events are `id: ...\n` then one `data: <json>` line: no data line starts with `id:`). */
const ID_LINE = /^id: [^\n]*\n/gm;
/** the first id line's event index (`id: <request id>:<index>`). */
const FIRST_INDEX = /^id: [^\n]*:(\d+)$/m;

export class SseWriter {
  private pending = '';
  /** in `held`, to be written at the end of this turn. */
  private queued = false;
  private wrote = false;
  /** waiting for the gate's release. */
  private gated = false;
  /** the end (its last bytes), once asked for. */
  private ending?: string;
  /** the client was told of the open unresumable range (its last event id reset). */
  private told = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly maxBytes = SSE_COALESCE_MAX_BYTES,
    private readonly gate?: WriteGate,
  ) {}

  /** appends one framed event. */
  add(event: string): void {
    this.pending += event;
  }

  /** the end of a batch: the first is written now, later ones at the end of this turn (or now past maxBytes). */
  flush(): void {
    if (this.pending === '') return;
    if (this.wrote && this.pending.length < this.maxBytes) {
      if (!this.queued) {
        this.queued = true;
        held.push(this);
        heldTimer ??= setImmediate(writeHeld);
      }
      return;
    }
    this.wrote = true;
    this.write();
  }

  /** writes what is held now (once the gate is released), with `last` after it, and ends the response. */
  end(last = ''): void {
    this.ending = last;
    this.regain();
    if (this.wait()) return;
    const s = this.take(last);
    if (!this.res.writableEnded) this.res.end(s);
  }

  /** nothing held or queued: every event added is with the response (the native data plane's hand-off waits for it). */
  get idle(): boolean {
    return this.pending === '' && !this.queued && !this.gated && this.ending === undefined;
  }

  /** drops what is held (the client went away, or the stream was ended elsewhere); an end asked for still goes out. */
  drop(): void {
    if (this.ending === undefined) this.pending = '';
  }

  /** (the end of the turn) writes what is held. */
  writeHeld(): void {
    this.queued = false;
    this.write();
  }

  /** true: the gate is held, and the writes resume at its release. */
  private wait(): boolean {
    if (!this.gate?.held()) return false;
    if (!this.gated) {
      this.gated = true;
      this.gate.onRelease(() => {
        this.gated = false;
        if (this.ending !== undefined) this.end(this.ending);
        else this.write();
      });
    }
    return true;
  }

  /** what is held (then `last`), taken to be written: past the gate's end of resumability without event ids. */
  private take(last = ''): string {
    let s = this.pending + last;
    this.pending = '';
    const why = this.gate?.unresumable;
    if (why === undefined || s === '') return s;
    s = s.replace(ID_LINE, '');
    if (this.told) return s;
    this.told = true;
    return `: not resumable: ${why.replace(/[\r\n]/g, ' ')}\nid:\n${s}`;
  }

  /** in an unresumable range: asks the gate to close it at the first event held here. */
  private regain(): void {
    if (this.gate?.unresumable === undefined || !this.gate.regain) return;
    const m = FIRST_INDEX.exec(this.pending);
    if (m && this.gate.regain(Number(m[1]))) this.told = false;
  }

  private write(): void {
    if (this.ending !== undefined) return;
    this.regain();
    if (this.wait()) return;
    const s = this.take();
    if (s === '' || this.res.writableEnded || this.res.destroyed) return;
    const sock = chunkSocket(this.res);
    if (sock) sock.write(`${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`);
    else this.res.write(s);
  }
}

/** Node's state of a response (node:_http_outgoing): what decides whether a chunk may bypass it. */
interface OutgoingState {
  chunkedEncoding?: boolean;
  _headerSent?: boolean;
  outputData?: unknown[];
}

/**
 * The socket of `res` when a chunk can be written to it directly: the response is chunked, its head has been
 * given to this socket and nothing of it waits in Node's queue; otherwise undefined (Node writes it).
 */
function chunkSocket(res: ServerResponse): Socket | undefined {
  const o = res as ServerResponse & OutgoingState;
  const s = res.socket;
  if (!s || !o.chunkedEncoding || !o._headerSent || !Array.isArray(o.outputData) || o.outputData.length !== 0) return undefined;
  return s.destroyed || !s.writable ? undefined : s;
}

import type { ServerResponse } from 'node:http';

/** Held bytes at which a client's SSE stream is written at once rather than at the end of the turn. */
export const SSE_COALESCE_MAX_BYTES = 65_536;

/**
 * A client's SSE stream as socket writes. Events are appended as they are framed; `flush` ends a batch. The
 * first flush (status line, headers and the first event: the client's TTFT) is written at once. Every later
 * flush is held until the end of the current event-loop turn (`setImmediate`: after the other sockets the
 * poll phase has ready), so the events of one stream that arrive in one turn (several engine reads, the
 * choices of an `n > 1` request) leave in one write, or at once when `maxBytes` are held. The bytes and their
 * order are those of one write per event; only the number of writes changes.
 */
export class SseWriter {
  private pending = '';
  private timer: NodeJS.Immediate | undefined;
  private wrote = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly maxBytes = SSE_COALESCE_MAX_BYTES,
  ) {}

  /** appends one framed event. */
  add(event: string): void {
    this.pending += event;
  }

  /** the end of a batch: the first is written now, later ones at the end of this turn (or now past maxBytes). */
  flush(): void {
    if (this.pending === '') return;
    if (this.wrote && this.pending.length < this.maxBytes) {
      this.timer ??= setImmediate(this.write);
      return;
    }
    this.wrote = true;
    this.write();
  }

  /** writes what is held now, with `last` after it, and ends the response. */
  end(last = ''): void {
    this.cancel();
    const s = this.pending + last;
    this.pending = '';
    if (!this.res.writableEnded) this.res.end(s);
  }

  /** drops what is held (the client went away, or the stream was ended elsewhere). */
  drop(): void {
    this.cancel();
    this.pending = '';
  }

  private readonly write = (): void => {
    this.cancel();
    if (this.pending !== '' && !this.res.writableEnded && !this.res.destroyed) this.res.write(this.pending);
    this.pending = '';
  };

  private cancel(): void {
    if (this.timer) clearImmediate(this.timer);
    this.timer = undefined;
  }
}

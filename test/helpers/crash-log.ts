/**
 * A child process's stderr kept within a bound for a failed suite's message: its last `tailChars` characters, and
 * its cause when it died of a Go panic or fatal error (nats-server): the first line that starts "panic:", "fatal
 * error:" or carries "[FTL]", and the lines after it up to the first blank one (e.g. "[signal SIGSEGV ...]", a
 * "panic: ... [recovered]" chain), `causeLines` at most. A Go crash prints its cause first and then a stack of every
 * goroutine, so the tail alone holds only goroutine frames.
 */
const CAUSE = /^\s*(panic: |fatal error: )|\[FTL\] /;

export class CrashLog {
  #tail = '';
  /** the last line so far, not ended by a newline yet. */
  #partial = '';
  #cause: string[] = [];
  /** 'seek': no cause yet; 'in': within the cause's lines; 'done': the cause is whole. */
  #state: 'seek' | 'in' | 'done' = 'seek';

  constructor(private readonly tailChars = 4000, private readonly causeLines = 6) {}

  push(chunk: string): void {
    this.#tail = (this.#tail + chunk).slice(-this.tailChars);
    if (this.#state === 'done') return;
    const lines = (this.#partial + chunk).split('\n');
    this.#partial = lines.pop()!.slice(-this.tailChars);
    for (const line of lines) this.#line(line);
  }

  #line(line: string): void {
    if (this.#state === 'seek' && CAUSE.test(line)) this.#state = 'in';
    if (this.#state !== 'in') return;
    if (line.trim() === '' || this.#cause.length >= this.causeLines) this.#state = 'done';
    else this.#cause.push(line.slice(0, 500));
  }

  /** the cause's lines (a last line without its newline included), empty when none was seen. */
  cause(): string[] {
    if (this.#state === 'done' || this.#partial.trim() === '') return [...this.#cause];
    if (this.#state === 'in') return this.#cause.length < this.causeLines ? [...this.#cause, this.#partial.slice(0, 500)] : [...this.#cause];
    return CAUSE.test(this.#partial) ? [this.#partial.slice(0, 500)] : [];
  }

  /** the last `tailChars` characters as written. */
  tail(): string {
    return this.#tail;
  }

  /** one line: the cause (when seen and not among the last `lines` lines), then the last `lines` lines, ' | ' between. */
  summary(lines = 5): string {
    const t = this.#tail.trim();
    const last = t ? t.split('\n').slice(-lines) : [];
    const cause = this.cause().filter((l) => !last.includes(l));
    return [...cause, ...(cause.length && last.length ? ['…'] : []), ...last].join(' | ');
  }
}

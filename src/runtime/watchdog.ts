/**
 * The supervisor's side of the liveness watchdog (decisions: src/policy/watchdog.ts): one ChildWatch per child that
 * beats (ChildSpec.liveness: a Node process started through the CLI, src/runtime/liveness-beat.ts). At each probe it
 * reads the child's beat file: content that changed since the previous probe is an answer. The watch starts again at
 * each spawn or adoption of the child, with the start grace.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { watchdogProbe, watchdogStart, unresponsive, type WatchdogSettings, type WatchdogState, type WatchdogVerdict } from '../policy/watchdog.ts';
import { LIVENESS_BEAT_ENV, LIVENESS_FILE_ENV } from './liveness-beat.ts';

function readBeat(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

export class ChildWatch {
  #state: WatchdogState;
  #last = '';
  /** kills for silence since the watch was made. */
  kills = 0;
  /** the current process was killed (its exit not seen yet): no more probes of it. */
  killing = false;

  constructor(readonly file: string, nowMs: number) {
    this.#state = watchdogStart(nowMs);
  }

  /** A process is about to be spawned: no beat of an earlier one counts. Returns its environment's beat settings. */
  spawning(nowMs: number, w: WatchdogSettings): Record<string, string> {
    mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 });
    rmSync(this.file, { force: true });
    this.#last = '';
    this.killing = false;
    this.#state = watchdogStart(nowMs);
    // two beats per probe: one late beat is not a miss
    return { [LIVENESS_FILE_ENV]: this.file, [LIVENESS_BEAT_ENV]: String(Math.max(50, Math.floor(w.intervalMs / 2))) };
  }

  /** A process started elsewhere is adopted: the beat it writes from now on counts. */
  adopted(nowMs: number): void {
    this.#last = readBeat(this.file);
    this.killing = false;
    this.#state = watchdogStart(nowMs);
  }

  /** One probe at `nowMs`. */
  probe(nowMs: number, w: WatchdogSettings): WatchdogVerdict {
    const beat = readBeat(this.file);
    const answered = beat !== '' && beat !== this.#last;
    if (beat !== '') this.#last = beat;
    const r = watchdogProbe(this.#state, nowMs, answered, w);
    this.#state = r.state;
    return r.verdict;
  }

  get misses(): number {
    return this.#state.misses;
  }

  /** Missed probes enough to be replaced on demand (policy unresponsive). */
  get unresponsive(): boolean {
    return unresponsive(this.#state);
  }
}

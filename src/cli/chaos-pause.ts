/**
 * `dynamollm chaos --pause SHARE [--cont-after S]`: a share of the victims is paused (SIGSTOP) instead of killed.
 * A paused process keeps its pid, its ports, its leases until they lapse and its GPUs: only a liveness check tells it
 * from a live one (the supervisors' watchdog, src/policy/watchdog.ts, kills it and starts a new one). The harness
 * never resumes it (default), or sends SIGCONT after `--cont-after` seconds if it is still there; every process still
 * paused when the load ends is resumed, so that `up` can stop it.
 */
import { readFileSync } from 'node:fs';
import { UsageError } from './args.ts';

export interface PauseOptions {
  /** share of the victims paused, 0..1. */
  share: number;
  /** ms after which a paused process still there is resumed (SIGCONT); undefined: never. */
  contAfterMs?: number;
}

export function pauseOptions(pause: string | undefined, contAfter: string | undefined): PauseOptions {
  const share = pause === undefined ? 0 : Number(pause);
  if (!(share >= 0 && share <= 1)) throw new UsageError(`--pause must be a share from 0 to 1, got ${pause}`);
  const cont = contAfter === undefined ? 0 : Number(contAfter);
  if (!(cont >= 0)) throw new UsageError(`--cont-after must be 0 s (never) or more, got ${contAfter}`);
  return { share, ...(cont > 0 ? { contAfterMs: cont * 1000 } : {}) };
}

/** The signal for the next victim: SIGSTOP for a `share` of them (`rand` drawn only when some are paused: the kill schedule of a seed is kept). */
export function victimSignal(o: PauseOptions, rand: () => number): 'SIGKILL' | 'SIGSTOP' {
  if (o.share <= 0) return 'SIGKILL';
  return rand() < o.share ? 'SIGSTOP' : 'SIGKILL';
}

/** Whether `pid` still exists as that process (not a zombie: a killed child its parent has not reaped yet is gone). */
function present(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** One paused victim: when its process ended (killed by its supervisor's watchdog) or was resumed, ms after the pause. */
export interface Pause { kind: string; id: string; pid: number; atMs: number; goneMs?: number; resumedMs?: number }

/** Follows the paused victims: their end, and their resumption after contAfterMs. */
export class Pauses {
  readonly list: Pause[] = [];
  #timer = setInterval(() => this.#check(), 200);

  constructor(private readonly o: PauseOptions) {
    this.#timer.unref();
  }

  add(p: Pause): void {
    this.list.push(p);
  }

  #check(): void {
    const now = Date.now();
    for (const p of this.list) {
      if (p.goneMs !== undefined || p.resumedMs !== undefined) continue;
      if (!present(p.pid)) p.goneMs = now - p.atMs;
      else if (this.o.contAfterMs !== undefined && now - p.atMs >= this.o.contAfterMs) this.#resume(p, now);
    }
  }

  #resume(p: Pause, now: number): void {
    try {
      process.kill(p.pid, 'SIGCONT');
      p.resumedMs = now - p.atMs;
    } catch {
      p.goneMs = now - p.atMs;
    }
  }

  /** Stops following; every victim still paused is resumed (counted as stillPausedAtEnd). */
  finish(): { total: number; byKind: Record<string, number>; replaced: number; timeToEndMs: { n: number; p50Ms: number | null; maxMs: number | null }; resumedByHarness: number; stillPausedAtEnd: number; log: Pause[] } {
    this.#check();
    clearInterval(this.#timer);
    let still = 0;
    for (const p of this.list) {
      if (p.goneMs !== undefined || p.resumedMs !== undefined) continue;
      still++;
      try {
        process.kill(p.pid, 'SIGCONT');
      } catch {
        // gone meanwhile
      }
    }
    const byKind: Record<string, number> = {};
    for (const p of this.list) byKind[p.kind] = (byKind[p.kind] ?? 0) + 1;
    const ends = this.list.flatMap((p) => (p.goneMs !== undefined ? [p.goneMs] : [])).sort((a, b) => a - b);
    return {
      total: this.list.length, byKind,
      // killed by their supervisor's watchdog (their process ended while paused)
      replaced: ends.length,
      timeToEndMs: { n: ends.length, p50Ms: ends.length ? ends[Math.floor(ends.length / 2)]! : null, maxMs: ends.length ? ends.at(-1)! : null },
      resumedByHarness: this.list.filter((p) => p.resumedMs !== undefined).length,
      stillPausedAtEnd: still,
      log: this.list,
    };
  }
}

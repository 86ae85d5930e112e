/**
 * A re-shard carried out as the live pool machine carries it out (src/policy/machines/pool.ts beginReshard,
 * nextUnit): the staggered units of src/policy reshardSteps, one at a time, in order.
 * - A unit whose GPUs no instance holds starts its new instance first and retires the ones it replaces once
 *   the new one is ready (capacity added before it is removed).
 * - Otherwise the replaced instances drain and stop first (a vLLM engine holds its GPUs' memory), then the new
 *   instance starts on their GPUs; it serves after an engine start.
 * - A stop unit drains and stops its instances.
 * The simulator's engine is the host: it starts, drains and reports the state of its instances. The live
 * machine's own waits (status periods, node command round trips) are not modelled.
 */
import type { StaggerUnit } from '../policy/pool-shards.ts';

export interface UnitHost<I> {
  /** start an instance of `tp` on `gpus` (pool-global indices); it serves once ready. */
  start(tp: number, gpus: number[], now: number): I;
  /** drain an instance: it takes no new request and stops when its requests are done. */
  drain(inst: I, now: number): void;
  ready(inst: I): boolean;
  /** stopped, or no longer in the pool. */
  gone(inst: I): boolean;
  byId(id: string): I | undefined;
  gpusOf(inst: I): readonly number[];
  idOf(inst: I): string;
  /** the pool's instances that hold GPUs (starting, serving or draining). */
  holding(): I[];
}

type Step = { kind: 'retire'; ids: string[] } | { kind: 'start'; tp: number; gpus: number[] };
type Wait<I> = { kind: 'gone'; insts: I[] } | { kind: 'ready'; inst: I };

export class UnitExecutor<I> {
  #k = -1;
  #todo: Step[] = [];
  #wait: Wait<I> | undefined;
  #finished = false;
  #busy = false;
  #again = false;

  constructor(
    readonly units: readonly StaggerUnit[],
    private readonly host: UnitHost<I>,
  ) {}

  get finished(): boolean {
    return this.#finished;
  }

  /** the index of the unit under way (-1 before the first). */
  get unit(): number {
    return this.#k;
  }

  /** Moves on as far as the waits allow; call it whenever an instance becomes ready or stops. Re-entrant calls fold into the running one. */
  advance(now: number): void {
    if (this.#busy) {
      this.#again = true;
      return;
    }
    this.#busy = true;
    try {
      do {
        this.#again = false;
        this.#run(now);
      } while (this.#again && !this.#finished);
    } finally {
      this.#busy = false;
    }
  }

  #run(now: number): void {
    for (let guard = 0; guard < 4 * this.units.length + 8 && !this.#finished; guard++) {
      const w = this.#wait;
      if (w) {
        // a started instance that left the pool (a cluster resize) no longer holds the unit up
        const ok = w.kind === 'gone' ? w.insts.every((i) => this.host.gone(i)) : this.host.ready(w.inst) || this.host.gone(w.inst);
        if (!ok) return;
        this.#wait = undefined;
      }
      const step = this.#todo.shift();
      if (!step) {
        if (!this.#nextUnit()) this.#finished = true;
        continue;
      }
      if (step.kind === 'retire') {
        const insts = step.ids.map((id) => this.host.byId(id)).filter((x): x is I => x !== undefined);
        for (const i of insts) this.host.drain(i, now);
        this.#wait = { kind: 'gone', insts };
      } else {
        this.#wait = { kind: 'ready', inst: this.host.start(step.tp, step.gpus, now) };
      }
    }
  }

  #nextUnit(): boolean {
    const u = this.units[++this.#k];
    if (!u) return false;
    if (u.kind === 'stop') {
      this.#todo = [{ kind: 'retire', ids: [...u.from] }];
      return true;
    }
    const held = new Set(this.host.holding().flatMap((i) => this.host.gpusOf(i)));
    const start: Step = { kind: 'start', tp: u.tp, gpus: [...u.gpus] };
    if (!u.gpus.some((g) => held.has(g))) this.#todo = u.from.length ? [start, { kind: 'retire', ids: [...u.from] }] : [start];
    else this.#todo = [{ kind: 'retire', ids: [...u.from] }, start];
    return true;
  }
}

/**
 * A re-shard carried out as the live pool machine carries it out (src/policy/machines/pool-reshard.ts beginReshard,
 * nextUnit): the staggered units of src/policy reshardSteps, one at a time, in order, each unit's steps in the
 * order src/policy unitSteps gives both.
 * - A unit whose GPUs no instance holds starts its new instance first and retires the ones it replaces once
 *   the new one is ready (capacity added before it is removed).
 * - Otherwise the replaced instances drain and stop first (a vLLM engine holds its GPUs' memory), then the new
 *   instance starts on their GPUs; it serves after an engine start.
 * - A stop unit drains and stops its instances.
 * A retired instance is gone once its engine has exited (the simulator's costs.instanceStopS after its drain; live,
 * the instance's 'stopped' status, sent once its engine process has exited). The simulator's engine is the host: it
 * starts, drains and reports the state of its instances. The live machine's own message latencies (a status, a node
 * command's reply: milliseconds) are not modelled.
 */
import { reshardSteps, unitSteps, type StaggerUnit } from '../policy/pool-shards.ts';
import type { InstanceConfig } from '../policy/types.ts';
import { TABLE_VI_TAU } from '../policy/sharding.ts';

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
    // policy unitSteps: the order the live pool machine runs them in
    const held = new Set(this.host.holding().flatMap((i) => this.host.gpusOf(i)));
    this.#todo = unitSteps(u, (g) => held.has(g)).map((k): Step => (k === 'start' ? { kind: 'start', tp: u.tp, gpus: [...u.gpus] } : { kind: 'retire', ids: [...u.from] }));
    return true;
  }
}

/** What the simulator's instances show the executor: their TP, state, and GPUs once placed. */
export interface PlacedInstance {
  id: string;
  tp: number;
  state: 'starting' | 'active' | 'draining' | 'stopping' | 'stopped';
  /** GPUs in the pool's GPU space (server k = k x gpusPerServer); set here when first placed. */
  gpus?: number[];
  /** requests queued and running on it (which of like instances a re-shard stops, and when: policy stopsByLoad). */
  outstanding?: number;
}

/**
 * The instances that hold GPUs, placed on the pool's GPU space: those placed before keep their GPUs, the others
 * are packed onto whole servers, largest TP first, each on the first aligned free GPUs (as the live pool places
 * its first instances).
 */
export function placeInstances<I extends PlacedInstance>(instances: readonly I[], gpusPerServer: number): I[] {
  const holding = instances.filter((i) => i.state !== 'stopped');
  const used = new Set(holding.flatMap((i) => i.gpus ?? []));
  for (const i of [...holding].filter((x) => !x.gpus).sort((a, b) => b.tp - a.tp)) {
    for (let g = 0; ; g += i.tp) {
      if (Math.floor(g / gpusPerServer) !== Math.floor((g + i.tp - 1) / gpusPerServer)) continue;
      const gs = Array.from({ length: i.tp }, (_, k) => g + k);
      if (gs.some((x) => used.has(x))) continue;
      i.gpus = gs;
      for (const x of gs) used.add(x);
      break;
    }
  }
  return holding;
}

/**
 * The executor of a re-shard of a pool's instances (`instances()`: the pool's list as it is now) to `target`:
 * the units of src/policy reshardSteps over the instances' placement; `ops` starts (not yet serving) and drains
 * the simulator's instances.
 */
export function unitsOf<I extends PlacedInstance>(
  instances: () => readonly I[], target: InstanceConfig[], gpusPerServer: number,
  ops: { start(tp: number, now: number): I; drain(inst: I, now: number): void },
  poolGpus?: number,
): UnitExecutor<I> {
  const current = placeInstances(instances(), gpusPerServer).filter((i) => i.state === 'active' || i.state === 'starting').map((i) => ({ id: i.id, tp: i.tp, gpus: i.gpus!, inFlight: i.outstanding ?? 0 }));
  // the pool's GPUs: the first poolGpus of its GPU space (whole servers first, as the cluster grants them)
  const granted = poolGpus === undefined ? undefined : Array.from({ length: poolGpus }, (_, g) => g);
  const units = reshardSteps(current, target, gpusPerServer, granted).flat();
  return new UnitExecutor(units, {
    start: (tp, gpus, now) => {
      const inst = ops.start(tp, now);
      inst.gpus = [...gpus];
      return inst;
    },
    drain: (i, now) => ops.drain(i, now),
    ready: (i) => i.state === 'active',
    gone: (i) => i.state === 'stopped' || !instances().includes(i),
    byId: (id) => instances().find((i) => i.id === id),
    gpusOf: (i) => i.gpus ?? [],
    idOf: (i) => i.id,
    holding: () => placeInstances(instances(), gpusPerServer),
  });
}

/** The row / column of Table VI (src/policy TABLE_VI_CONFIGS) of a pool's dominant per-server layout. */
function tableViIndex(mix: InstanceConfig[]): number {
  const n = (tp: number) => mix.find((c) => c.tp === tp)?.count ?? 0;
  if (n(8) > 0) return 5;
  if (n(4) >= 2) return 4;
  if (n(4) >= 1 && n(2) >= 1) return 3;
  if (n(4) === 1) return 2;
  if (n(2) >= 4) return 1;
  return 0;
}

/** The 'overlap' execution's cost of a re-shard, tau units: Table VI of the dominant per-server layouts (an approximation per pool). */
export function reshardTau(from: InstanceConfig[], to: InstanceConfig[]): number {
  return TABLE_VI_TAU[tableViIndex(from)]![tableViIndex(to)]!;
}

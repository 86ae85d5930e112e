/**
 * The energy of a leg whose instance died before it answered the leg's end report (docs/DATAPATH.md "Request
 * migration"): the instance attributes each leg its energy and answers it at the leg's end, so a dead one answers
 * nothing. The gateway reads every instance's energy counter (InstanceTelemetry, 1/s) on its own clock, summed per
 * instance process as the instance attributes it (src/policy ShareMeter, requestShareJ), marks that sum when a leg
 * starts and, when the leg's end report gets no answer, charges the leg the difference plus the estimated increment
 * of the reading the instance did not live to take (src/policy meteredLegJ). The figure is an estimate: it goes into
 * the client's usage as `energyEstimatedJ` (part of `energyJ`).
 *
 * Bounded: per instance, the meter of its current process and of the one before (a leg that started on that one);
 * `instances` instances at most (the one not heard of for longest goes first: a leg on it gets no estimate).
 */
import type { Bus } from '../../src/runtime/bus.ts';
import type { Clock } from '../../src/runtime/clock.ts';
import { subjects } from '../../protocols/subjects.ts';
import { InstanceTelemetry } from '../../protocols/messages.ts';
import { meterReading, meteredLegJ, newShareMeter, type ShareMeter } from '../../src/policy/energy.ts';

/** Instances whose meters are kept. */
export const INSTANCES_KEPT = 4096;

/** One instance process's meter; `process` counts the processes seen under the instance's id. */
interface ProcessMeter {
  process: number;
  meter: ShareMeter;
  source: 'measured' | 'modelled';
}

interface InstanceMeters {
  now: ProcessMeter;
  before?: ProcessMeter;
}

/** Where a leg started on its instance's meter. */
export interface LegMark {
  instance: string;
  process: number;
  shareJ: number;
  atMs: number;
}

/** An estimated leg energy: joules, and where the instance's readings came from (its GPU counter or the model). */
export interface LegEnergy {
  energyJ: number;
  energySource: 'measured' | 'modelled';
}

type Reading = Pick<InstanceTelemetry, 'id' | 'energyJ' | 'powerW' | 'running' | 'energySource'>;

export class InstanceEnergyMeters {
  readonly #byInstance = new Map<string, InstanceMeters>();
  #sub: { unsubscribe(): void } | undefined;

  /** With `bus`: reads every instance's telemetry from it (else from `add`). */
  constructor(
    private readonly clock: Clock,
    bus?: Pick<Bus, 'subscribe'>,
    private readonly instances = INSTANCES_KEPT,
  ) {
    if (bus) this.#sub = bus.subscribe(subjects.telInstanceAll(), InstanceTelemetry, (t) => this.add(t), { capacity: 4096, expectSubject: (t) => subjects.telInstance(t.id) });
  }

  stop(): void {
    this.#sub?.unsubscribe();
    this.#sub = undefined;
  }

  /** One telemetry message, at `atMs` on the gateway's clock (default: now). */
  add(t: Reading, atMs = this.clock.now()): void {
    const m = this.#meters(t.id, t.energySource);
    const last = m.now.meter.last;
    // a counter below the last reading: a new process under that id (its counter starts at 0), with legs of its own
    if (last && t.energyJ < last.energyJ) {
      m.before = m.now;
      m.now = { process: m.before.process + 1, meter: newShareMeter(), source: t.energySource };
    }
    m.now.source = t.energySource;
    meterReading(m.now.meter, { atMs, energyJ: t.energyJ, powerW: t.powerW, running: t.running });
  }

  /** A leg starts on `instance` now. */
  mark(instance: string): LegMark {
    const m = this.#byInstance.get(instance) ?? this.#meters(instance, 'modelled');
    return { instance, process: m.now.process, shareJ: m.now.meter.shareJ, atMs: this.clock.now() };
  }

  /** The energy of the leg `mark` started, which ended now, estimated; undefined: no reading of its instance process (or its meter is gone). */
  estimate(mark: LegMark): LegEnergy | undefined {
    const m = this.#byInstance.get(mark.instance);
    const p = m?.now.process === mark.process ? m.now : m?.before?.process === mark.process ? m.before : undefined;
    if (!p?.meter.last) return undefined;
    return { energyJ: meteredLegJ(p.meter, mark.shareJ, mark.atMs, this.clock.now()), energySource: p.source };
  }

  /** Instances with meters (the bound's test). */
  get size(): number {
    return this.#byInstance.size;
  }

  /** The meters of `id`, made the most recently heard of (a new one, past the bound, evicts the least recent). */
  #meters(id: string, source: 'measured' | 'modelled'): InstanceMeters {
    let m = this.#byInstance.get(id);
    if (m) this.#byInstance.delete(id);
    else {
      if (this.#byInstance.size >= this.instances) this.#byInstance.delete(this.#byInstance.keys().next().value!);
      m = { now: { process: 0, meter: newShareMeter(), source } };
    }
    this.#byInstance.set(id, m);
    return m;
  }
}

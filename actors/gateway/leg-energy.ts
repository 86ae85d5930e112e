/**
 * The energy of a leg whose instance died before it answered the leg's end report (docs/DATAPATH.md "Request
 * migration"): the instance attributes each leg its energy and answers it at the leg's end, so a dead one answers
 * nothing. The gateway reads every instance's energy counter (InstanceTelemetry, 1/s) on its own clock, summed per
 * instance process as the instance attributes it (src/policy ShareMeter, requestShareJ), marks that sum when a leg
 * starts and, when the leg's end report gets no answer, charges the leg the difference plus the estimated increment
 * of the reading the instance did not live to take (src/policy meteredLegJ). The figure is an estimate: it goes into
 * the client's usage as `energyEstimatedJ` (part of `energyJ`).
 *
 * A leg another gateway started (a resumed stream whose writer died, and whose instance died too) has no mark here:
 * each meter keeps its last HISTORY_READINGS sums with their times, and `markAt` finds the sum at the leg's start
 * (the journal's `leg.startedMs`), as `mark` would have read it then.
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

/**
 * Readings whose sums each meter keeps for `markAt` (~2 min at the instances' 1/s telemetry: a leg that started
 * before gets the sum of the oldest kept, a lower bound), 2 KiB per meter.
 */
export const HISTORY_READINGS = 128;

/** One instance process's meter; `process` counts the processes seen under the instance's id. */
interface ProcessMeter {
  process: number;
  meter: ShareMeter;
  source: 'measured' | 'modelled';
  /** the last HISTORY_READINGS readings' times and sums after them (a ring: [atMs, shareJ] pairs), `n` written so far. */
  history?: Float64Array;
  n: number;
}

/** `p`'s sum as `mark` would have read it at `atMs` (that of its last reading at or before it); undefined: none kept. */
function shareAt(p: ProcessMeter, atMs: number): { shareJ: number; covered: boolean } | undefined {
  const h = p.history;
  if (!h || p.n === 0) return undefined;
  const kept = Math.min(p.n, HISTORY_READINGS);
  // newest first: the first reading at or before atMs
  for (let k = 1; k <= kept; k++) {
    const i = ((p.n - k) % HISTORY_READINGS) * 2;
    if (h[i]! <= atMs) return { shareJ: h[i + 1]!, covered: true };
  }
  // the leg started before every reading kept: the oldest one's sum (the readings before it are not known here)
  const oldest = ((p.n - kept) % HISTORY_READINGS) * 2;
  return { shareJ: h[oldest + 1]!, covered: false };
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
      m.now = { process: m.before.process + 1, meter: newShareMeter(), source: t.energySource, n: 0 };
    }
    const p = m.now;
    p.source = t.energySource;
    meterReading(p.meter, { atMs, energyJ: t.energyJ, powerW: t.powerW, running: t.running });
    const h = (p.history ??= new Float64Array(2 * HISTORY_READINGS));
    const i = (p.n++ % HISTORY_READINGS) * 2;
    h[i] = atMs;
    h[i + 1] = p.meter.shareJ;
  }

  /** A leg starts on `instance` now. */
  mark(instance: string): LegMark {
    const m = this.#byInstance.get(instance) ?? this.#meters(instance, 'modelled');
    return { instance, process: m.now.process, shareJ: m.now.meter.shareJ, atMs: this.clock.now() };
  }

  /**
   * The mark of a leg that started on `instance` at `atMs` (another gateway's clock, ms since the epoch), read back
   * from the meters' history: the process whose readings cover that time (the newest one with a reading at or before
   * it; else the oldest process kept, from its oldest reading). Undefined: no reading of the instance kept.
   */
  markAt(instance: string, atMs: number): LegMark | undefined {
    const m = this.#byInstance.get(instance);
    if (!m) return undefined;
    const now = shareAt(m.now, atMs);
    const before = m.before && shareAt(m.before, atMs);
    const [p, at] = now?.covered || !before ? [m.now, now] : [m.before!, before];
    return at && { instance, process: p.process, shareJ: at.shareJ, atMs };
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
      m = { now: { process: 0, meter: newShareMeter(), source, n: 0 } };
    }
    this.#byInstance.set(id, m);
    return m;
  }
}

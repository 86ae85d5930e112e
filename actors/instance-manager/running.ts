/**
 * What the instance manager holds of each request (its body, and its record while it runs in the engine), and what
 * the parts that serve a request (engine-stream.ts, direct-legs.ts) reach of the manager: `LegHost`, which the
 * manager builds over its own fields (instance-manager.ts).
 */
import type { Logger } from 'pino';
import type { Grant as GrantT, LegReport as LegReportT, RequestRecord, RequestType, WireError } from '../../protocols/index.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import type { Clock } from '../../src/runtime/clock.ts';
import type { Engine } from '../../src/engine/engine.ts';
import type { GpuControl } from '../../src/gpu/index.ts';
import type { InstanceEffect, InstanceEvent } from '../../src/policy/machines/instance.ts';
import type { ClusterConfig } from '../common/config.ts';
import type { ClassifiedRequest } from '../../src/policy/slo.ts';
import type { GatewayWatch } from './gateway-watch.ts';

/** diagnosis: a file to append one line per request's TTFT breakdown to (arrival, admission, start, first token). */
export const TTFT_TRACE = process.env.DYNAMOLLM_TTFT_TRACE;

/**
 * A running request's abort: `abort(reason)` as an AbortController's, whose AbortController is made only when its
 * `signal` is read (a request the instance streams from the engine hands it to the engine call); a direct leg, which
 * reads no signal, is told of its abort through `onAbort` (one call, the first abort's reason).
 */
export class RunAbort {
  #ac?: AbortController;
  #reason: unknown;
  #aborted = false;
  /** called once, at the first abort, with its reason. */
  onAbort?: (reason: unknown) => void;

  get signal(): AbortSignal {
    if (!this.#ac) {
      this.#ac = new AbortController();
      if (this.#aborted) this.#ac.abort(this.#reason);
    }
    return this.#ac.signal;
  }
  get aborted(): boolean {
    return this.#aborted;
  }
  get reason(): unknown {
    return this.#reason;
  }
  abort(reason?: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason ?? new DOMException('This operation was aborted', 'AbortError');
    this.#ac?.abort(this.#reason);
    const f = this.onAbort;
    this.onAbort = undefined;
    f?.(this.#reason);
  }
}

/** A request running in the engine (or granted to a gateway that streams it), with its measures. */
export interface Running {
  req: ClassifiedRequest;
  ac: RunAbort;
  seq: number;
  startedMs: number;
  /** first token's arrival, ms since epoch on the injected clock (TTFT). */
  firstTokenMs?: number;
  /** last token's arrival (engine time when the engine says), performance.now() ms (TBT). */
  lastTokenMs?: number;
  tbtSum: number;
  tbtMax: number;
  tbtN: number;
  /** energy attributed from the GPU counter while it ran, J. */
  energyJ: number;
  /** a direct request (the gateway reads the engine): ends it with the gateway's report of the leg's end and the energy replied. */
  legEnd?: (end: { rep: LegReportT; energyJ: number; energySource: 'measured' | 'modelled' }) => void;
  /** a direct request: the gateway said it took the grant (LegReport 'started', or any later report). */
  gatewayStarted?: boolean;
  /** a direct request its gateway started on a credit: whose, of which epoch (a seat its end report keeps goes back to that loan). */
  credit?: { gateway: string; epoch: number };
  /** a direct request: stops watching its gateway process (gateway-watch.ts). */
  unwatchGateway?: () => void;
  /** a relayed request: the bytes of chunks its gateway lets it publish (relay-pause.ts; RELAY_WINDOW_BYTES until a grant). */
  creditBytes?: number;
  /** a relayed request: when its gateway's last grant came, ms. */
  creditHeardMs?: number;
  /** ends the wait of a relayed request for its credit (a grant came). */
  wake?: () => void;
}

export const newRunning = (req: ClassifiedRequest, now: number): Running => ({ req, ac: new RunAbort(), seq: 0, startedMs: now, tbtSum: 0, tbtMax: 0, tbtN: 0, energyJ: 0 });

/** A request the instance holds (queued, running or being moved): its body and when it came in. */
export interface Held {
  req: ClassifiedRequest;
  admittedMs: number;
}

/** The instance manager as the parts serving a request see it: its fields (the same objects) and its methods. */
export interface LegHost {
  readonly id: string;
  readonly pool: string;
  readonly bus: Bus;
  readonly log: Logger;
  readonly clock: Clock;
  readonly config: ClusterConfig;
  readonly engine: Engine;
  /** the engine's API key, handed to a gateway in a direct request's grant. */
  readonly engineApiKey: string | undefined;
  /** the requests running, the bodies held, by id. */
  readonly running: Map<string, Running>;
  readonly held: Map<string, Held>;
  /** the admissions in progress whose reply carries the grant, by id. */
  readonly replyGrants: Map<string, { grant?: GrantT }>;
  /** DYNAMOLLM_TTFT_TRACE: running and queued when each request was admitted. */
  readonly admitState: Map<string, [number, number]>;
  readonly gateways: GatewayWatch;
  /** one machine transition, its effects performed. */
  step(ev: InstanceEvent): { effects: InstanceEffect[] };
  clockMhz(): number;
  gpuKind(): GpuControl['kind'] | undefined;
  sampleTtft(ms: number): void;
  sampleTbt(ms: number): void;
  watchCancel(id: string): void;
  /** a request it held left the engine (`ok`: it completed): its records go, and the machine learns it. */
  ended(id: string, ok: boolean): void;
  /** the request's RequestRecord, and the instance's counters. */
  record(req: ClassifiedRequest, type: RequestType, outcome: RequestRecord['outcome'], r: Running | undefined, completionTokens: number, energyJ: number, energySource: 'measured' | 'modelled'): void;
  /** ends a request with an error chunk on its stream subject, and its record. */
  finishWithError(req: ClassifiedRequest, seq: number, error: WireError, outcome: 'rejected' | 'failed' | 'cancelled' | 'timed_out', r?: Running): void;
}

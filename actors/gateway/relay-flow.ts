/**
 * A relayed leg's flow control at the gateway (src/policy/relay-flow.ts, a credit window; docs/DATAPATH.md "A slow client
 * on the NATS data path"): counts the bytes of the leg's chunks that arrived and that its client took (handed to the HTTP
 * layer); each half window taken, grants the leg's instance a window past it (a LegReport `credit` on
 * subjects.instanceLeg, published at once). Once a window's worth has arrived, a leg silent for RELAY_GRANT_REPEAT_MS gets
 * its grant again (its instance may be waiting on a grant that was lost; it learns its gateway still holds the leg). A
 * hold past RELAY_HOLD_BYTES ends the leg (the queue fails it: retryable mailbox_full) and cancels it at its instance
 * (`onOverflow`). The instance is the one that sent the leg's chunks (TokenChunk.instance). Only a leg whose instance
 * paces it (its first chunk's TokenChunk.relayCredit, for a request that asked with InferenceRequest.relayCredit) gets
 * grants and the bound: an instance that does not pace sends no mark, gets no grants (it would refuse a `credit` report)
 * and its leg is bounded by the queue's chunks alone.
 */
import type { Bus } from '../../src/runtime/bus.ts';
import type { Clock } from '../../src/runtime/clock.ts';
import type { TokenChunk } from '../../protocols/messages.ts';
import { RELAY_GRANT_REPEAT_MS, RELAY_WINDOW_BYTES, relayGrant, relayOverflow } from '../../src/policy/relay-flow.ts';
import { flushLegReports, legReport } from './leg-reports.ts';
import type { QueueFlow } from './chunk-queue.ts';

/** The gateway's relay flow counters (AdmissionCounters' relayWaits, relayOverflows). */
export interface RelayFlowCounters { relayWaits: number; relayOverflows: number }

export class RelayFlow implements QueueFlow {
  private received = 0;
  private took = 0;
  private granted = RELAY_WINDOW_BYTES;
  private lastMs = 0;
  private closed = false;
  /** a window's worth arrived and the client's stream stopped taking it: counted once in relayWaits */
  private waited = false;
  private instance: string | undefined;
  private timer: unknown;
  /** the leg's instance paces it by the grants (its first chunk said so) */
  private paced = false;

  constructor(
    private readonly bus: Bus,
    /** the leg's id (its instance knows the request by it). */
    private readonly id: string,
    private readonly clock: Clock,
    private readonly counters: RelayFlowCounters,
    private readonly onOverflow: () => void,
  ) {}

  pushed(c: TokenChunk, bytes: number, held: number): 'overflow' | undefined {
    if (c.instance) this.instance = c.instance;
    if (c.relayCredit) this.paced = true;
    if (this.closed || !this.paced) return undefined;
    if (relayOverflow(held)) {
      this.counters.relayOverflows++;
      this.close();
      this.onOverflow();
      return 'overflow';
    }
    this.received += bytes;
    this.lastMs = this.clock.now();
    if (!this.waited && this.received >= this.granted) [this.waited, this.counters.relayWaits] = [true, this.counters.relayWaits + 1];
    if (this.timer === undefined && this.received >= RELAY_WINDOW_BYTES) this.timer = this.clock.setTimeout(this.repeat, RELAY_GRANT_REPEAT_MS);
    return undefined;
  }

  taken(bytes: number): void {
    this.took += bytes;
    const next = this.closed || !this.paced ? undefined : relayGrant(this.took, this.granted);
    if (next === undefined) return;
    this.granted = next;
    this.waited = false;
    this.grant();
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** the grant again where the leg was silent since the last look. */
  private readonly repeat = (): void => {
    if (this.closed) return;
    if (this.clock.now() - this.lastMs >= RELAY_GRANT_REPEAT_MS) this.grant();
    this.timer = this.clock.setTimeout(this.repeat, RELAY_GRANT_REPEAT_MS);
  };

  private grant(): void {
    if (!this.instance) return;
    try {
      legReport(this.bus, this.instance, { v: 1, id: this.id, phase: 'credit', creditBytes: this.granted });
      flushLegReports(this.bus); // not held: the instance may be waiting for it
    } catch {
      // connection gone: the grant is repeated while the leg is silent
    }
  }
}

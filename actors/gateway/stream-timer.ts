/** The gateway's client-facing latency metrics (TTFT, TBT per token) of one token stream. */
import { performance } from 'node:perf_hooks';
import type { SpanEnd } from '../../src/engine/native-span.ts';
import type { TokenChunk } from '../../protocols/messages.ts';
import type { TelemetryMetrics } from '../../src/telemetry/metrics.ts';

/**
 * Client-facing latency of one request at this replica: TTFT when its first token is relayed, then one TBT
 * observation per token gap (a coalesced chunk's tokens at the times its tokenOffsetsMs give).
 */
export class StreamTimer {
  private last: number | undefined;
  /** the histograms' children for the labels of the chunks now arriving (the same for a whole leg). */
  private ttft?: { observe(v: number): void };
  private tbt?: { observe(v: number): void };
  private type?: string;
  private pool?: string;
  constructor(
    private readonly metrics: TelemetryMetrics | undefined,
    private readonly model: string,
    private readonly t0: number,
  ) {}

  /** a span of the native data plane: one token per event, its first at `firstPerf`, then its gaps. */
  onSpan(e: Pick<SpanEnd, 'events' | 'firstPerf' | 'gaps'>): void {
    if (!this.tbt || e.events === 0 || this.last === undefined) return;
    this.tbt.observe(Math.max(0, e.firstPerf! - this.last) / 1000);
    let at = e.firstPerf!;
    for (const g of e.gaps) {
      this.tbt.observe(g / 1000);
      at += g;
    }
    this.last = Math.max(this.last, at);
  }

  onChunk(c: TokenChunk): void {
    const m = this.metrics;
    const k = c.tokens;
    if (!m || k <= 0) return;
    const now = performance.now();
    if (!this.tbt || c.type !== this.type || c.pool !== this.pool) {
      this.type = c.type;
      this.pool = c.pool;
      const labels = { model_name: this.model, type: c.type ?? '', pool: c.pool ?? '' };
      this.ttft = m.gatewayTtft.labels(labels);
      this.tbt = m.gatewayTbt.labels(labels);
    }
    const offs = c.tokenOffsetsMs && c.tokenOffsetsMs.length === k ? c.tokenOffsetsMs : undefined;
    for (let i = 0; i < k; i++) {
      const at = offs ? now - (offs[k - 1]! - offs[i]!) : now;
      if (this.last === undefined) this.ttft!.observe(Math.max(0, at - this.t0) / 1000);
      else this.tbt.observe(Math.max(0, at - this.last) / 1000);
      this.last = Math.max(at, this.last ?? at);
    }
  }
}

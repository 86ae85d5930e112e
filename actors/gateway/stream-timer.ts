/** The gateway's client-facing latency metrics (TTFT, TBT per token) of one token stream. */
import { performance } from 'node:perf_hooks';
import type { TokenChunk } from '../../protocols/messages.ts';
import type { TelemetryMetrics } from '../../src/telemetry/metrics.ts';

/**
 * Client-facing latency of one request at this replica: TTFT when its first token is relayed, then one TBT
 * observation per token gap (a coalesced chunk's tokens at the times its tokenOffsetsMs give).
 */
export class StreamTimer {
  private last: number | undefined;
  constructor(
    private readonly metrics: TelemetryMetrics | undefined,
    private readonly model: string,
    private readonly t0: number,
  ) {}

  onChunk(c: TokenChunk): void {
    const m = this.metrics;
    const k = c.tokens;
    if (!m || k <= 0) return;
    const now = performance.now();
    const labels = { model_name: this.model, type: c.type ?? '', pool: c.pool ?? '' };
    const offs = c.tokenOffsetsMs && c.tokenOffsetsMs.length === k ? c.tokenOffsetsMs : undefined;
    for (let i = 0; i < k; i++) {
      const at = offs ? now - (offs[k - 1]! - offs[i]!) : now;
      if (this.last === undefined) m.gatewayTtft.observe(labels, Math.max(0, at - this.t0) / 1000);
      else m.gatewayTbt.observe(labels, Math.max(0, at - this.last) / 1000);
      this.last = Math.max(at, this.last ?? at);
    }
  }
}

/**
 * A leg's side of the native data plane (actors/gateway/data-plane.ts): the offer a reader's sink carries, taken by
 * the first leg of a stream, and a span's events counted in the leg's state as the JavaScript path counts them
 * (legs.ts sentEvent and timeTokens): one token per event, its text kept for a continuation, the gaps between tokens.
 */
import type { NativeOffer, SpanEnd } from './data-plane.ts';
import type { BatchSink, LegTiming, MigrationText, StreamState } from './legs.ts';

/** The reader's offer for this leg, its accounting set to `leg`; undefined where there is none. */
export function nativeOf(sink: BatchSink | undefined, leg: (e: SpanEnd) => void): NativeOffer | undefined {
  const n = sink?.native;
  if (n) n.leg = leg;
  return n;
}

/** A span's events in the stream's state and the leg's timing. */
export function accountSpan(st: StreamState, t: LegTiming, e: SpanEnd, kept: MigrationText): void {
  if (e.events === 0) return;
  st.sent += e.events;
  st.out += e.events;
  kept.append(st, e.text);
  const gap = (d: number) => {
    t.tbtSum += d;
    t.tbtN++;
    if (d > t.tbtMax) t.tbtMax = d;
  };
  if (t.lastPerf !== undefined) gap(Math.max(0, e.firstPerf! - t.lastPerf));
  for (const g of e.gaps) gap(g);
  t.lastPerf = Math.max(t.lastPerf ?? 0, e.lastPerf!);
  t.tokens += e.events;
}

/**
 * What the engine client and the gateway's native data plane (actors/gateway/data-plane.ts) exchange about a span of a
 * stream the native thread carried: the engine's side of the hand-off, and what the span did.
 */

/** What a span did, as each layer accounts for it. */
export interface SpanEnd {
  why: 'other' | 'engine_end' | 'engine_error' | 'client' | 'removed';
  /** plain text events given to the client (one token each). */
  events: number;
  /** their text. */
  text: string;
  /** the last event's usage so far (continuous usage), unparsed. */
  usageJson?: string;
  /** the first and last event's times (performance.now()); undefined without events. */
  firstPerf?: number;
  lastPerf?: number;
  /** ms between consecutive events of the span (events - 1 of them). */
  gaps: Float32Array;
  /** engine bytes read and not consumed: the JavaScript pipeline reads them next. */
  rest: Buffer;
  /** client bytes framed and not written (a stream taken back mid-write): written by JavaScript first. */
  pending: Buffer;
}

/** The engine's side of a stream at a chunk boundary (src/engine/client.ts streamCompletionPush). */
export interface EngineSide {
  /** the engine's plain text event around its text's body: `prefix`, then `suffix` or (continuous usage) `mid` and the usage. */
  skeleton(): { prefix: string; suffix?: string; mid?: string } | undefined;
  /** the connection's fd with its reads stopped and no write pending, `reclaim` called before any close or failure of it; undefined when not at a boundary now. */
  detach(reclaim: () => void): number | undefined;
  /** the span's events counted (token index, idle deadline). */
  account(e: SpanEnd): void;
  /** JavaScript reads again: `rest` first (not when `cancelled`: the connection is being closed). */
  attach(rest: Buffer, cancelled: boolean): void;
  /** the span's activity for the idle deadline: its last event's time (performance.now()), while native holds it. */
  activity?: () => number | undefined;
}

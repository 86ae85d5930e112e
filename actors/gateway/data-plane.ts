/**
 * The gateway's native data plane (`gateway.dataPlane`; docs/DATAPATH.md "Native data plane"): native/relay.c, built
 * by `npm run build` into dist/native/relay.so and loaded through koffi, moves the plain text events of eligible
 * streams from the engine's connection to the client's on one native thread, so the gateway's JavaScript does no
 * read, parse or write per token of them.
 *
 * A span: JavaScript streams a request's first events itself (the status line, the headers, the chat role event, the
 * first token: its TTFT, its first-token report; the engine's plain text event learnt as a skeleton), then, at a chunk
 * boundary of the engine's response with nothing held for the client, hands both sockets to the native thread
 * (NativeOffer.ready, from the engine client after a batch). The native thread ends the span at the first event that is
 * not a plain text event of that skeleton (the finish, the usage, a tool call, an escape it does not pass as it is),
 * when either connection ends, or when JavaScript takes the stream back (a cancel: the engine call's abort or deadline,
 * the client's socket closed, a client that took nothing of what the thread framed for it for gateway.clientStallMs,
 * NativeOffer's stall watch); each layer then accounts for the span's events (the engine client's token index, the
 * leg's tokens, text and TBT, the client stream's tokens and TBT histogram), and the engine's bytes the thread read and
 * did not consume go through the JavaScript pipeline as if just read: the end (usage, energy, [DONE], the leg's
 * report) and a migration after an engine failure are the JavaScript path's.
 *
 * fd ownership: the native side works on dup'ed fds. JavaScript stops its reads of the engine's socket for the span (its
 * fd leaves Node's epoll set at the hand-off: the span's engine events wake the native thread alone); the client's
 * socket is read as on the JavaScript path (a client sends nothing while its response streams, and its close is seen
 * by both sides), so the span costs its epoll set no change. A close by JavaScript takes the stream back first (http1.ts
 * Exchange's `reclaim`, the client socket's 'close'), so no byte is written after JavaScript is done with a socket.
 */
import { existsSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import net from 'node:net';
import { TLSSocket } from 'node:tls';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { ConfigError } from '../common/config.ts';
import { DEFAULT_CLIENT_STALL_MS } from './client-flow.ts';
import { systemClock, type Clock } from '../../src/runtime/clock.ts';
import type { EngineSide, SpanEnd } from '../../src/engine/native-span.ts';

export type { EngineSide, SpanEnd } from '../../src/engine/native-span.ts';

export type DataPlaneMode = 'auto' | 'js' | 'native';

type Handle = { fd: number };
const handleOf = (s: net.Socket): Handle | undefined => (s as unknown as { _handle: Handle | null })._handle ?? undefined;
const WHY = ['', 'other', 'engine_end', 'engine_error', 'client', 'removed'] as const;

type Lib = {
  start(): number;
  add(c: number, e: number, ep: string, epn: number, es: string, esn: number, em: string, emn: number, cp: string, cpn: number, cs: string, csn: number, cm: string, cmn: number, prompt: number, count: number, unwatch: number): number;
  remove(h: number): number;
  info(h: number, out: Float64Array): number;
  copy(h: number, text: Buffer, rest: Buffer, pending: Buffer, usage: Buffer, gaps: Float32Array): number;
  now(): number;
  last(h: number): number;
  stalled(h: number): number;
  ended(out: Uint32Array, cap: number): number;
};

/** The library's places: DYN_DATAPLANE_LIB, else dist/native/relay.so from the source tree or from dist. */
function libraryPath(): string | undefined {
  if (process.env.DYN_DATAPLANE_LIB !== undefined) return process.env.DYN_DATAPLANE_LIB || undefined;
  const here = dirname(fileURLToPath(import.meta.url));
  return [resolve(here, '../../dist/native/relay.so'), resolve(here, '../../native/relay.so')].find((p) => existsSync(p));
}

/** the planes loaded in this process, by the library's absolute path (NativeDataPlane.load). */
const loaded = new Map<string, Promise<NativeDataPlane | { why: string }>>();

export class NativeDataPlane {
  private readonly ends = new Map<number, (e: SpanEnd) => void>();
  /** spans under way. */
  get active(): number {
    return this.ends.size;
  }
  private readonly info = new Float64Array(8);
  /** performance.now() less the library's clock (both CLOCK_MONOTONIC, Node's from its time origin). */
  private readonly offset: number;
  /** spans handed over, and the events they carried (the gateway's dynamollm_gateway_native_* metrics, tests, the bench). */
  spans = 0;
  carried = 0;

  private constructor(private readonly lib: Lib) {
    const fd = lib.start();
    if (fd < 0) throw new Error('dp_start failed');
    this.offset = performance.now() - lib.now();
    // a byte on the pipe: streams ended, their handles on the library's list
    const reader = new net.Socket({ fd, readable: true, writable: false });
    reader.unref();
    const got = new Uint32Array(256);
    reader.on('data', () => {
      for (let n = got.length; n === got.length; ) {
        n = lib.ended(got, got.length);
        for (let k = 0; k < n; k++) this.ended(got[k]!);
      }
    });
  }

  /**
   * The library loaded and its thread started; undefined when it is absent (`why` says so). One plane per library per
   * process (the library's thread and its handles are the process's): a later load of the same file, such as a
   * gateway started again in the same process, is given the same plane.
   */
  static load(path = libraryPath()): Promise<NativeDataPlane | { why: string }> {
    if (!path) return Promise.resolve({ why: 'dist/native/relay.so not built (npm run build needs a C compiler)' });
    const key = resolve(path);
    let p = loaded.get(key);
    if (!p) loaded.set(key, (p = NativeDataPlane.open(key)));
    return p;
  }

  private static async open(path: string): Promise<NativeDataPlane | { why: string }> {
    try {
      const { default: koffi } = await import('koffi');
      const l = koffi.load(path);
      const lib: Lib = {
        start: l.func('int dp_start(void)') as Lib['start'],
        add: l.func('int dp_add(int, int, const char *, int, const char *, int, const char *, int, const char *, int, const char *, int, const char *, int, double, double, int)') as Lib['add'],
        remove: l.func('int dp_remove(int)') as Lib['remove'],
        info: l.func('int dp_info(int, _Out_ double *)') as Lib['info'],
        copy: l.func('int dp_copy(int, _Out_ uint8_t *, _Out_ uint8_t *, _Out_ uint8_t *, _Out_ uint8_t *, _Out_ float *)') as Lib['copy'],
        now: l.func('double dp_now(void)') as Lib['now'],
        last: l.func('double dp_last(int)') as Lib['last'],
        stalled: l.func('double dp_stalled(int)') as Lib['stalled'],
        ended: l.func('int dp_ended(_Out_ uint32_t *, int)') as Lib['ended'],
      };
      return new NativeDataPlane(lib);
    } catch (err) {
      return { why: `${path}: ${(err as Error).message}` };
    }
  }

  /**
   * A stream handed over: its handle, or undefined when the library refused it. Strings are passed as UTF-8 with their
   * byte lengths. The engine's fd (its reads stopped, nothing written pending: EngineSide.detach) leaves Node's epoll
   * set here, so its events of the span wake the native thread alone.
   */
  add(clientFd: number, engineFd: number, skel: { prefix: string; suffix?: string; mid?: string }, frame: ClientFrame, onEnd: (e: SpanEnd) => void): number | undefined {
    const b = (s: string | undefined) => [s ?? '', Buffer.byteLength(s ?? '')] as const;
    const u = frame.usage;
    const h = this.lib.add(clientFd, engineFd, ...b(skel.prefix), ...b(skel.suffix), ...b(skel.mid), ...b(frame.prefix), ...b(frame.suffix), ...b(u?.mid), u?.promptTokens ?? 0, u?.count() ?? 0, 1);
    if (h < 0) return undefined;
    this.ends.set(h, onEnd);
    this.spans++;
    return h;
  }

  /** JavaScript takes the stream back: out of the native thread's hands when this returns; its span's end. */
  remove(h: number): SpanEnd | undefined {
    if (this.lib.remove(h) < 0) return undefined;
    this.ends.delete(h);
    return this.collect(h);
  }

  /** The span's engine activity (performance.now()): now while the client is backed up, else its last event or when the client caught up; undefined before either. */
  lastEvent(h: number): number | undefined {
    const t = this.lib.last(h);
    return t > 0 ? t + this.offset : undefined;
  }

  /** While bytes framed for the span's client wait: since when it took none of them (performance.now()); else undefined. */
  stalledSince(h: number): number | undefined {
    const t = this.lib.stalled(h);
    return t > 0 ? t + this.offset : undefined;
  }

  private ended(h: number): void {
    const onEnd = this.ends.get(h);
    if (!onEnd) return; // taken back by remove already
    this.ends.delete(h);
    const e = this.collect(h);
    if (e) onEnd(e);
  }

  private collect(h: number): SpanEnd | undefined {
    const i = this.info;
    if (this.lib.info(h, i) < 0) return undefined;
    const [why, events, textN, restN, pendingN, usageN, first, last] = i as unknown as number[];
    const text = Buffer.allocUnsafe(textN!), rest = Buffer.allocUnsafe(restN!), pending = Buffer.allocUnsafe(pendingN!), usage = Buffer.allocUnsafe(usageN!);
    const gaps = new Float32Array(Math.max(0, events! - 1));
    if (this.lib.copy(h, text, rest, pending, usage, gaps) < 0) return undefined;
    const e: SpanEnd = { why: WHY[why!] as SpanEnd['why'], events: events!, text: textN ? (JSON.parse(`"${text.toString('utf8')}"`) as string) : '', gaps, rest, pending };
    this.carried += events!;
    if (usageN) e.usageJson = usage.toString('utf8');
    if (events! > 0) [e.firstPerf, e.lastPerf] = [first! + this.offset, last! + this.offset];
    return e;
  }
}

/** `gateway.dataPlane` resolved at start: the native plane, or undefined for the JavaScript path (auto: one log line why). */
export async function loadDataPlane(mode: DataPlaneMode, log?: { info(o: object, msg: string): void }): Promise<NativeDataPlane | undefined> {
  if (mode === 'js') return undefined;
  const got = await NativeDataPlane.load();
  if (got instanceof NativeDataPlane) {
    log?.info({ dataPlane: 'native' }, 'native data plane loaded');
    return got;
  }
  if (mode === 'native') throw new ConfigError(`gateway.dataPlane is native but the library did not load: ${got.why}`);
  log?.info({ dataPlane: 'js', why: got.why }, 'native data plane not available: streams stay on the JavaScript path');
  return undefined;
}

/**
 * The client's plain text event around its text's JSON literal (sse-frames.ts textFrame); with continuous usage
 * (textUsageParts) `usage.mid` leads to the usage's total (prompt plus completion tokens), then `,"completion_tokens":` and
 * the count (`count()` at the hand-off plus one per event), then `suffix`.
 */
export interface ClientFrame {
  prefix: string;
  suffix: string;
  usage?: { mid: string; promptTokens: number; count(): number };
}

/** The client's side of a stream offered to the native plane (sse-stream.ts relaySse). */
export interface ClientSide {
  socket: net.Socket;
  /** the client's frame, made at the first hand-off (most short streams have none). */
  frame(): ClientFrame;
  /** nothing held for the client: no bytes in the SSE writer or the socket's buffer. */
  idle(): boolean;
  /** the span's events counted in the client's stream (tokens, TBT). */
  account(e: SpanEnd): void;
  /** a client that takes nothing of what a span framed for it for this long is disconnected, ms (gateway.clientStallMs). */
  stallMs: number;
  /** the stall watch's timers (the times it compares are the native thread's, performance.now()'s clock). */
  clock: Clock;
}

/** hand-off attempts per stream before it stays on JavaScript (a client whose writes keep backing up). */
const MAX_TRIES = 8;

/**
 * A stream's offer of its spans to the native plane: made by the HTTP layer for an eligible stream, passed down to
 * the leg (which adds its own accounting, `leg`) and to the engine client, which calls `ready` after a batch at a
 * chunk boundary. The hand-off runs after the turn's writes (setImmediate).
 */
export class NativeOffer {
  /** the leg's accounting of a span (nats-backend.ts directLeg); set while a leg may hand over. */
  leg: ((e: SpanEnd) => void) | undefined;
  private handle: number | undefined;
  private engine: EngineSide | undefined;
  private scheduled = false;
  private tries = 0;
  private done = false;
  /** the span's stall watch (check). */
  private watch: unknown;

  constructor(private readonly plane: NativeDataPlane, private readonly client: ClientSide) {}

  /** The engine side is at a boundary after a batch: a hand-off is tried once the turn's writes are out. */
  ready(engine: EngineSide): void {
    if (this.done || this.scheduled || this.handle !== undefined || this.leg === undefined || this.tries >= MAX_TRIES) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.start(engine);
    });
  }

  /** Nothing more is handed over (the stream's end), and a span under way is taken back. */
  close(): void {
    this.done = true;
    this.reclaim();
  }

  /**
   * The span's engine activity, while one is under way (the engine call's idle deadline): its last event, or now
   * while the client is backed up; undefined before either (the deadline keeps the last read before the hand-off).
   */
  activity(): number | undefined {
    return this.handle === undefined ? undefined : this.plane.lastEvent(this.handle);
  }

  private start(engine: EngineSide): void {
    if (this.done || this.handle !== undefined || this.leg === undefined) return;
    this.tries++;
    const s = this.client.socket;
    const ch = handleOf(s);
    const skel = engine.skeleton();
    if (!skel || !ch || ch.fd < 0 || s.destroyed || !this.client.idle()) return;
    const efd = engine.detach(() => this.reclaim(true));
    if (efd === undefined) return;
    const h = this.plane.add(ch.fd, efd, skel, this.client.frame(), (e) => this.end(e, false));
    if (h === undefined) {
      this.tries = MAX_TRIES;
      engine.attach(Buffer.alloc(0), false);
      return;
    }
    this.handle = h;
    this.engine = engine;
    s.once('close', this.onClientClose);
    this.arm(this.client.stallMs);
  }

  private readonly onClientClose = (): void => this.reclaim();

  private arm(ms: number): void {
    this.watch = this.client.clock.setTimeout(this.check, ms);
  }

  /**
   * The span's stall watch, ClientFlow's bound on the JavaScript path (client-flow.ts): a client that has taken none
   * of the bytes the native thread framed for it for stallMs (the engine's reads stopped meanwhile) is disconnected.
   * The stream is taken back first, then the client's socket is destroyed, nothing pending written to it; its 'close'
   * cancels the request as for a client that went away (the engine's request ended, the Cancel published).
   */
  private readonly check = (): void => {
    this.watch = undefined;
    const h = this.handle;
    if (h === undefined) return;
    const since = this.plane.stalledSince(h);
    const left = since === undefined ? this.client.stallMs : since + this.client.stallMs - performance.now();
    if (left > 0) return this.arm(left);
    const e = this.plane.remove(h);
    this.client.socket.destroy();
    if (e) this.end(e, false);
  };

  /** the span taken back by JavaScript (`cancelled`: its engine connection is being closed). */
  private reclaim(cancelled = false): void {
    const h = this.handle;
    if (h === undefined) return;
    const e = this.plane.remove(h);
    if (e) this.end(e, cancelled);
  }

  private end(e: SpanEnd, cancelled: boolean): void {
    const engine = this.engine!;
    this.handle = undefined;
    this.engine = undefined;
    if (this.watch !== undefined) this.client.clock.clearTimeout(this.watch);
    this.watch = undefined;
    this.client.socket.off('close', this.onClientClose);
    engine.account(e);
    this.leg?.(e);
    this.client.account(e);
    const s = this.client.socket;
    if (e.pending.length > 0 && !s.destroyed) s.write(e.pending);
    // JavaScript reads the engine again; a stream the native side left at an event it does not carry is not offered again
    this.done ||= e.why !== 'other';
    engine.attach(e.rest, cancelled);
  }
}

/** The offer of a stream whose client is `res` (relaySse), or undefined where its socket cannot be handed over (TLS, no chunked framing). */
export function nativeOffer(plane: NativeDataPlane, res: ServerResponse, w: { readonly idle: boolean }, frame: () => ClientFrame, account: (e: SpanEnd) => void, stallMs = DEFAULT_CLIENT_STALL_MS, clock: Clock = systemClock): NativeOffer | undefined {
  const socket = res.socket;
  if (!socket || socket instanceof TLSSocket) return undefined;
  return new NativeOffer(plane, {
    socket,
    frame,
    // the response chunked on its own socket (not a pipelined one waiting), nothing held for it
    idle: () => w.idle && res.writableLength === 0 && !res.writableEnded && (res as unknown as { chunkedEncoding?: boolean }).chunkedEncoding === true && res.socket === socket,
    account,
    stallMs,
    clock,
  });
}

/**
 * The native data plane's thread (native/relay.c through actors/gateway/data-plane.ts) under faults, on real sockets:
 * an engine reset while the client is backed up (no busy loop, the end reported once the client reads), many ends
 * JavaScript has not read yet (no call blocks), a failed dp_start (nothing left open, a later start works), a
 * client backed up past the idle bound (the span's activity is now), and a client that reads nothing (since when it
 * took nothing, for the stall watch). Blocking and fd-limit cases run in a child process.
 * The thread is named `dp-relay` (its CPU and context switches told apart from Node's threads in /proc, perf and top).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import koffi from 'koffi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NativeDataPlane, type SpanEnd } from '../../actors/gateway/data-plane.ts';

let dir = '';
let so = '';
let plane: NativeDataPlane;
const closers: (() => unknown)[] = [];
const libc = koffi.load('libc.so.6');
const setsockopt = libc.func('int setsockopt(int, int, int, const int *, int)') as (fd: number, level: number, opt: number, v: number[], n: number) => number;
const SOL_SOCKET = 1, SO_SNDBUF = 7;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dpf-'));
  so = join(dir, 'relay.so');
  execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', '-pthread', '-o', so, 'native/relay.c']);
  const p = await NativeDataPlane.load(so);
  if (!(p instanceof NativeDataPlane)) throw new Error(p.why);
  plane = p;
});
afterAll(async () => {
  for (const c of closers.splice(0)) await c();
  rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
type Handle = { fd: number; reading: boolean; readStop(): number; readStart(): number };
const handleOf = (s: Socket) => (s as unknown as { _handle: Handle })._handle;
const fdOf = (s: Socket) => handleOf(s).fd;
/** the socket's reads stopped in the kernel's terms (pause() alone reads on up to the high-water mark) */
const stopReads = (s: Socket) => {
  const h = handleOf(s);
  h.reading = false;
  h.readStop();
};
const startReads = (s: Socket) => {
  const h = handleOf(s);
  h.reading = true;
  h.readStart();
};

/** a connected TCP pair over loopback: [the dialled side, the accepted side] */
async function pair(): Promise<[Socket, Socket]> {
  const server: Server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const c = connect((server.address() as AddressInfo).port, '127.0.0.1');
  await new Promise((r) => c.once('connect', r));
  const a = await accepted;
  server.close();
  closers.push(() => c.destroy(), () => a.destroy());
  return [c, a];
}

const EV = (text: string) => `data: {"text":"${text}"}\n\n`;
const chunk = (d: string) => `${Buffer.byteLength(d).toString(16)}\r\n${d}\r\n`;

/**
 * A span: `client` reads what the gateway side of its pair is sent (paused: it reads nothing), `engine` writes the
 * engine's chunked events to the gateway side of its pair; the library moves them, reframed as `{"t":<text>}`.
 */
async function span() {
  const [client, gwClient] = await pair();
  const [gwEngine, engine] = await pair();
  for (const x of [client, gwClient, gwEngine]) stopReads(x);
  // a small send buffer toward the paused client (its receive window on top)
  expect(setsockopt(fdOf(gwClient), SOL_SOCKET, SO_SNDBUF, [16384], 4)).toBe(0);
  let end: SpanEnd | undefined;
  const h = plane.add(fdOf(gwClient), fdOf(gwEngine), { prefix: '{"text":"', suffix: '"}' }, { prefix: '{"t":', suffix: '}' }, (e) => (end = e));
  expect(h).toBeDefined();
  let got = '';
  client.on('data', (d: Buffer) => (got += d.toString('latin1')));
  return { client, engine, h: h!, ended: () => end, got: () => got };
}

/** the client's events, whole */
const count = (got: string) => got.match(/\{"t":"\d+"\}/g)?.length ?? 0;

/** `n` events of `size` bytes of text in one write, each its own chunk */
const burst = (n: number, size: number) => Array.from({ length: n }, (_, i) => chunk(EV(String(i % 10).repeat(size)))).join('');

describe("the native thread's faults", () => {
  it('its thread is named dp-relay: one thread of the process, told from the unnamed Node threads in /proc', () => {
    const names = readdirSync('/proc/self/task').map((t) => readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim());
    expect(names.filter((n) => n === 'dp-relay')).toHaveLength(1);
  });

  it('an engine reset while the client is backed up: no busy loop, the end reported once the client reads', async () => {
    const s = await span();
    s.engine.write(burst(400, 1000));
    // the library has framed more than the client's buffers take
    for (let i = 0; i < 200 && plane.lastEvent(s.h) === undefined; i++) await sleep(10);
    await sleep(200);
    s.engine.resetAndDestroy();
    await sleep(100);
    const cpu0 = process.cpuUsage(), t0 = performance.now();
    await sleep(1000);
    const cpu = process.cpuUsage(cpu0), wall = performance.now() - t0;
    // the process (the library's thread included) is near idle: a spinning thread uses all of the second
    expect((cpu.user + cpu.system) / 1000 / wall).toBeLessThan(0.3);
    expect(s.ended()).toBeUndefined();
    startReads(s.client);
    for (let i = 0; i < 300 && !s.ended(); i++) await sleep(10);
    const e = s.ended()!;
    expect(e.why).toBe('engine_error');
    expect(e.pending.length).toBe(0);
    expect(e.events).toBeGreaterThan(0);
    // the client gets every event the span carried, whole
    for (let i = 0; i < 300 && count(s.got()) < e.events; i++) await sleep(10);
    expect(count(s.got())).toBe(e.events);
  });

  it('a client backed up past the idle bound: the span is active now, and the client gets every event once it reads', async () => {
    const s = await span();
    s.engine.write(burst(400, 1000));
    await sleep(1200);
    // nothing moved for a second (the client reads nothing): the activity is now, not the last event's time
    const at = plane.lastEvent(s.h)!;
    expect(performance.now() - at).toBeLessThan(100);
    startReads(s.client);
    for (let i = 0; i < 300 && count(s.got()) < 400; i++) await sleep(10);
    expect(count(s.got())).toBe(400);
    // caught up: its activity is when it caught up (after the pause)
    expect(plane.lastEvent(s.h)!).toBeGreaterThan(at);
    s.engine.end();
    for (let i = 0; i < 300 && !s.ended(); i++) await sleep(10);
    expect(s.ended()).toMatchObject({ why: 'engine_end', events: 400 });
  });

  it("a client that reads nothing: the span says since when it took nothing (JavaScript's stall watch), and nothing once it caught up", async () => {
    const s = await span();
    expect(plane.stalledSince(s.h)).toBeUndefined();
    s.engine.write(burst(400, 1000));
    // the kernel's buffers toward the client fill (each send that takes some bytes moves the time), then nothing moves
    for (let i = 0; i < 300 && !(performance.now() - (plane.stalledSince(s.h) ?? Infinity) > 200); i++) await sleep(10);
    const since = plane.stalledSince(s.h)!;
    expect(performance.now() - since).toBeGreaterThan(200);
    await sleep(300);
    // the client took nothing meanwhile: the same time, however often the thread ran
    expect(plane.stalledSince(s.h)).toBe(since);
    expect(performance.now() - since).toBeGreaterThan(500);
    startReads(s.client);
    for (let i = 0; i < 300 && count(s.got()) < 400; i++) await sleep(10);
    expect(count(s.got())).toBe(400);
    expect(plane.stalledSince(s.h)).toBeUndefined();
    s.engine.end();
    for (let i = 0; i < 300 && !s.ended(); i++) await sleep(10);
    expect(s.ended()).toMatchObject({ why: 'engine_end', events: 400 });
  });
});

/** a child process running `body` (ESM, `koffi`, `lib` the library at `so`, `libc`) with a deadline: its stdout, or its failure */
function child(body: string, o: { nodeArgs?: string[]; lib?: boolean } = {}): { ok: boolean; out: string } {
  const src = `import koffi from 'koffi';
const SO = ${JSON.stringify(so)};
${o.lib === false ? '' : 'const lib = koffi.load(SO);'}
const libc = koffi.load('libc.so.6');
${body}`;
  const r = spawnSync(process.execPath, [...(o.nodeArgs ?? []), '--input-type=module', '-e', src], { cwd: process.cwd(), timeout: 20_000, encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}${r.signal ? ` (${r.signal})` : ''}` };
}

describe('the library in a process of its own', () => {
  it('thousands of ends JavaScript has not read: no call blocks, every end is reported', () => {
    const r = child(`
const start = lib.func('int dp_start(void)');
const add = lib.func('int dp_add(int, int, const char *, int, const char *, int, const char *, int, const char *, int, const char *, int, const char *, int, double, double, int)');
const socketpair = libc.func('int socketpair(int, int, int, _Out_ int *)');
const close = libc.func('int close(int)');
const fcntl = libc.func('int fcntl(int, int, int)');
const fd = start();
// the end-notice pipe as small as it gets (one page)
if (fd < 0 || fcntl(fd, 1031, 4096) < 0) process.exit(2);
const N = 3000;
for (let i = 0; i < N; i++) {
  const c = [0, 0], e = [0, 0];
  if (socketpair(1, 1, 0, c) || socketpair(1, 1, 0, e)) process.exit(3);
  // both peers gone: the thread ends the span at once
  close(c[1]), close(e[1]);
  if (add(c[0], e[0], '{"text":"', 9, '"}', 2, '', 0, '{"t":', 5, '}', 1, '', 0, 0, 0, 0) < 0) process.exit(4);
  close(c[0]), close(e[0]);
}
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
const ended = lib.func('int dp_ended(_Out_ uint32_t *, int)');
const got = new Uint32Array(1024);
let n = 0;
for (let k = got.length; k === got.length; n += k) k = ended(got, got.length);
console.log('ended', n);
`);
    expect(r.out).toContain('ended 3000');
    expect(r.ok).toBe(true);
  });

  it('the library stays mapped while its thread lives: its handles collected (koffi unloads it then), a later event is relayed', () => {
    const r = child(`
import { readFileSync } from 'node:fs';
const socketpair = libc.func('int socketpair(int, int, int, _Out_ int *)');
const write = libc.func('int write(int, const char *, int)');
const read = libc.func('int read(int, _Out_ uint8_t *, int)');
const mapped = () => readFileSync('/proc/self/maps', 'utf8').includes(SO);
const c = [0, 0], e = [0, 0];
// every handle of the library: once they are collected koffi closes it (dlclose)
let lib = koffi.load(SO);
let start = lib.func('int dp_start(void)');
let add = lib.func('int dp_add(int, int, const char *, int, const char *, int, const char *, int, const char *, int, const char *, int, const char *, int, double, double, int)');
if (start() < 0) process.exit(2);
if (socketpair(1, 1, 0, c) || socketpair(1, 1, 0, e)) process.exit(3);
if (add(c[0], e[0], '{"text":"', 9, '"}', 2, '', 0, '{"t":', 5, '}', 1, '', 0, 0, 0, 0) < 0) process.exit(4);
lib = start = add = undefined;
for (let i = 0; i < 5; i++) {
  globalThis.gc();
  await new Promise((r) => setTimeout(r, 20));
}
const out = ['mapped:' + mapped()];
// an engine event: the thread wakes and relays it to the client
const ev = 'data: {"text":"a"}\\n\\n';
const ch = Buffer.byteLength(ev).toString(16) + '\\r\\n' + ev + '\\r\\n';
write(e[1], ch, Buffer.byteLength(ch));
const got = Buffer.alloc(256);
let n = -1;
for (let i = 0; i < 100 && n <= 0; i++) {
  await new Promise((r) => setTimeout(r, 10));
  n = read(c[1], got, got.length);
}
out.push('relayed:' + (n > 0 && got.subarray(0, n).toString().includes('{"t":"a"}')));
console.log(out.join(' '));
`, { nodeArgs: ['--expose-gc'], lib: false });
    expect(r.out.trim()).toBe('mapped:true relayed:true');
    expect(r.ok).toBe(true);
  });

  it('a failed dp_start leaves nothing open and a later one starts', () => {
    const r = child(`
import { readdirSync } from 'node:fs';
const start = lib.func('int dp_start(void)');
const dup = libc.func('int dup(int)');
const close = libc.func('int close(int)');
const setrlimit = libc.func('int setrlimit(int, const uint64_t *)');
const fds = () => readdirSync('/proc/self/fd').join(',');
if (setrlimit(7, [256, 256]) !== 0) process.exit(2);
const out = [];
// room for 0 to 3 of its fds: the pipe, the epoll set and the eventfd fail in turn
for (let k = 0; k < 4; k++) {
  const before = fds();
  const held = [];
  for (let d = dup(0); d >= 0; d = dup(0)) held.push(d);
  for (let j = 0; j < k; j++) close(held.pop());
  const got = start();
  for (const d of held) close(d);
  out.push(k + ':' + got + ':' + (fds() === before ? 'same' : 'leaked'));
}
out.push('then:' + (start() >= 0 ? 'started' : 'failed'));
console.log(out.join(' '));
`);
    expect(r.out.trim()).toBe('0:-1:same 1:-1:same 2:-1:same 3:-1:same then:started');
  });
});

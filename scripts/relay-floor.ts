/**
 * What one relay hop costs per streamed token, with nothing of the gateway's in it: the emulator stepping in wall
 * time (the datapath bench's real-time engine) and the replay's requests (32 closed-loop clients, 2,000 token-id
 * prompts, 200 tokens, usage on every event), sent to the engine alone and through relay processes that pass each
 * connection's bytes on as they read them (one read from the engine and one write to the client per event, no HTTP
 * parse: the least any proxy of these streams does):
 *   node        a Node TCP proxy writing at once
 *   node-hold   the same holding its writes to the end of the event-loop turn, as the gateway's SSE writer does
 *   c-copy      scripts/relay-floor.c: one C thread, epoll, read and write through a user buffer
 *   c-splice    the same moving the bytes with splice(2) through a pipe
 *   handoff     a Node process that reads each request (headers and body), writes it to the engine and hands both
 *               sockets' fds to a native thread through koffi (scripts/body-relay.c), which relays the response to
 *               its end and reports the last usage event; JavaScript takes the connection back for its next request.
 *               The design a gateway with a native data plane would have: what that process pays per token.
 * Prints each relay's CPU per streamed token (utime + stime of all its threads from /proc, raw and less its idle rate,
 * read over the other targets' blocks; for handoff also its JavaScript thread's share) and the engine's, in blocks
 * alternating over the targets (in order, then reversed, twice). The C sources are built with gcc into a temporary directory at each run. docs/DATAPATH.md
 * ("Relay floor") compares them with the gateway's figure.
 *   npx tsx scripts/relay-floor.ts [blockSeconds]          (needs the built CLI: npm run build; gcc)
 */
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MODEL = 'llama3.1-8b';
const CLIENTS = 32;
const PROMPT = Array.from({ length: 2000 }, (_, i) => 100 + i);
const LEN = 200;
const SECS = Number(process.argv[2] ?? 12);

/** a socket's libuv handle: its fd, and its reads stopped and started without the stream's knowledge */
type Handle = { fd: number; reading: boolean; readStop(): number; readStart(): number };
const handleOf = (s: net.Socket) => (s as unknown as { _handle: Handle })._handle;
const reads = (s: net.Socket, on: boolean) => {
  const h = handleOf(s);
  if (h.reading === on) return;
  h.reading = on;
  if (on) h.readStart();
  else h.readStop();
};

if (process.argv[2] === 'relay') {
  // the relay: a TCP proxy, each client connection paired with its own engine connection, bytes passed on as read
  // (no HTTP parse: the least any relay of these streams does per event, one read and one write)
  const enginePort = Number(process.argv[3]);
  // RELAY_HOLD=1 (the second relay): the engine's bytes are written at the end of the event-loop turn (one
  // setImmediate for every connection holding bytes), as the gateway's SSE writer does, instead of at once
  const HOLD = process.env.RELAY_HOLD === '1';
  let held: [net.Socket, Buffer][] = [];
  const writeHeld = () => {
    const h = held;
    held = [];
    for (const [c, d] of h) c.write(d);
  };
  const hold = (c: net.Socket, d: Buffer) => {
    if (held.push([c, d]) === 1) setImmediate(writeHeld);
  };
  const server = net.createServer((client) => {
    client.setNoDelay(true);
    const engine = net.connect({ port: enginePort, host: '127.0.0.1', noDelay: true });
    client.on('data', (d: Buffer) => engine.write(d));
    engine.on('data', HOLD ? (d: Buffer) => hold(client, d) : (d: Buffer) => client.write(d));
    client.on('end', () => engine.end());
    engine.on('end', () => client.end());
    client.on('error', () => engine.destroy());
    engine.on('error', () => client.destroy());
    client.on('close', () => engine.destroy());
    engine.on('close', () => client.destroy());
  });
  server.listen(0, '127.0.0.1', () => process.send!((server.address() as net.AddressInfo).port));
} else if (process.argv[2] === 'handoff') {
  // the hand-off relay: JavaScript reads each request and writes it to the engine; scripts/body-relay.c's thread
  // moves the response; its end comes back as a line naming the stream, the engine's status and the last usage
  const enginePort = Number(process.argv[3]);
  const { default: koffi } = await import('koffi');
  const lib = koffi.load(process.argv[4]!);
  const start = lib.func('int body_relay_start(void)') as () => number;
  const add = lib.func('int body_relay_add(int id, int client_fd, int engine_fd)') as (id: number, c: number, e: number) => number;
  const doneFd = start();
  if (doneFd < 0) throw new Error('body_relay_start failed');
  type Conn = { client: net.Socket; engine: net.Socket | null; req: Buffer };
  const streams = new Map<number, Conn>();
  let nextId = 0, usageTokens = 0;
  let rest = '';
  new net.Socket({ fd: doneFd, readable: true, writable: false }).on('data', (d: Buffer) => {
    const lines = (rest + d.toString()).split('\n');
    rest = lines.pop()!;
    for (const l of lines) {
      const [id, status, , ...usage] = l.split(' ');
      const c = streams.get(Number(id))!;
      streams.delete(Number(id));
      // the accounting at the stream's end: the engine's last usage event
      if (usage.length) usageTokens += (JSON.parse(usage.join(' ')) as { usage: { completion_tokens: number } }).usage.completion_tokens;
      if (Number(status) < 0) {
        // -1: the engine's connection failed; -2: the client's (a gateway would cancel the request here)
        c.client.destroy();
        c.engine?.destroy();
        continue;
      }
      reads(c.client, true);
      reads(c.engine!, true);
      take(c);
    }
  });
  const engineFor = (c: Conn) => {
    const e = net.connect({ port: enginePort, host: '127.0.0.1', noDelay: true });
    // between requests the engine sends nothing: bytes or its end make the connection unusable
    e.on('data', () => e.destroy());
    e.on('error', () => {});
    e.on('close', () => {
      if (c.engine === e) c.engine = null;
    });
    return (c.engine = e);
  };
  /** a whole request in c.req (headers and a content-length body): to the engine, and its response handed over */
  const take = (c: Conn) => {
    const h = c.req.indexOf('\r\n\r\n');
    if (h < 0) return;
    const len = h + 4 + Number(/\r\ncontent-length: *(\d+)/i.exec(c.req.subarray(0, h).toString('latin1'))?.[1] ?? 0);
    if (c.req.length < len) return;
    const req = c.req.subarray(0, len);
    c.req = c.req.subarray(len);
    const go = (e: net.Socket) => {
      e.write(req);
      reads(c.client, false);
      reads(e, false);
      const id = nextId++ & 0x7fffffff;
      streams.set(id, c);
      if (add(id, handleOf(c.client).fd, handleOf(e).fd) < 0) throw new Error('body_relay_add failed');
    };
    const e = c.engine ?? engineFor(c);
    // a new connection: after its 'connect' Node starts reading it, stopped in go() on the next tick
    if (e.connecting) e.once('connect', () => process.nextTick(go, e));
    else go(e);
  };
  const server = net.createServer((client) => {
    client.setNoDelay(true);
    const c: Conn = { client, engine: null, req: Buffer.alloc(0) };
    client.on('data', (d: Buffer) => {
      c.req = c.req.length ? Buffer.concat([c.req, d]) : d;
      take(c);
    });
    client.on('error', () => {});
    client.on('close', () => c.engine?.destroy());
  });
  process.on('message', () => process.send!(usageTokens));
  server.listen(0, '127.0.0.1', () => process.send!((server.address() as net.AddressInfo).port));
} else {
  const cpuMs = (pid: number, tid?: number): number => {
    const f = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  };
  const freePort = () => new Promise<number>((ok) => {
    const s = net.createServer();
    s.listen(0, () => {
      const a = s.address() as net.AddressInfo;
      s.close(() => ok(a.port));
    });
  });
  const procs: ChildProcess[] = [];
  const build = mkdtempSync(join(tmpdir(), 'relay-floor-'));
  try {
    const cc = (...args: string[]) => execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', ...args], { stdio: 'inherit' });
    cc('-o', join(build, 'relay-floor'), join(REPO, 'scripts', 'relay-floor.c'));
    cc('-shared', '-fPIC', '-pthread', '-o', join(build, 'body-relay.so'), join(REPO, 'scripts', 'body-relay.c'));
    const enginePort = await freePort();
    let out = '';
    const emu = spawn(process.execPath, [join(REPO, 'bin', 'dynamollm.js'), 'engine-emulator', '--model', MODEL, '--tp', '1', '--port', String(enginePort), '--served-model-name', MODEL], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(emu);
    emu.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    for (const t0 = Date.now(); !out.includes('"listening"'); await new Promise((r) => setTimeout(r, 100))) if (Date.now() - t0 > 30_000) throw new Error(`the emulator did not start: ${out}`);
    const forked = async (args: string[], env: Record<string, string> = {}) => {
      const p = fork(fileURLToPath(import.meta.url), args, { execArgv: ['--import', 'tsx'], env: { ...process.env, ...env } });
      procs.push(p);
      return { p, pid: p.pid!, port: await new Promise<number>((r) => p.once('message', (m) => r(Number(m)))) };
    };
    const native = async (mode: string) => {
      const p = spawn(join(build, 'relay-floor'), [String(enginePort), mode], { stdio: ['ignore', 'pipe', 'inherit'] });
      procs.push(p);
      return { p, pid: p.pid!, port: await new Promise<number>((r) => p.stdout!.once('data', (d: Buffer) => r(Number(d.toString().trim())))) };
    };
    const relays = {
      node: await forked(['relay', String(enginePort)], { RELAY_HOLD: '0' }),
      'node-hold': await forked(['relay', String(enginePort)], { RELAY_HOLD: '1' }),
      'c-copy': await native('copy'),
      'c-splice': await native('splice'),
      handoff: await forked(['handoff', String(enginePort), join(build, 'body-relay.so')]),
    };
    type Target = 'direct' | keyof typeof relays;
    const names = Object.keys(relays) as (keyof typeof relays)[];
    const one = async (port: number): Promise<number> => {
      const r = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, prompt: PROMPT, max_tokens: LEN, min_tokens: LEN, ignore_eos: true, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } }),
      });
      const t = await r.text();
      if (!t.includes('[DONE]')) throw new Error(`HTTP ${r.status}: ${t.slice(-300)}`);
      return LEN;
    };
    let handoffTokens = 0;
    const loop = async (t: Target, s: number) => {
      const port = t === 'direct' ? enginePort : relays[t].port;
      let tokens = 0;
      const until = performance.now() + s * 1000;
      await Promise.all(Array.from({ length: CLIENTS }, async () => {
        while (performance.now() < until) {
          const n = await one(port);
          tokens += n;
        }
      }));
      if (t === 'handoff') handoffTokens += tokens;
      return tokens;
    };
    for (const k of names) await loop(k, 6); // warm-up
    // each relay's idle rate: its CPU over the blocks of the other targets (their keep-alive connections open, no
    // streams), per second of those blocks
    const idleCpu = Object.fromEntries(names.map((k) => [k, [0, 0]])) as Record<Target, [number, number]>;
    const targets: Target[] = ['direct', ...names];
    /** per target: relay CPU ms, tokens, seconds, JavaScript thread CPU ms */
    const sums = Object.fromEntries(targets.map((k) => [k, [0, 0, 0, 0]])) as Record<Target, [number, number, number, number]>;
    const order = [...targets, ...[...targets].reverse()];
    for (const k of [...order, ...order]) {
      const pid = k === 'direct' ? emu.pid! : relays[k].pid;
      const c0 = names.map((n) => cpuMs(relays[n].pid)), j0 = cpuMs(pid, pid), e0 = cpuMs(emu.pid!), t0 = performance.now();
      const tokens = await loop(k, SECS);
      const wall = (performance.now() - t0) / 1000;
      const c1 = names.map((n) => cpuMs(relays[n].pid));
      names.forEach((n, i) => {
        if (n === k) return;
        idleCpu[n][0] += c1[i]! - c0[i]!;
        idleCpu[n][1] += wall;
      });
      const engineMs = cpuMs(emu.pid!) - e0;
      const relayMs = k === 'direct' ? engineMs : c1[names.indexOf(k)]! - c0[names.indexOf(k)]!;
      const jsMs = k === 'handoff' ? cpuMs(pid, pid) - j0 : 0;
      const us = (ms: number) => +((ms * 1000) / tokens).toFixed(1);
      console.log(JSON.stringify({ target: k, tokens, tokensPerS: +(tokens / wall).toFixed(1), relayRawUsPerToken: k === 'direct' ? undefined : us(relayMs), jsThreadUsPerToken: k === 'handoff' ? us(jsMs) : undefined, engineUsPerToken: us(engineMs) }));
      const m = sums[k];
      m[0] += relayMs;
      m[1] += tokens;
      m[2] += wall;
      m[3] += jsMs;
    }
    const usageTokens = await new Promise<number>((r) => {
      relays.handoff.p.once('message', (m) => r(Number(m)));
      relays.handoff.p.send('usage');
    });
    const idle = (k: keyof typeof relays) => idleCpu[k][0] / idleCpu[k][1];
    const perToken = (k: Target, ms: number) => +((ms * 1000) / sums[k][1]).toFixed(1);
    console.log(JSON.stringify({
      engineAloneUsPerToken: perToken('direct', sums.direct[0]),
      relayRawUsPerToken: Object.fromEntries(names.map((k) => [k, perToken(k, sums[k][0])])),
      idleMsPerS: Object.fromEntries(names.map((k) => [k, +idle(k).toFixed(2)])),
      relayUsPerToken: Object.fromEntries(names.map((k) => [k, perToken(k, sums[k][0] - idle(k) * sums[k][2])])),
      handoffJsThreadUsPerToken: perToken('handoff', sums.handoff[3]),
      // the hand-off relay's accounting: the completion tokens of the usage events it read, against those streamed
      handoffUsageTokens: usageTokens, handoffTokensStreamed: handoffTokens,
    }));
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    rmSync(build, { recursive: true, force: true });
  }
}

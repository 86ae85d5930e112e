/**
 * What one Node relay hop costs per streamed token, with nothing of the gateway's in it: the emulator stepping in
 * wall time (the datapath bench's real-time engine) and the replay's requests (32 closed-loop clients, 2,000 token-id
 * prompts, 200 tokens, usage on every event), sent to the engine alone and through a relay process, a TCP proxy that
 * passes each connection's bytes on as it reads them (one read from the engine and one write to the client per
 * event, no HTTP parse: the least any proxy of these streams does). Prints the
 * relay's CPU per streamed token (utime + stime from /proc, less its idle CPU) and the engine's, in alternating blocks
 * (the engine alone, through the relay, through a second relay that holds its writes to the end of the event-loop
 * turn as the gateway's SSE writer does). docs/DATAPATH.md compares them with the gateway's figure.
 *   npx tsx scripts/relay-floor.ts [blockSeconds]          (needs the built CLI: npm run build)
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MODEL = 'llama3.1-8b';
const CLIENTS = 32;
const PROMPT = Array.from({ length: 2000 }, (_, i) => 100 + i);
const LEN = 200;
const SECS = Number(process.argv[2] ?? 12);

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
} else {
  const cpuMs = (pid: number): number => {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
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
  try {
    const enginePort = await freePort();
    let out = '';
    const emu = spawn(process.execPath, [join(REPO, 'bin', 'dynamollm.js'), 'engine-emulator', '--model', MODEL, '--tp', '1', '--port', String(enginePort), '--served-model-name', MODEL], { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(emu);
    emu.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    for (const t0 = Date.now(); !out.includes('"listening"'); await new Promise((r) => setTimeout(r, 100))) if (Date.now() - t0 > 30_000) throw new Error(`the emulator did not start: ${out}`);
    // two relays: writing at once, and holding the writes to the end of the turn (RELAY_HOLD)
    const relays = await Promise.all([false, true].map(async (hold) => {
      const p = fork(fileURLToPath(import.meta.url), ['relay', String(enginePort)], { execArgv: ['--import', 'tsx'], env: { ...process.env, RELAY_HOLD: hold ? '1' : '0' } });
      procs.push(p);
      return { pid: p.pid!, port: await new Promise<number>((r) => p.once('message', (m) => r(Number(m)))) };
    }));
    const one = async (port: number): Promise<number> => {
      const r = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, prompt: PROMPT, max_tokens: LEN, min_tokens: LEN, ignore_eos: true, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } }),
      });
      const t = await r.text();
      if (!t.includes('[DONE]')) throw new Error(`HTTP ${r.status}: ${t.slice(-300)}`);
      return LEN;
    };
    const loop = async (port: number, s: number) => {
      let tokens = 0;
      const until = performance.now() + s * 1000;
      await Promise.all(Array.from({ length: CLIENTS }, async () => {
        while (performance.now() < until) {
          const n = await one(port);
          tokens += n;
        }
      }));
      return tokens;
    };
    for (const r of relays) await loop(r.port, 6); // warm-up
    const i0 = relays.map((r) => cpuMs(r.pid)), it0 = performance.now();
    await new Promise((r) => setTimeout(r, 3000));
    const idle = relays.map((r, k) => (cpuMs(r.pid) - i0[k]!) / ((performance.now() - it0) / 1000));
    const sums = { direct: [0, 0], relay: [0, 0], 'relay-hold': [0, 0] } as Record<string, [number, number]>;
    const blocks = [['direct', -1], ['relay', 0], ['relay-hold', 1], ['direct', -1], ['relay-hold', 1], ['relay', 0]] as const;
    for (const [k, ri] of [...blocks, ...blocks]) {
      const r = relays[ri], pid = r?.pid ?? relays[0]!.pid;
      const r0 = cpuMs(pid), e0 = cpuMs(emu.pid!), t0 = performance.now();
      const tokens = await loop(r?.port ?? enginePort, SECS);
      const wall = (performance.now() - t0) / 1000;
      const relayUs = r ? ((cpuMs(pid) - r0 - idle[ri]! * wall) * 1000) / tokens : NaN, engineUs = ((cpuMs(emu.pid!) - e0) * 1000) / tokens;
      console.log(JSON.stringify({ target: k, tokens, tokensPerS: +(tokens / wall).toFixed(1), relayUsPerToken: r ? +relayUs.toFixed(1) : undefined, engineUsPerToken: +engineUs.toFixed(1) }));
      sums[k]![0] += r ? relayUs * tokens : engineUs * tokens;
      sums[k]![1] += tokens;
    }
    const mean = (k: string) => +(sums[k]![0] / sums[k]![1]).toFixed(1);
    console.log(JSON.stringify({ idleMsPerS: idle.map((x) => +x.toFixed(1)), relayUsPerToken: mean('relay'), relayHoldUsPerToken: mean('relay-hold'), engineAloneUsPerToken: mean('direct') }));
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  }
}

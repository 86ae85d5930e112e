/**
 * The closed-loop load generator's CPU per request with each client of test/bench/closed-loop-client.ts (`fetch`,
 * `http`, `http1`): 16 clients in this one thread against the zero-delay emulator alone, 4-token requests, three
 * alternating rounds of 4 s after one of warm-up each; this process's CPU (process.cpuUsage) and the emulator's
 * (/proc) per request. `node --import tsx test/bench/closed-loop-clients.ts` (needs dist/ from `npm run build`).
 */
import { spawn } from 'node:child_process';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLIENT_KINDS, completionBody, requester, type ClientKind } from './closed-loop-client.ts';
import { freePort } from '../helpers/net.ts';
import { cpuMs } from './datapath-cpu.ts';

const BIN = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'bin', 'dynamollm.js');
const MODEL = 'llama3.1-8b';
const port = await freePort();
const emu = spawn(process.execPath, [BIN, 'engine-emulator', '--model', MODEL, '--tp', '1', '--port', String(port), '--zero-delay', '--served-model-name', MODEL], { stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
emu.stdout!.on('data', (d: Buffer) => (out += d.toString()));
while (!out.includes('"listening"')) await new Promise((r) => setTimeout(r, 200));
const body = completionBody(MODEL, 4);

async function round(kind: ClientKind, seconds: number): Promise<{ kind: ClientKind; rps: number; clientUs: number; engineUs: number }> {
  const send = requester(kind, `http://127.0.0.1:${port}`, body);
  const c0 = process.cpuUsage(), e0 = cpuMs(emu.pid!), t0 = performance.now();
  let n = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (performance.now() - t0 < seconds * 1000) if (await send()) n++;
  }));
  const c = process.cpuUsage(c0), wall = (performance.now() - t0) / 1000;
  send.close();
  return { kind, rps: n / wall, clientUs: (c.user + c.system) / n, engineUs: ((cpuMs(emu.pid!) - e0) * 1000) / n };
}

try {
  for (let i = 0; i < 3; i++) {
    for (const k of CLIENT_KINDS) {
      await round(k, 1);
      const r = await round(k, 4);
      process.stdout.write(`${r.kind}: ${r.rps.toFixed(0)} req/s, client ${r.clientUs.toFixed(1)} us CPU per request, the emulator ${r.engineUs.toFixed(1)} us\n`);
    }
  }
} finally {
  emu.kill('SIGTERM');
}

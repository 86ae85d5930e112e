/**
 * Time from a gateway process's spawn to its first `GET /healthz` 200, against 3 clustered nats-servers
 * (test/helpers/nats.ts) of which one is SIGKILLed (`dead`: refuses connections), SIGSTOPped (`frozen`:
 * accepts, never greets) or left alone (`alive`). Runs the built CLI (`npm run build`) at nice 10, as the
 * chaos runs do; prints each start's time and the CPU the process used until then.
 * `takeover`: a replica run as `dynamollm up` runs it (two processes with `standby=true` on one port, the NATS
 * servers all alive): SIGKILL the process serving the port, time the kill to the port's next `/healthz` 200 (the
 * standby taking it over), start the killed one again as the new standby (as up's supervisor does), and once it
 * waits for the port, kill the serving one again.
 *   npx tsx scripts/gateway-start-time.ts [dead|frozen|alive|takeover] [starts]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { creds, REPO_ROOT, startNatsCluster } from '../test/helpers/nats.ts';
import { listensOn } from '../src/cli/commands/chaos.ts';

const mode = process.argv[2] ?? 'dead';
const starts = Number(process.argv[3] ?? 4);
if (!['dead', 'frozen', 'alive', 'takeover'].includes(mode) || !(starts >= 1)) throw new Error('usage: gateway-start-time.ts [dead|frozen|alive|takeover] [starts]');
const cluster = await startNatsCluster(3);
const victim = cluster.servers[0]!;
if (mode === 'dead') await victim.stop();
if (mode === 'frozen') process.kill(victim.pid, 'SIGSTOP');
const { user, pass } = creds('gateway');

function gateway(port: number, standby: boolean): ChildProcess & { log: () => string } {
  const p = spawn('nice', ['-n', '10', process.execPath, 'bin/dynamollm.js', 'actor', 'gateway', '--id', 'gw-0', '--config', 'deploy/chaos.yaml',
    '--nats', cluster.urls.join(','), '--user', user, '--password', pass, '--set', `port=${port}`, ...(standby ? ['--set', 'standby=true'] : [])],
  { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'info', DYNAMOLLM_LOG_PRETTY: '0' } });
  let out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  return Object.assign(p, { log: () => out });
}

const healthy = (port: number) => fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(500) }).then((r) => r.ok, () => false);

/** ms until `port` answers /healthz 200 (polled every 50 ms), or null after 60 s. */
async function servedAfter(port: number, t0: number, alive: () => boolean): Promise<number | null> {
  while (Date.now() - t0 < 60_000 && alive()) {
    if (await healthy(port)) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
  }
  return null;
}

function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10; // utime + stime, in 10-ms ticks
}

const kill = async (p: ChildProcess) => {
  if (p.exitCode !== null || p.signalCode !== null) return;
  p.kill('SIGKILL');
  await new Promise((r) => p.once('exit', r));
};

try {
  if (mode === 'takeover') {
    const port = 18900;
    const procs = [gateway(port, true), gateway(port, true)];
    if ((await servedAfter(port, Date.now(), () => true)) === null) throw new Error('the replica never served');
    for (let i = 0; i < starts; i++) {
      const serving = procs.find((p) => listensOn(p.pid!, port));
      if (!serving) throw new Error('no process holds the port');
      // the standby must be waiting (started, connected) before the serving one dies, as in a replica under up
      const standby = procs.find((p) => p !== serving)!;
      const waitEnd = Date.now() + 120_000;
      while (!/standby: port \d+ is served by another process/.test(standby.log()) && Date.now() < waitEnd) await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      await kill(serving);
      const servedMs = await servedAfter(port, t0, () => true);
      console.log(`takeover ${i}: /healthz 200 ${servedMs ?? 'never (60 s)'} ms after the serving process's SIGKILL`);
      procs[procs.indexOf(serving)] = gateway(port, true);
    }
    for (const p of procs) await kill(p);
  } else {
    for (let i = 0; i < starts; i++) {
      const port = 18900 + i;
      const t0 = Date.now();
      const p = gateway(port, false);
      const servedMs = await servedAfter(port, t0, () => p.exitCode === null);
      console.log(`${mode}: start ${i}: /healthz 200 after ${servedMs ?? 'never (60 s)'} ms, ${cpuMsOf(p.pid!)} ms of CPU`);
      await kill(p);
    }
  }
} finally {
  if (mode === 'frozen') process.kill(victim.pid, 'SIGCONT');
  await cluster.stop();
}

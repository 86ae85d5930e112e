/**
 * Time from a gateway process's spawn to its first `GET /healthz` 200, against 3 clustered nats-servers
 * (test/helpers/nats.ts) of which one is SIGKILLed (`dead`: refuses connections), SIGSTOPped (`frozen`:
 * accepts, never greets) or left alone (`alive`). Runs the built CLI (`npm run build`) at nice 10, as the
 * chaos runs do; prints each start's time and the CPU the process used until then.
 *   npx tsx scripts/gateway-start-time.ts [dead|frozen|alive] [starts]
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { creds, REPO_ROOT, startNatsCluster } from '../test/helpers/nats.ts';

const mode = process.argv[2] ?? 'dead';
const starts = Number(process.argv[3] ?? 4);
if (!['dead', 'frozen', 'alive'].includes(mode) || !(starts >= 1)) throw new Error('usage: gateway-start-time.ts [dead|frozen|alive] [starts]');
const cluster = await startNatsCluster(3);
const victim = cluster.servers[0]!;
if (mode === 'dead') await victim.stop();
if (mode === 'frozen') process.kill(victim.pid, 'SIGSTOP');
const { user, pass } = creds('gateway');
try {
  for (let i = 0; i < starts; i++) {
    const port = 18900 + i;
    const t0 = Date.now();
    const p = spawn('nice', ['-n', '10', process.execPath, 'bin/dynamollm.js', 'actor', 'gateway', '--id', 'gw-0', '--config', 'deploy/chaos.yaml',
      '--nats', cluster.urls.join(','), '--user', user, '--password', pass, '--set', `port=${port}`], { cwd: REPO_ROOT, stdio: 'ignore' });
    let servedMs: number | null = null;
    while (Date.now() - t0 < 60_000 && p.exitCode === null) {
      if (await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(500) }).then((r) => r.ok, () => false)) {
        servedMs = Date.now() - t0;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const stat = readFileSync(`/proc/${p.pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpuMs = (Number(f[11]) + Number(f[12])) * 10; // utime + stime, in 10-ms ticks
    console.log(`${mode}: start ${i}: /healthz 200 after ${servedMs ?? 'never (60 s)'} ms, ${cpuMs} ms of CPU`);
    p.kill('SIGKILL');
    await new Promise((r) => p.once('exit', r));
  }
} finally {
  if (mode === 'frozen') process.kill(victim.pid, 'SIGCONT');
  await cluster.stop();
}

/**
 * A supervised actor whose supervisor died before the actor started (a node agent SIGKILLed right after it
 * started an instance manager: the actor comes up already re-parented) drains and exits by itself: it compares
 * its parent with the supervisor that started it (DYNAMOLLM_SUPERVISOR_PID), not with whatever parent it has
 * when it installs its watchdog. Real processes: a Supervisor in its own process that SIGKILLs itself right
 * after the spawn, the test-echo actor on a real nats-server. Without the supervisor's pid the orphan keeps
 * running (its watchdog takes its new parent for the supervisor).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { killTree } from '../helpers/procs.ts';
import { REPO_ROOT } from '../../src/runtime/code-path.ts';

let nats: TestNats;
const started: number[] = [];
beforeAll(async () => {
  nats = await startNatsServer();
}, 30_000);
afterAll(async () => {
  killTree(started);
  await nats?.stop();
});

/** Alive and not a zombie. */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe('a supervised actor whose supervisor died before it started', () => {
  it.runIf(process.platform === 'linux').each([
    ['its output discarded', 'ignore', 'warn'],
    ['its output a pipe to the dead supervisor, logging at info', 'inherit', 'info'],
  ])('drains and exits by itself (%s)', async (_what, output, level) => {
    const { user, pass } = nats.creds('instance');
    const actor = ['--import', 'tsx', join(REPO_ROOT, 'test/fixtures/actors/main.ts'), 'test-echo', '--id', `orphan-${output}`, '--nats', nats.url, '--user', user, '--pass', pass, '--log-level', level!];
    const sup = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test/fixtures/dying-supervisor.ts'), JSON.stringify(actor), output!], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    started.push(sup.pid!);
    const child = await new Promise<number>((resolve, reject) => {
      let out = '';
      sup.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /CHILD (\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      sup.once('exit', () => setTimeout(() => reject(new Error(`the supervisor exited without naming its child: ${out}`)), 100));
    });
    started.push(child);
    await new Promise((r) => sup.once('exit', r));
    // the orphan loads, connects, starts, and then sees that its supervisor is not its parent
    const until = Date.now() + 30_000;
    while (alive(child) && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
    expect(alive(child), `actor ${child} still running with its supervisor gone`).toBe(false);
  }, 60_000);
});

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { descendants, killTree } from '../helpers/procs.ts';

// A process that dies without running any handler (SIGKILL, the OOM killer) leaves no engine and no private
// nats-server behind: a real `vllm serve` would go on holding the GPUs' memory and the port, and `up`'s
// nats-server its cluster's credentials and state, for good.
const dir = mkdtempSync(join(tmpdir(), 'dyn-pdeath-'));
const started: number[] = [];
afterAll(() => {
  killTree(started);
  rmSync(dir, { recursive: true, force: true });
});

/** Alive and not a zombie (an orphan's exit may wait for its new parent to reap it). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe('children tied to their parent', () => {
  it.runIf(process.platform === 'linux')('a SIGKILLed parent leaves neither its vLLM engine nor its private nats-server running', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../fixtures/parent-death-child.ts', import.meta.url)), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    started.push(child.pid!);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the child did not start its engine and nats-server within 45 s')), 45_000);
      child.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('READY')) {
          clearTimeout(t);
          resolve();
        }
      });
      child.once('exit', (code) => reject(new Error(`the child exited (${code}) before it was ready`)));
    });
    const tree = [...descendants([child.pid!])];
    const engine = tree.filter(([, args]) => args.includes('fake-vllm')).map(([pid]) => pid);
    const nats = tree.filter(([, args]) => /nats-server\s+-c/.test(args)).map(([pid]) => pid);
    expect(engine, 'the engine process').toHaveLength(1);
    expect(nats, 'the nats-server process').toHaveLength(1);
    started.push(...engine, ...nats);
    child.kill('SIGKILL');
    const until = Date.now() + 8000;
    while ([...engine, ...nats].some(alive) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect(engine.filter(alive), 'engine still running after its parent was SIGKILLed').toEqual([]);
    expect(nats.filter(alive), 'nats-server still running after its parent was SIGKILLed').toEqual([]);
  });
});

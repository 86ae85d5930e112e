/**
 * `dynamollm up` start and stop as an operator sees them, with the built CLI: "cluster ready" is printed only
 * once a first request went through end to end; Ctrl-C (SIGINT to up's whole process group, as a terminal
 * sends it) stops the gateway first, then the node agent with its instance managers and engines, then the
 * managers, then NATS; no actor logs a lost NATS connection on the way, and no process of the cluster is left.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NO_TSX } from '../helpers/cluster.ts';
import { freePort } from '../helpers/net.ts';

const KEY = 'sk-e2e-test-key';

/** Every process whose parent chain leads to `root` (from /proc), with its command line. */
function descendants(root: number): Map<number, string> {
  const parent = new Map<number, number>();
  const cmd = new Map<number, string>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parent.set(Number(d), ppid);
      cmd.set(Number(d), readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ').trim());
    } catch {
      // exited while listed
    }
  }
  const out = new Map<number, string>();
  for (const pid of parent.keys()) {
    for (let p = parent.get(pid); p !== undefined && p > 1; p = parent.get(p)) {
      if (p === root) {
        out.set(pid, cmd.get(pid) ?? '');
        break;
      }
    }
  }
  return out;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
};

describe('dynamollm up: ready and Ctrl-C', () => {
  it('prints ready after a first request succeeds; Ctrl-C stops gateway, instances, managers, NATS in order, leaving no process', async () => {
    const port = await freePort();
    const runDir = mkdtempSync(join(tmpdir(), 'dyn-up-life-'));
    const up = spawn(
      process.execPath,
      ['bin/dynamollm.js', 'up', '--config', 'test/e2e/cluster.e2e.yaml', '--port', String(port), '--run-dir', runDir, '--ready-timeout', '80'],
      // its own process group, as a shell's foreground job: the SIGINT below goes to the whole group
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'warn', NODE_OPTIONS: NO_TSX }, detached: true },
    );
    let out = '';
    up.stdout.on('data', (d: Buffer) => (out += d.toString()));
    up.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => up.once('exit', (code) => r(code)));
    try {
      const until = Date.now() + 90_000;
      while (!out.includes('cluster ready') && Date.now() < until && up.exitCode === null) await new Promise((r) => setTimeout(r, 250));
      expect(out, out.slice(-3000)).toContain('cluster ready');
      expect(out).toMatch(/a first request answered end to end in \d+ ms/);

      // the endpoint up announced serves
      const res = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
        body: JSON.stringify({ model: 'llama3.1-8b', prompt: 'Hello', max_tokens: 4 }),
      });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { choices: unknown[] }).choices).toHaveLength(1);

      const procs = descendants(up.pid!);
      const kinds = [...procs.values()];
      expect(kinds.some((c) => c.includes('nats-server'))).toBe(true);
      expect(kinds.some((c) => c.includes('engine-emulator'))).toBe(true);
      for (const k of ['gateway', 'cluster', 'pool', 'node', 'instance']) expect(kinds.some((c) => c.includes(` actor ${k} `)), k).toBe(true);
      // by default a standby of each manager and of the gateway replica waits beside the one that serves
      for (const k of ['cluster', 'pool', 'gateway']) expect(kinds.filter((c) => c.includes(` actor ${k} `)).length, `${k} processes`).toBe(2);

      const mark = out.length;
      process.kill(-up.pid!, 'SIGINT');
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 45_000))]);
      expect(code, out.slice(mark)).toBe(0);
      const tail = out.slice(mark);
      const at = (s: string) => {
        const i = tail.indexOf(s);
        expect(i, `'${s}' in:\n${tail}`).toBeGreaterThanOrEqual(0);
        return i;
      };
      const order = [at('stopped gateway-0'), at('stopped node-n0'), at('stopped pool-0'), at('stopped cluster-0'), at('stopped NATS'), at('dynamollm: stopped\n')];
      // the standbys stop with their leaders, before NATS
      for (const name of ['pool-1', 'cluster-1']) expect(at(`stopped ${name}`)).toBeLessThan(order[4]!);
      expect([...order].sort((a, b) => a - b)).toEqual(order);
      // NATS outlived every actor: none lost its connection or its lease while stopping
      expect(tail).not.toMatch(/nats disconnected|lease attempt failed|Authorization Violation/i);

      await new Promise((r) => setTimeout(r, 1000));
      const left = [...procs].filter(([pid]) => alive(pid)).map(([pid, c]) => `${pid} ${c}`);
      expect(left).toEqual([]);
    } finally {
      if (up.exitCode === null && up.signalCode === null) up.kill('SIGKILL');
    }
  }, 150_000);
});

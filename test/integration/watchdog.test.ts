/**
 * The liveness watchdog on real processes (src/policy/watchdog.ts): a supervised child that beats is stopped with
 * SIGSTOP (alive, its port held, answering nothing), and must be killed and replaced, its port served again; the
 * private nats-server likewise, probed on its client port.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Supervisor, silentLogger } from '../../src/runtime/index.ts';
import { freeLocalPort, probeNats, startOwnNats } from '../../src/runtime/nats-launcher.ts';

const dir = mkdtempSync(join(tmpdir(), 'dyn-watchdog-it-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const fixture = fileURLToPath(new URL('../fixtures/beating-server.ts', import.meta.url));

/** The pid that answers GET on `port` within `ms`, or undefined. */
async function answer(port: number, ms: number): Promise<number | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(ms) });
    return Number(await res.text());
  } catch {
    return undefined;
  }
}

/** Sends SIGSTOP to `pid` and waits until every thread of it is stopped (state T; a loaded host takes a while). */
async function pause(pid: number): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  const state = (t: string) => {
    const stat = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  };
  await until(async () => (readdirSync(`/proc/${pid}/task`).every((t) => state(t) === 'T') ? true : undefined), 10_000);
}

async function until<T>(f: () => Promise<T | undefined>, ms: number): Promise<T | undefined> {
  for (const end = Date.now() + ms; Date.now() < end;) {
    const v = await f();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  return undefined;
}

describe('liveness watchdog on real processes', () => {
  it('a SIGSTOPped supervised server is killed after its missed probes, restarted, and its port answers again', async () => {
    const port = await freeLocalPort();
    const sup = new Supervisor({
      children: [{ name: 'web', command: process.execPath, args: ['--import', 'tsx', fixture, String(port)], output: 'ignore', liveness: { file: join(dir, 'web') } }],
      log: silentLogger(),
      backoff: { initialMs: 100, maxMs: 1000 },
      watchdog: { intervalMs: 500, misses: 8, startGraceMs: 30_000 },
    });
    const hung: { pid: number; silentMs: number }[] = [];
    sup.on('unresponsive', (e: { pid: number; silentMs: number }) => hung.push(e));
    await sup.start();
    try {
      const first = await until(() => answer(port, 1000), 30_000);
      expect(first).toBeGreaterThan(0);
      // healthy for 3 s: no kill
      await new Promise((r) => setTimeout(r, 3000));
      expect(hung).toEqual([]);
      const t0 = Date.now();
      await pause(first!);
      // stopped: the port accepts the connection (the kernel's backlog) but nothing answers
      expect(await answer(port, 500)).toBeUndefined();
      const next = await until(async () => {
        const pid = await answer(port, 500);
        return pid !== undefined && pid !== first ? pid : undefined;
      }, 30_000);
      expect(next).toBeGreaterThan(0);
      expect(next).not.toBe(first);
      expect(hung).toHaveLength(1);
      expect(hung[0]!.pid).toBe(first);
      // at least misses x intervalMs of silence before the kill
      expect(hung[0]!.silentMs).toBeGreaterThanOrEqual(4000);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(3500);
      expect(sup.children()[0]).toMatchObject({ hangKills: 1, restarts: 1, state: 'running' });
    } finally {
      await sup.stop();
    }
  }, 90_000);

  it('a SIGSTOPped private nats-server is killed and started again on its port', async () => {
    const h = await startOwnNats({ conf: 'jetstream {\n}\n', dir: join(dir, 'nats'), log: silentLogger(), watchdog: { intervalMs: 500, misses: 8, startGraceMs: 5000 } });
    const port = Number(new URL(h.url.replace(/^nats:/, 'http:')).port);
    try {
      const pid = h.pid()!;
      await new Promise((r) => setTimeout(r, 2000));
      expect(h.hangKills()).toBe(0);
      await pause(pid);
      expect(await probeNats('127.0.0.1', port, 300)).toBe(false);
      const back = await until(async () => (h.pid() !== pid && (await probeNats('127.0.0.1', port, 300)) ? true : undefined), 30_000);
      expect(back).toBe(true);
      expect(h.hangKills()).toBe(1);
      expect(h.restarts()).toBe(1);
    } finally {
      await h.stop();
    }
  }, 90_000);
});

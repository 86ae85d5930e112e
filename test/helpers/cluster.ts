/**
 * `dynamollm up` as a child process for e2e tests: its own private NATS (up starts it on a free port with
 * per-actor credentials), a free gateway port, a private run dir, wait for "cluster ready", and a stop
 * that sends Ctrl-C (SIGINT) and waits for the orderly shutdown.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from './net.ts';

/** NODE_OPTIONS that make importing tsx or loading a .ts module fail (test/fixtures/no-tsx/hook.mjs). */
export const NO_TSX = `--import=${resolve('test/fixtures/no-tsx/hook.mjs')}`;

export interface UpCluster {
  /** gateway base URL, e.g. http://127.0.0.1:PORT */
  base: string;
  natsUrl: string;
  /** the observer's nkey seed file `up` printed (for `dynamollm status --nkey`). */
  observerNkey: string;
  runDir: string;
  /** everything `up` printed so far (stdout and stderr). */
  output(): string;
  /** SIGINT, wait up to `graceMs` for the drain, then SIGKILL. */
  stop(graceMs?: number): Promise<void>;
}

export async function startUpCluster(o: { config: string; readyTimeoutS: number; runDirPrefix: string; env?: Record<string, string> }): Promise<UpCluster> {
  const gp = await freePort();
  const base = `http://127.0.0.1:${gp}`;
  const runDir = mkdtempSync(join(tmpdir(), o.runDirPrefix));
  const up: ChildProcess = spawn(
    process.execPath,
    ['bin/dynamollm.js', 'up', '--config', o.config, '--port', String(gp), '--run-dir', runDir, '--ready-timeout', String(o.readyTimeoutS)],
    // the compiled CLI (dist/), and every process it starts, without TypeScript: the no-tsx hook travels in NODE_OPTIONS
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'warn', NODE_OPTIONS: NO_TSX, ...o.env } },
  );
  let output = '';
  up.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  up.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const stop = async (graceMs = 30_000) => {
    if (up.exitCode !== null || up.signalCode !== null) return;
    const exited = new Promise((r) => up.once('exit', r));
    up.kill('SIGINT');
    await Promise.race([exited, new Promise((r) => setTimeout(r, graceMs))]);
    if (up.exitCode === null && up.signalCode === null) up.kill('SIGKILL');
  };
  const until = Date.now() + (o.readyTimeoutS + 5) * 1000;
  while (!output.includes('cluster ready') && Date.now() < until && up.exitCode === null) await new Promise((r) => setTimeout(r, 250));
  if (!output.includes('cluster ready')) {
    await stop(5000);
    throw new Error(`cluster did not get ready:\n${output.slice(-3000)}`);
  }
  const natsUrl = /NATS (nats:\/\/127\.0\.0\.1:\d+) \(private/.exec(output)?.[1];
  const observerNkey = /NATS_NKEY=(\S+)/.exec(output)?.[1];
  if (!natsUrl || !observerNkey) {
    await stop(5000);
    throw new Error(`up did not print its private NATS URL and observer key:\n${output.slice(-3000)}`);
  }
  return { base, natsUrl, observerNkey, runDir, output: () => output, stop };
}

/**
 * The datapath bench's one-instance cluster as the gateway measurement scripts start it (scripts/gateway-alloc.ts,
 * scripts/gateway-ab.ts, test/bench/gateway-gc.ts): one H100 with the TP1 profile, the emulator (zero-delay unless told
 * otherwise), the direct data path and request plane; `dynamollm up` of a built tree (its bin/ runs its dist/) in a
 * fresh run dir on a free port, until it prints "cluster ready"; a stop that sends Ctrl-C and waits for the exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../test/helpers/net.ts';

export const BENCH_MODEL = 'llama3.1-8b';

export interface BenchClusterOptions {
  /** the built tree whose CLI runs (`<tree>/bin/dynamollm.js`, cwd the tree). */
  tree: string;
  /** the run dir's name prefix under the OS temp dir. */
  name: string;
  /** gateway settings over the bench's (maxInflight 4096, dataPath and requestPlane direct). */
  gateway?: Record<string, unknown>;
  /** engine settings over the bench's (maxInEngine 64, maxQueued 1024, the emulator). */
  engine?: Record<string, unknown>;
  /** the emulator's arguments (default: --zero-delay). */
  engineArgs?: string[];
  /** `up` arguments after the config, port and run dir (e.g. --gateway-standbys 0). */
  upArgs?: string[];
  /** the environment of `up` and every process it starts, given the run dir (files written there first: a preload), over DYNAMOLLM_LOG_LEVEL=error. */
  env?: (dir: string) => Record<string, string>;
}

export interface BenchCluster {
  up: ChildProcess;
  /** the gateway's base URL. */
  base: string;
  /** the run dir (the config, `up`'s files, whatever `env` wrote). */
  dir: string;
  /** everything `up` printed so far (stdout and stderr). */
  output(): string;
  /** Ctrl-C (SIGINT), then waits up to 30 s for `up` to exit. */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startBenchCluster(o: BenchClusterOptions): Promise<BenchCluster> {
  const dir = mkdtempSync(join(tmpdir(), `${o.name}-`));
  const cfg = join(dir, 'bench.json');
  writeFileSync(cfg, JSON.stringify({
    model: BENCH_MODEL, gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.tp1.json', servers: [{ id: 'n0', gpus: 1 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    epochs: { clusterS: 3600, poolS: 3600, instanceS: 5 },
    engine: { kind: 'emulator', initialTp: 1, maxInEngine: 64, maxQueued: 1024, healthDeadlineMs: 30_000, args: o.engineArgs ?? ['--zero-delay'], ...o.engine },
    gateway: { maxInflight: 4096, dataPath: 'direct', requestPlane: 'direct', ...o.gateway },
  }));
  const port = await freePort();
  let out = '';
  const up = spawn(process.execPath, [join(o.tree, 'bin', 'dynamollm.js'), 'up', '--config', cfg, '--port', String(port), '--run-dir', dir, ...(o.upArgs ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'], cwd: o.tree, env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'error', ...o.env?.(dir) },
  });
  up.stdout.on('data', (d: Buffer) => (out += d.toString()));
  up.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const stop = async () => {
    if (up.exitCode !== null || up.signalCode !== null) return;
    const exited = new Promise((r) => up.once('exit', r));
    up.kill('SIGINT');
    await Promise.race([exited, sleep(30_000)]);
  };
  for (const until = Date.now() + 120_000; !out.includes('cluster ready'); await sleep(200)) {
    if (Date.now() > until || up.exitCode !== null) {
      await stop();
      throw new Error(`${o.tree}: the cluster did not start: ${out.slice(-3000)}`);
    }
  }
  return { up, base: `http://127.0.0.1:${port}`, dir, output: () => out, stop };
}

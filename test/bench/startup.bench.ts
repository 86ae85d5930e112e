/**
 * Actor start-up, per kind, as it runs under `dynamollm up` from dist/: the cluster of deploy/chaos.yaml (or
 * DYN_BENCH_STARTUP_CONFIG); each round SIGKILLs one process of each kind (node agent, instance manager, pool manager,
 * cluster manager, gateway) in turn, and reads from the `actor running` line of its replacement (the supervisor
 * restarts it) where the new process's start went (src/runtime/startup.ts): `boot` (Node up), `cli` (the CLI's
 * modules, arguments), `config` (file read), `module` (the kind's modules), `create` (config validated, actor
 * built), `connect` (NATS), `running` (onStart: KV buckets, leases, first status; the first heartbeat goes out
 * then). Before each kill the baseline in the same run: a bare `node -e` that reports the time from its process's
 * start to its script (Node's own boot under the same load). `up` runs with --gateway-standbys 0: a standby's start
 * waits for its replica's port by design. DYN_BENCH_STARTUP_ROUNDS (default 5) rounds;
 * DYN_BENCH_STARTUP_BUSY=N runs N busy loops (nice 10) beside the cluster, for the figures under load. Linux only.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers/net.ts';
import type { BenchSection } from './types.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(REPO, 'bin', 'dynamollm.js');
const KINDS = ['node', 'instance', 'pool', 'cluster', 'gateway'] as const;
type Kind = (typeof KINDS)[number];
const STEPS = ['boot', 'cli', 'config', 'module', 'create', 'connect', 'running'] as const;

interface Running {
  kind: string;
  id: string;
  pid: number;
  startupMs: number;
  cpuMs: number;
  startup: Partial<Record<(typeof STEPS)[number], number>>;
}

/**
 * pid -> `<kind>:<id>` of every actor process whose command line or environment names `runDir` (its config or its
 * NATS key is there): those `up` runs, and the instance managers (their NATS key), also those that outlived a killed
 * node agent (re-parented, no longer under `up`).
 */
function actors(runDir: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      const a = argv.indexOf('actor'), id = argv.indexOf('--id');
      if (a < 0 || id < 0) continue;
      if (argv.some((x) => x.startsWith(runDir)) || readFileSync(`/proc/${d}/environ`, 'utf8').includes(runDir)) out.set(Number(d), `${argv[a + 1]}:${argv[id + 1]}`);
    } catch {
      /* gone */
    }
  }
  return out;
}

/** A bare Node's boot under the same load: ms from its process's start to its script. */
function bareNode(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(performance.now()))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2) : NaN;
};

export async function bench(): Promise<BenchSection> {
  const rounds = Number(process.env.DYN_BENCH_STARTUP_ROUNDS ?? 5);
  const busy = Number(process.env.DYN_BENCH_STARTUP_BUSY ?? 0);
  const config = resolve(REPO, process.env.DYN_BENCH_STARTUP_CONFIG ?? 'deploy/chaos.yaml');
  const dir = mkdtempSync(join(tmpdir(), 'dyn-startup-'));
  const port = await freePort();
  const up = spawn(process.execPath, [BIN, 'up', '--config', config, '--port', String(port), '--run-dir', dir, '--gateway-standbys', '0'], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'info', DYNAMOLLM_LOG_PRETTY: '0' },
  });
  let log = '';
  const started: Running[] = [];
  let partial = '';
  up.stdout.on('data', (d: Buffer) => {
    const text = partial + d.toString();
    const lines = text.split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (log.length < 1 << 20) log += line + '\n';
      if (!line.includes('"actor running"')) continue;
      try {
        const j = JSON.parse(line) as { actor: string; id: string; pid: number; startupMs?: number; startupCpuMs?: number; startup?: Running['startup'] };
        if (j.startupMs !== undefined) started.push({ kind: j.actor, id: j.id, pid: j.pid, startupMs: j.startupMs, cpuMs: j.startupCpuMs ?? NaN, startup: j.startup ?? {} });
      } catch {
        /* not JSON */
      }
    }
  });
  up.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const loops: ChildProcess[] = [];
  const samples = new Map<Kind, Running[]>(KINDS.map((k) => [k, []]));
  const bare: number[] = [];
  const load: number[] = [];
  try {
    for (const until = Date.now() + 180_000; !log.includes('cluster ready'); await new Promise((r) => setTimeout(r, 200))) {
      if (Date.now() > until || up.exitCode !== null) throw new Error(`the cluster did not get ready:\n${log.slice(-2000)}`);
    }
    for (let i = 0; i < busy; i++) loops.push(spawn('nice', ['-n', '10', process.execPath, '-e', 'for(;;){}'], { stdio: 'ignore' }));
    await new Promise((r) => setTimeout(r, 3000));
    for (let round = 0; round < rounds; round++) {
      for (const kind of KINDS) {
        bare.push(bareNode());
        load.push(loadavg()[0]!);
        const procs = [...actors(dir)].filter(([, n]) => n.startsWith(`${kind}:`));
        const victim = procs[round % procs.length];
        if (!victim) throw new Error(`no ${kind} process of this run (${[...actors(dir).values()].join(", ")}):\n${log.slice(-3000)}`);
        const [pid, name] = victim;
        const id = name.slice(kind.length + 1);
        const seen = started.length;
        process.kill(pid, 'SIGKILL');
        let got: Running | undefined;
        for (const until = Date.now() + 90_000; !got; await new Promise((r) => setTimeout(r, 100))) {
          if (Date.now() > until) throw new Error(`${name} (pid ${pid} killed) did not run again within 90 s:\n${log.slice(-2000)}`);
          got = started.slice(seen).find((s) => s.kind === kind && s.id === id && s.pid !== pid);
        }
        samples.get(kind)!.push(got);
        // the cluster settles (leases, the instance's engine) before the next kill
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  } finally {
    for (const l of loops) l.kill('SIGKILL');
    const exited = new Promise((r) => up.once('exit', r));
    up.kill('SIGINT');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
  }
  const bareMs = median(bare);
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : '-');
  const rows = KINDS.map((kind) => {
    const s = samples.get(kind)!;
    const total = median(s.map((x) => x.startupMs));
    const row: Record<string, string | number> = { kind, 'spawn -> running ms (median)': f(total), 'min-max': `${f(Math.min(...s.map((x) => x.startupMs)))}-${f(Math.max(...s.map((x) => x.startupMs)))}`, 'CPU ms': f(median(s.map((x) => x.cpuMs))) };
    for (const step of STEPS) row[step] = f(median(s.map((x) => x.startup[step] ?? NaN)));
    row['x bare node'] = (total / bareMs).toFixed(1);
    return row;
  });
  rows.push({ kind: 'bare `node -e` (baseline)', 'spawn -> running ms (median)': f(bareMs), 'min-max': `${f(Math.min(...bare))}-${f(Math.max(...bare))}`, 'CPU ms': '', ...Object.fromEntries(STEPS.map((s) => [s, s === 'boot' ? f(bareMs) : ''])), 'x bare node': '1.0' });
  return {
    title: `Actor start-up under \`dynamollm up\` from dist/, per kind (${process.env.DYN_BENCH_STARTUP_CONFIG ?? 'deploy/chaos.yaml'}${busy ? `, ${busy} busy loops at nice 10 beside it` : ''})`,
    notes: [
      `${rounds} rounds; each SIGKILLs one process of each kind and reads its replacement's \`actor running\` line: ms from the new process's start to each step (src/runtime/startup.ts), medians; CPU ms: the process's user + system time at \`actor running\` (what the start costs; the wall time is that plus the wait for a core). Load average ${Math.min(...load).toFixed(2)}-${Math.max(...load).toFixed(2)} during the kills. Baseline (same run, before each kill): a bare \`node -e\` from its start to its script, median ${f(bareMs)} ms; "x bare node" is spawn -> running over it. The instance manager's \`running\` includes its engine's start (an emulator process, its CPU not counted here) and health check. \`up --gateway-standbys 0\`: with a standby, the gateway's replacement waits for the port until the serving process dies (actors/README.md, "Start-up").`,
    ],
    rows,
  };
}

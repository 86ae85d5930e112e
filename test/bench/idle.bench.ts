/**
 * The idle cluster's own CPU, per process: `dynamollm up` with no request, each process's utime+stime from
 * /proc/<pid>/stat over DYN_BENCH_IDLE_S seconds (default 60) after a 10-s settle, with its read and write system
 * calls (/proc/<pid>/io) and its main thread's voluntary context switches (wake-ups) per second. What the cluster
 * spends whatever it serves (heartbeats, statuses, telemetry, leases, timers): at ~1,000 streamed tokens a second,
 * every 1 ms of it per second is 1 us per token. The config: DYN_BENCH_IDLE_CONFIG (default the datapath bench's
 * one TP1 instance of a real-time emulated engine; `deploy/replay.yaml` for the replay's four TP2 instances).
 * Linux only (/proc).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers/net.ts';
import { descendants } from './datapath-cpu.ts';
import type { BenchSection } from './types.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(REPO, 'bin', 'dynamollm.js');
const CLK_TCK = 100;
const SETTLE_S = 10;

/** The datapath bench's cluster: one TP1 instance, the emulator stepping in wall time. */
const BENCH_CONFIG = {
  model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.tp1.json',
  servers: [{ id: 'n0', gpus: 1 }],
  pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
  epochs: { clusterS: 3600, poolS: 3600, instanceS: 5 },
  engine: { kind: 'emulator', initialTp: 1, maxInEngine: 64, maxQueued: 1024, healthDeadlineMs: 30_000 },
  gateway: { maxInflight: 4096, dataPath: 'direct', requestPlane: 'direct', workers: 1 },
};

interface Sample { cpuMs: number; reads: number; writes: number; wakeups: number }

function sample(pid: number): Sample {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const n = (re: RegExp, t: string) => Number(re.exec(t)?.[1] ?? 0);
    return { cpuMs: ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK, reads: n(/syscr: (\d+)/, io), writes: n(/syscw: (\d+)/, io), wakeups: n(/^voluntary_ctxt_switches:\s+(\d+)/m, status) };
  } catch {
    return { cpuMs: 0, reads: 0, writes: 0, wakeups: 0 };
  }
}

/** root and its descendants, each named by its role: `up`, `nats-server`, `engine`, `<actor kind>:<id>`. */
function processes(root: number): { pid: number; name: string }[] {
  return [{ pid: root, name: 'up' }, ...descendants(root).map(({ pid, cmd }) => {
    const argv = cmd.split('\0');
    const a = argv.indexOf('actor'), id = argv.indexOf('--id');
    return { pid, name: argv.includes('engine-emulator') ? 'engine' : a >= 0 ? `${argv[a + 1]}:${id >= 0 ? argv[id + 1] : '?'}` : (argv[0] ?? '?').split('/').pop()! };
  })];
}

export async function bench(): Promise<BenchSection> {
  const seconds = Number(process.env.DYN_BENCH_IDLE_S ?? 60);
  const dir = mkdtempSync(join(tmpdir(), 'dyn-idle-'));
  let cfg = process.env.DYN_BENCH_IDLE_CONFIG;
  if (!cfg) writeFileSync((cfg = join(dir, 'bench.json')), JSON.stringify(BENCH_CONFIG));
  const port = await freePort();
  const up = spawn(process.execPath, [BIN, 'up', '--config', resolve(cfg), '--port', String(port), '--run-dir', dir], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DYNAMOLLM_LOG_LEVEL: 'error' } });
  let log = '';
  up.stdout.on('data', (d: Buffer) => (log += d.toString()));
  up.stderr.on('data', (d: Buffer) => (log += d.toString()));
  try {
    for (const until = Date.now() + 120_000; !log.includes('cluster ready'); await new Promise((r) => setTimeout(r, 200))) {
      if (Date.now() > until || up.exitCode !== null) throw new Error(`the cluster did not get ready:\n${log.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, SETTLE_S * 1000));
    const procs = processes(up.pid!);
    const s0 = procs.map((p) => sample(p.pid)), load0 = loadavg()[0]!, t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const wall = (performance.now() - t0) / 1000, load1 = loadavg()[0]!;
    const rows = procs.map((p, i) => {
      const s = sample(p.pid), b = s0[i]!;
      return { process: p.name, 'CPU ms/s': (s.cpuMs - b.cpuMs) / wall, 'reads/s': (s.reads - b.reads) / wall, 'writes/s': (s.writes - b.writes) / wall, 'wake-ups/s': (s.wakeups - b.wakeups) / wall };
    }).sort((x, y) => x.process.localeCompare(y.process));
    const control = rows.filter((r) => r.process !== 'engine').reduce((a, r) => a + r['CPU ms/s'], 0);
    const engines = rows.filter((r) => r.process === 'engine').reduce((a, r) => a + r['CPU ms/s'], 0);
    const f = (x: number) => x.toFixed(2);
    return {
      title: `The idle cluster's own CPU, per process (${process.env.DYN_BENCH_IDLE_CONFIG ?? "the datapath bench's one TP1 instance"})`,
      notes: [
        `${f(wall)} s of wall time after ${SETTLE_S} s idle, load average ${f(load0)} -> ${f(load1)}: the control path (every process but the engines, nats-server and \`up\` included) ${f(control)} ms of CPU per second, the engines ${f(engines)}. Reads, writes: system calls per second (/proc/<pid>/io); wake-ups: the main thread's voluntary context switches per second.`,
      ],
      rows: rows.map((r) => ({ process: r.process, 'CPU ms/s': f(r['CPU ms/s']), 'reads/s': r['reads/s'].toFixed(1), 'writes/s': r['writes/s'].toFixed(1), 'wake-ups/s': r['wake-ups/s'].toFixed(1) })),
    };
  } finally {
    const exited = new Promise((r) => up.once('exit', r));
    up.kill('SIGINT');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
  }
}

/**
 * `dynamollm chaos`: a local cluster (`dynamollm up`, standby managers included) under an open-loop load through its
 * gateway replicas (as a client behind a load balancer): resumable streamed completions (chaos-client.ts), or a mix
 * of those and what an OpenAI SDK sends, streamed and not, completions and chat (--mix: chaos-mix.ts),
 * while random processes of the chosen kinds are SIGKILLed on a schedule. Prints one JSON report: requests
 * sent/ok/failed/hung, the streams broken or cut by a retryable error event that the client resumed on another replica
 * (Last-Event-ID) and those it could not (and of them those a gateway's death explains), the streams with a lost
 * or duplicated token, all of it per kind of request, and each failure's cause (and whether any server could avoid it),
 * the gateways' own retries, migrations and holds (their /metrics, scraped through the run and summed over each
 * replica's processes: chaos-counters.ts), kills by kind, and per kill the time to its consequence: a new cluster or
 * pool leader (the first acquisition of the lease after the kill, from the replicated lease records themselves:
 * chaos-leases.ts; the victim's restarted process may win it again under the same id, in a new term), the
 * instance out of the ready set in the cluster status (dispatch) and out of every gateway's own routing view and its
 * pool leader's dispatch view (where requests actually go: chaos-views.ts), the process back. up's output (the actors' logs at DYNAMOLLM_LOG_LEVEL) is kept in the run
 * directory (`upLog` in the report); with --pause a share of the victims is paused (SIGSTOP) instead, for the supervisors'
 * liveness watchdog to find (src/cli/chaos-pause.ts; `pauses` in the report); at DYNAMOLLM_LOG_LEVEL info the gateways' own cause of each refusal is counted from it
 * (`refusalCauses`, src/cli/chaos-refusals.ts). Linux only (the process tree is read from /proc).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync, readlinkSync, writeFileSync, mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { num, readConfigFile, UsageError } from '../args.ts';
import { action, type ExitCode } from '../program.ts';
import { cliArgs, REPO_ROOT } from '../../runtime/code-path.ts';
import { Bus } from '../../runtime/bus.ts';
import { freeLocalPort } from '../../runtime/nats-launcher.ts';
import { silentLogger } from '../../runtime/logger.ts';
import { inboxPrefix } from '../../../protocols/permissions.ts';
import { ClusterStatus, StatusRequest } from '../../../protocols/messages.ts';
import { leaseKeys, subjects } from '../../../protocols/subjects.ts';
import { splitConfig } from '../../../actors/gateway/config.ts';
import { poolsOf } from '../../../actors/common/config.ts';
import { rng } from '../../sim/trace.ts';
import { brokenByGatewayDeath, type Outcome } from '../chaos-client.ts';
import { DEFAULT_MIX, failureCause, mixOptions, mixReport, mixRequest, pickKind, REQUEST_KINDS, resumeFigures } from '../chaos-mix.ts';
import { refusalCauses } from '../chaos-refusals.ts';
import { Pauses, pauseOptions, victimSignal } from '../chaos-pause.ts';
import { CounterScraper } from '../chaos-counters.ts';
import { ObserverLink, leaseAround, type LeaseRecords, type LeaseRecord } from '../chaos-leases.ts';
import { upJetstreamReplicas } from './up.ts';
import { DispatchViews, countBy, timeByViews, viewsPending, type KillViews, type ViewFigures } from '../chaos-views.ts';

export const KILL_KINDS = ['engine', 'instance', 'node', 'cluster', 'pool', 'gateway', 'nats'] as const;
type Kind = (typeof KILL_KINDS)[number];

interface ChaosOptions {
  config?: string;
  duration: string;
  rps: string;
  killEvery: string;
  kinds: string;
  seed: string;
  maxTokens: string;
  settle: string;
  natsNodes: string;
  gatewayReplicas?: string;
  gatewayStandbys?: string;
  out?: string;
  pause?: string;
  contAfter?: string;
  mix: string; sdkRetries: string;
}

export function register(cmd: Command, exit: ExitCode): void {
  cmd
    .option('--config <file>', 'cluster config (as for up). Default: up\'s default cluster')
    .option('--duration <s>', 'seconds of load and kills', '60')
    .option('--rps <n>', 'requests per second through the gateway (of the kinds --mix names)', '3')
    .option('--mix <kind=weight,...>', `kinds of request and their weights (${REQUEST_KINDS.join(', ')}): resumable, a streamed completion resumed on another replica after a break; the others sent as an OpenAI SDK sends them (stream, chat: streamed completion, chat; nonstream, chat-nonstream: not streamed)`, DEFAULT_MIX)
    .option('--sdk-retries <n>', 'retries of a request of the SDK kinds at most (the openai SDKs\' max_retries): connection errors and 408/409/429/5xx before a response began, with their backoff', '2')
    .option('--kill-every <s>', 'seconds between two SIGKILLs', '3')
    .option('--kinds <list>', `what may be killed, comma-separated (${KILL_KINDS.join(',')})`, 'engine,instance,node,cluster,pool')
    .option('--seed <n>', 'seed of the kill schedule', '1')
    .option('--max-tokens <n>', 'max_tokens of each request', '40')
    .option('--settle <s>', 'seconds after the last kill for requests to finish (a request open longer is hung)', '60')
    .option('--nats-nodes <n>', 'servers of up\'s private NATS (up --nats-nodes): 1, or 3 / 5 clustered', '1')
    .option('--gateway-replicas <n>', 'gateway replicas up starts (gateway.replicas; default the config\'s): the load goes to them in turn, a connection refused or reset before a response is sent to the next (as a client behind a load balancer). Killing kind gateway needs 2 or more')
    .option('--gateway-standbys <n>', 'standby processes per gateway replica (up --gateway-standbys; default up\'s, 1)')
    .option('--out <file>', 'also write the JSON report here')
    .option('--pause <share>', 'share of the victims (0..1) paused with SIGSTOP instead of killed: alive, answering nothing (the supervisors\' liveness watchdog must replace them)', '0')
    .option('--cont-after <s>', 'resume a paused victim still there after this many seconds (SIGCONT); 0: never (those left are resumed when the load ends)', '0')
    .action(action(exit, (v: ChaosOptions) => chaos(v)));
}


/** failures listed one by one in the report at most. */
const MAX_FAILURES = 2000;

export interface Proc { pid: number; ppid: number; kind: Kind | 'up' | 'other'; id: string }

/** how long one read of the process tree serves every kill's watcher, ms. */
const TREE_TTL_MS = 250;

/**
 * `read`, called at most once per `ttlMs`: every kill's watcher looks for its victim's restart in the same
 * snapshot. A read of /proc costs ~15 ms of CPU on a loaded 2-core host; one per watcher every 100 ms kept
 * this process's event loop busy (its load timer sending bursts, its clients' retries late) and took the CPU
 * the restarting actors needed.
 */
export function sharedRead<T>(read: () => T, ttlMs: number): () => T {
  let atMs = -Infinity;
  let last: T | undefined;
  return () => {
    if (last === undefined || Date.now() - atMs >= ttlMs) {
      last = read();
      atMs = Date.now();
    }
    return last;
  };
}

/** Whether process `pid` holds the listening TCP socket of `port` (IPv4 or IPv6), from /proc/net/tcp* and its fds. */
export function listensOn(pid: number, port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const inodes = new Set<string>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const c = line.trim().split(/\s+/);
      if (c[1]?.endsWith(hex) && c[3] === '0A') inodes.add(c[9]!);
    }
  }
  if (!inodes.size) return false;
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return inodes.has(/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1] ?? '');
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

/**
 * The processes found under the root before (by pid): an instance manager whose node agent died is re-parented away
 * from the tree while it serves on, to be adopted by the node agent's successor (src/runtime/adoption.ts); it and
 * the engine it starts stay the run's processes.
 */
const seenUnderRoot = new Set<number>();

/** Every process under `root` (itself excluded), or found under it before and still running, classified by its command line. */
function processTree(root: number): Proc[] {
  const all: { pid: number; ppid: number; cmd: string[] }[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      all.push({ pid: Number(d), ppid, cmd: readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0') });
    } catch {
      // gone meanwhile
    }
  }
  const running = new Set(all.map((p) => p.pid));
  const under = new Set([root, ...[...seenUnderRoot].filter((pid) => running.has(pid))]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of all) {
      if (!under.has(p.pid) && under.has(p.ppid)) {
        under.add(p.pid);
        grew = true;
      }
    }
  }
  const out: Proc[] = [];
  for (const p of all) {
    if (p.pid === root || !under.has(p.pid)) continue;
    const i = p.cmd.indexOf('actor');
    const idAt = p.cmd.indexOf('--id');
    const id = idAt >= 0 ? p.cmd[idAt + 1] ?? '' : '';
    let kind: Proc['kind'] = 'other';
    if (i >= 0 && KILL_KINDS.includes(p.cmd[i + 1] as Kind)) kind = p.cmd[i + 1] as Kind;
    else if (p.cmd.includes('engine-emulator') || p.cmd.some((a) => a.endsWith('vllm'))) kind = 'engine';
    else if (p.cmd.some((a) => a.endsWith('nats-server'))) kind = 'nats';
    if (kind === 'nats') {
      // one server per node directory of up's private NATS (node-<i>/nats-server.conf), or the only one
      const conf = p.cmd[p.cmd.indexOf('-c') + 1] ?? '';
      out.push({ pid: p.pid, ppid: p.ppid, kind, id: /\/(node-\d+)\/[^/]+$/.exec(conf)?.[1] ?? 'nats-server' });
      continue;
    }
    out.push({ pid: p.pid, ppid: p.ppid, kind, id });
  }
  seenUnderRoot.clear();
  for (const p of out) seenUnderRoot.add(p.pid);
  return out;
}

const pct = (xs: number[], q: number): number | null => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

/** One kill and its consequences (ViewFigures: its instance's leave of the dispatchers' own views, chaos-views.ts). */
export interface Kill extends ViewFigures {
  kind: Kind; id: string; pid: number; atMs: number; leaderBefore?: string; restartMs?: number; newLeaderMs?: number; outOfDispatchMs?: number;
  /** cluster, pool: who took the lease after a leader's kill (pool: `<pool>:<holder>` per pool it led), from the lease records. */
  newLeader?: string;
  /** nats: the first cluster status answered after the server came back (the planner reconnected and serving). */
  statusBackMs?: number;
  /** gateway: its port answering HTTP again (GET /healthz); not for a standby's kill (the port was served throughout). */
  servingMs?: number;
  /** gateway: the victim was its replica's standby process (waiting for the port, not serving it). */
  standby?: boolean;
  /** pool: the pools the victim led when it was killed (a new leader is timed for each). */
  led?: string[];
  /** cluster, pool: when the harness last read the cluster status it took leaderBefore and led from (epoch ms); the lease records overrule it where they reach back to the kill. */
  statusSeenMs?: number;
  /**
   * instance, engine: the first cluster status answered after the kill, ms. outOfDispatchMs is not below it: until
   * then the harness holds the status read before the kill, the dead instance ready in it (no planner serving).
   */
  statusAfterMs?: number;
  /** the victim was paused (SIGSTOP, --pause), not killed. */
  paused?: boolean;
}

/** period of the load average samples the report carries, ms. */
const LOAD_SAMPLE_MS = 10_000;

/**
 * The host's 1-minute load averages sampled during a run, as the report gives them: first, last, least and most
 * (2 decimals) and how many samples. On a shared host the load decides much of a run's outcome (a restarted
 * actor at nice 10 gets a few % of a core), so every figure of a run comes with it.
 */
export function loadRange(samples: readonly number[]): { first: number; last: number; min: number; max: number; samples: number } | null {
  if (!samples.length) return null;
  const r = (x: number) => Math.round(x * 100) / 100;
  return { first: r(samples[0]!), last: r(samples.at(-1)!), min: r(Math.min(...samples)), max: r(Math.max(...samples)), samples: samples.length };
}

async function chaos(v: ChaosOptions): Promise<number> {
  if (process.platform !== 'linux') throw new UsageError('dynamollm chaos reads the process tree from /proc: Linux only');
  const durationS = num(v.duration, 'duration');
  const rps = num(v.rps, 'rps');
  const killEveryS = num(v.killEvery, 'kill-every');
  const maxTokens = num(v.maxTokens, 'max-tokens');
  const settleS = num(v.settle, 'settle');
  if (!(durationS > 0)) throw new UsageError(`--duration must be above 0 s, got ${v.duration}`);
  if (!(rps > 0)) throw new UsageError(`--rps must be above 0, got ${v.rps}`);
  if (!(killEveryS >= 0.05)) throw new UsageError(`--kill-every must be at least 0.05 s, got ${v.killEvery}`);
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new UsageError(`--max-tokens must be a positive integer, got ${v.maxTokens}`);
  if (!(settleS >= 0)) throw new UsageError(`--settle must be 0 s or more, got ${v.settle}`);
  const kinds = v.kinds.split(',').map((k) => k.trim()).filter(Boolean) as Kind[];
  for (const k of kinds) if (!KILL_KINDS.includes(k)) throw new UsageError(`--kinds: unknown kind '${k}' (one of ${KILL_KINDS.join(', ')})`);
  const rand = rng(num(v.seed, 'seed'));
  const { mix, draw: mixRand, sdkRetries } = mixOptions(v.mix, v.sdkRetries, num(v.seed, 'seed'));
  const pause = pauseOptions(v.pause, v.contAfter);
  const pauses = new Pauses(pause);
  const raw = ((v.config ? readConfigFile(v.config) : undefined) ?? {}) as Record<string, unknown>;
  const split = splitConfig(raw, v.config ? `config ${v.config}` : 'default config');
  const { cluster } = split;
  const replicas = v.gatewayReplicas !== undefined ? num(v.gatewayReplicas, 'gateway-replicas') : split.gateway.replicas;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 64) throw new UsageError(`--gateway-replicas must be an integer from 1 to 64, got ${v.gatewayReplicas}`);
  if (kinds.includes('gateway') && replicas < 2) throw new UsageError('--kinds gateway kills gateway replicas: with one, every request in flight and every new one until it is back fails; use --gateway-replicas 2 or more');
  const gateway = { ...split.gateway, replicas };
  const model = (gateway.models ?? [cluster.model])[0]!;
  const key = gateway.apiKeys[0];
  const port = await freeLocalPort();
  const runDir = mkdtempSync(join(tmpdir(), 'dyn-chaos-'));
  const log = (s: string) => process.stderr.write(`chaos: ${s}\n`);
  // another replica count than the config's: up reads a copy of it with gateway.replicas set (JSON is YAML)
  let configFile = v.config;
  if (replicas !== split.gateway.replicas) {
    configFile = join(runDir, 'chaos-config.yaml');
    writeFileSync(configFile, JSON.stringify({ ...raw, gateway: { ...((raw.gateway as Record<string, unknown> | undefined) ?? {}), replicas } }));
  }

  const natsNodes = num(v.natsNodes, 'nats-nodes');
  const up: ChildProcess = spawn(process.execPath, [...cliArgs(), 'up', ...(configFile ? ['--config', configFile] : []), '--port', String(port), '--run-dir', runDir, '--nats-nodes', String(natsNodes), ...(v.gatewayStandbys !== undefined ? ['--gateway-standbys', v.gatewayStandbys] : [])], {
    cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, DYNAMOLLM_LOG_LEVEL: process.env.DYNAMOLLM_LOG_LEVEL ?? 'error', DYNAMOLLM_LOG_PRETTY: '0' },
  });
  let upOut = '';
  // everything up and its actors write (their logs, at DYNAMOLLM_LOG_LEVEL) is kept in the run directory
  const upLog = join(runDir, 'up.log');
  const logFile = createWriteStream(upLog);
  up.stdout!.on('data', (d: Buffer) => {
    logFile.write(d);
    // (the banner up prints once ready ends with its status line; nothing after it is read here)
    if (!/dynamollm top/.test(upOut) && upOut.length < 1 << 22) upOut += d.toString();
  });
  const stopUp = async () => {
    if (up.exitCode !== null) return;
    up.kill('SIGTERM');
    await Promise.race([new Promise((r) => up.once('exit', r)), new Promise((r) => setTimeout(r, 60_000))]);
    if (up.exitCode === null) up.kill('SIGKILL');
  };
  process.once('SIGINT', () => void stopUp().then(() => process.exit(130)));
  let link: ObserverLink | undefined;
  try {
    log(`starting the cluster (up, gateway on :${port})`);
    const readyBy = Date.now() + 600_000;
    while (!/cluster ready/.test(upOut)) {
      if (up.exitCode !== null) throw new Error(`up exited (${up.exitCode}) before the cluster was ready`);
      if (Date.now() > readyBy) throw new Error('the cluster did not become ready within 600 s');
      await new Promise((r) => setTimeout(r, 250));
    }
    // the cluster status and who leads (the lease records: a watch of the leases bucket and a poll of each lease
    // key) as up's observer (the credentials up prints), on a connection made again whenever nats.js closes it
    const nk = /NATS_URL=(\S+) NATS_NKEY=(\S+)/.exec(upOut);
    const pools = poolsOf(cluster).map((p) => p.id);
    if (nk) {
      const settings = { servers: nk[1]!.split(','), nkey: nk[2]! };
      link = new ObserverLink(
        () => Bus.connect({ settings, name: 'dynamollm-chaos', inboxPrefix: inboxPrefix('observer', `chaos-${randomBytes(4).toString('hex')}`), log: silentLogger(), reconnect: true }),
        [leaseKeys.clusterPlanner(), ...pools.map((p) => leaseKeys.poolLeader(p))],
        upJetstreamReplicas(natsNodes),
      );
      link.start();
      // the kills start once the lease records are read (a leader's kill before would go untimed)
      for (const until = Date.now() + 60_000; !link.log.records(leaseKeys.clusterPlanner()).length && Date.now() < until;) await new Promise((r) => setTimeout(r, 200));
    }
    const leases = link;
    let status: ClusterStatus | undefined;
    let statusAt = 0;
    const poll = setInterval(() => {
      void leases?.bus?.request(subjects.clusterStatus(), StatusRequest, { v: 1 }, ClusterStatus, { timeoutMs: 1000 }).then((s) => {
        status = s;
        statusAt = Date.now();
      }, () => undefined);
    }, 200);
    // every gateway's and pool manager's own dispatch view (chaos-views.ts), asked on the observer connection
    const views = new DispatchViews(() => leases?.bus);
    if (leases) views.start();
    // up's gateway replicas: gw-<i> on port + i
    const urls = Array.from({ length: replicas }, (_, i) => `http://127.0.0.1:${port + i}`);
    log(`ready: load ${rps} req/s for ${durationS} s over ${replicas} gateway replica(s), a SIGKILL every ${killEveryS} s among ${kinds.join(',')}`);

    // load
    const outs: Promise<Outcome>[] = [];
    const t0 = Date.now();
    const loads = [loadavg()[0]!];
    const loadSampler = setInterval(() => loads.push(loadavg()[0]!), LOAD_SAMPLE_MS).unref();
    // the gateways' counters, scraped through the run (a killed replica's counted up to its last scrape: chaos-counters.ts)
    const scraper = new CounterScraper(urls, gateway.metricsToken ?? process.env.DYNAMOLLM_METRICS_TOKEN);
    scraper.start();
    const loadTimer = setInterval(() => {
      const due = Math.floor(((Date.now() - t0) / 1000) * rps);
      while (outs.length < due) outs.push(mixRequest(pickKind(mix, mixRand()), { urls, model, ...(key ? { key } : {}), maxTokens, deadlineMs: (settleS + 30) * 1000 }, sdkRetries));
    }, 20);

    // kills
    const kills: Kill[] = [];
    const watchers: Promise<void>[] = [];
    const tree = sharedRead(() => processTree(up.pid!), TREE_TTL_MS);
    // kills on a fixed schedule (t0 + n x killEvery), so the time a kill takes (reading /proc) does not stretch it
    for (let n = 1; n * killEveryS <= durationS; n++) {
      await new Promise((r) => setTimeout(r, Math.max(0, t0 + n * killEveryS * 1000 - Date.now())));
      const peers = processTree(up.pid!);
      const procs = peers.filter((p) => kinds.includes(p.kind as Kind));
      if (!procs.length) continue;
      const victim = procs[Math.floor(rand() * procs.length)]!;
      const k: Kill = { kind: victim.kind as Kind, id: victim.id || String(victim.pid), pid: victim.pid, atMs: Date.now() };
      if (victim.kind === 'cluster') k.leaderBefore = status?.leader;
      if (victim.kind === 'pool') k.leaderBefore = status?.pools.map((p) => p.leader).join(',');
      if (victim.kind === 'cluster' || victim.kind === 'pool') k.statusSeenMs = statusAt;
      const parent = victim.kind === 'engine' ? peers.find((p) => p.pid === victim.ppid) : undefined;
      const wasListening = victim.kind === 'gateway' && listensOn(victim.pid, port + Number(/^gw-(\d+)$/.exec(victim.id)?.[1] ?? 0));
      const signal = victimSignal(pause, rand);
      try {
        process.kill(victim.pid, signal);
      } catch {
        continue;
      }
      kills.push(k);
      if (signal === 'SIGSTOP') {
        k.paused = true;
        pauses.add({ kind: k.kind, id: k.id, pid: k.pid, atMs: k.atMs });
      }
      log(`${signal === 'SIGSTOP' ? 'paused' : 'killed'} ${k.kind} ${k.id} (pid ${k.pid})`);
      // a gateway replica's standby (up --gateway-standbys): its kill leaves the port served; only the serving one's is timed
      const replica = victim.kind === 'gateway' ? Number(/^gw-(\d+)$/.exec(victim.id)?.[1] ?? -1) : -1;
      if (replica >= 0 && peers.some((p) => p.kind === 'gateway' && p.id === victim.id && p.pid !== victim.pid) && !wasListening) k.standby = true;
      const gatewayUrl = replica >= 0 && !k.standby ? urls[replica] : undefined;
      const instanceId = victim.kind === 'instance' ? k.id : parent?.id;
      const leave = instanceId && leases ? views.follow(instanceId, k.atMs) : undefined;
      const viewsOf = leave ? { leave, lastAnswer: (id: string) => views.lastAnswer('gateway', id), routing: () => views.routingSeen } : undefined;
      watchers.push(watchKill(k, tree, () => status, () => statusAt, leases ? { log: leases.log, pools } : undefined, parent, gatewayUrl, peers.filter((p) => p.kind === victim.kind && p.id === victim.id).map((p) => p.pid), viewsOf)
        .finally(() => leave && views.unfollow(leave)));
    }
    await new Promise((r) => setTimeout(r, Math.max(0, t0 + durationS * 1000 - Date.now())));
    clearInterval(loadTimer);
    const results = await Promise.all(outs);
    const paused = pauses.finish();
    await Promise.race([Promise.all(watchers), new Promise((r) => setTimeout(r, 30_000))]);
    clearInterval(poll);
    views.stop();
    clearInterval(loadSampler);
    loads.push(loadavg()[0]!);
    // every leader's kill timed again with every lease record seen (the last ones after its watcher gave up)
    if (leases) {
      // the current records, read until a poll of every key succeeds (10 tries at most)
      for (let i = 0; i < 10; i++) {
        if (await leases.poll()) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      for (const k of kills) timeByLeases(k, leases.log, pools);
    }
    const { counters: metrics, ...counterScrapes } = await scraper.finish();
    const errors: Record<string, number> = {};
    const errorCodes: Record<string, number> = {};
    const errorMessages: Record<string, number> = {};
    for (const o of results) {
      if (o.ok || !o.error) continue;
      errors[o.error] = (errors[o.error] ?? 0) + 1;
      const c = o.code ? `${o.error} ${o.code}` : o.error;
      errorCodes[c] = (errorCodes[c] ?? 0) + 1;
      // the words of an HTTP error, numbers masked so that alike refusals count together
      if (o.message) {
        const m = `${o.error} ${o.message.replace(/\d+/g, 'N')}`;
        errorMessages[m] = (errorMessages[m] ?? 0) + 1;
      }
    }
    const byKind: Record<string, number> = {};
    for (const k of kills) byKind[k.kind] = (byKind[k.kind] ?? 0) + 1;
    const series = (f: (k: Kill) => number | undefined, kind?: Kind[]) => {
      const xs = kills.filter((k) => !kind || kind.includes(k.kind)).map(f).filter((x): x is number => x !== undefined);
      return { n: xs.length, p50Ms: pct(xs, 0.5), p95Ms: pct(xs, 0.95), maxMs: xs.length ? Math.max(...xs) : null, over1s: xs.filter((x) => x > 1000).length };
    };
    const failed = results.filter((o) => !o.ok && !o.hung).length;
    const broken = results.filter((o) => o.brokenAtMs !== undefined).length;
    const byGatewayDeath = brokenByGatewayDeath(results, kills);
    const { byKind: requestKinds, ...causes } = mixReport(results, kills);
    const report = {
      command: `dynamollm chaos ${process.argv.slice(3).join(' ')}`.trim(),
      durationS, rps, mix, sdkRetries, killEveryS, kinds, natsNodes, gatewayReplicas: replicas, gatewayStandbys: v.gatewayStandbys !== undefined ? Number(v.gatewayStandbys) : 1,
      // the host's 1-minute load average from the load's start to the report, every LOAD_SAMPLE_MS
      loadAverage: loadRange(loads),
      sent: results.length,
      ok: results.filter((o) => o.ok).length,
      failed,
      hung: results.filter((o) => o.hung).length,
      // per kind of request; the failures by cause, and those no server can avoid (chaos-mix.ts failureCause)
      requestKinds, ...causes,
      // of the failed: streams (and answers) whose response had begun and broke before the end and could not be resumed (not resumable, no event id
      // yet, or the resumes spent), and of those the ones a kill of the replica serving them explains (within 2 s of it)
      broken: { total: broken, byGatewayDeath, other: broken - byGatewayDeath },
      // connection refused or reset before any response byte, sent again to the next replica
      clientRetries: results.reduce((n, o) => n + o.retries, 0),
      // requests sent again from the start, their resume refused (404, 410) before they had any text: retried, nothing lost
      clientResent: { resends: results.reduce((n, o) => n + o.resent, 0), okAfterResend: results.filter((o) => o.ok && o.resent > 0).length },
      // streams the client resumed on the next replica (Last-Event-ID), after a break or a retryable error event (chaos-mix.ts resumeFigures)
      resumed: resumeFigures(results),
      // streams that ended with [DONE] but with a token lost or duplicated (words != max_tokens) or their event ids out of order (failed too)
      lostOrDuplicated: results.filter((o) => o.error === 'tokens').length,
      retried: metrics.retries, migrated: metrics.migrated, gatewayResumed: metrics.resumed, heldForReconnect: metrics.held, poolHolds: metrics.poolHolds, electionHolds: metrics.electionHolds, localTokenized: metrics.localTokenized,
      // the scrapes of the gateways' /metrics those counters come from: answered, missed, and the replicas' restarts seen in them
      counterScrapes,
      errors, errorCodes, errorMessages,
      // the gateways' own cause of each refusal, from their 'request refused' lines (up.log at DYNAMOLLM_LOG_LEVEL info)
      refusalCauses: refusalCauses(readFileSync(upLog, 'utf8')),
      kills: { total: kills.length, byKind },
      // of those, the victims paused (SIGSTOP) instead of killed: ended by their supervisor's watchdog (replaced), resumed
      pauses: paused,
      timeToNewLeaderMs: series((k) => k.newLeaderMs, ['cluster', 'pool']),
      // the lease records read: by the watch, by the poll, the watch's starts and failures, the poll's failed reads
      leaseReads: leases?.stats() ?? null,
      timeToLeaveDispatchMs: series((k) => k.outOfDispatchMs, ['instance', 'engine']),
      // the first cluster status answered after those kills: a leave of dispatch is not seen before it
      timeToStatusAfterLeaveMs: series((k) => k.statusAfterMs, ['instance', 'engine']),
      // where requests go: every routing gateway's own view, and the pool leader's dispatch view (chaos-views.ts)
      timeToLeaveGatewayMs: series((k) => k.outOfGatewayMs, ['instance', 'engine']),
      timeToLeavePoolMs: series((k) => k.outOfPoolMs, ['instance', 'engine']),
      // when the harness saw those leaves (the answers' arrival: late while its own connection was down)
      timeToSeeGatewayLeaveMs: series((k) => k.gatewaySeenMs, ['instance', 'engine']),
      timeToSeePoolLeaveMs: series((k) => k.poolSeenMs, ['instance', 'engine']),
      // why the gateways' views dropped the instance (the last gateway's reason per kill), and the views' reads
      gatewayLeaveWhy: countBy(kills.map((k) => k.gatewayOutWhy)),
      // of those figures, the kills whose instance each view had out already when the kill came (0 ms: it was starting or restarting)
      viewOutAtKill: { gateway: kills.filter((k) => k.outOfGatewayMs === 0).length, pool: kills.filter((k) => k.outOfPoolMs === 0).length },
      poolLeaveWhy: countBy(kills.map((k) => k.poolOutWhy)),
      viewReads: leases ? views.stats : null,
      timeToRestartMs: series((k) => k.restartMs),
      timeToServeMs: series((k) => k.servingMs, ['gateway']),
      // gateway kills of a replica's standby process (its port served throughout), of the gateway kills
      gatewayStandbyKills: kills.filter((k) => k.standby).length,
      timeToClusterStatusMs: series((k) => k.statusBackMs, ['nats']),
      killLog: kills,
      // each failure (the first MAX_FAILURES), when it was sent and answered, s after the load began: matched to killLog
      failures: results.filter((o) => !o.ok).slice(0, MAX_FAILURES).map((o) => ({
        sentS: ((o.startMs ?? t0) - t0) / 1000, tookS: ((o.endMs ?? t0) - (o.startMs ?? t0)) / 1000, replica: o.replica, kind: o.kind ?? 'resumable', ...failureCause(o, kills),
        error: o.error ?? (o.hung ? 'hung' : 'failed'), ...(o.code ? { code: o.code } : {}), ...(o.message ? { message: o.message } : {}),
        ...(o.headersMs !== undefined ? { headersS: o.headersMs / 1000 } : {}), ...(o.attempts ? { attempts: o.attempts.map((a) => `${a.replica}:${a.cause}@${a.atMs / 1000}s`) } : {}),
      })),
      loadStartMs: t0,
      upLog,
    };
    const text = JSON.stringify(report, null, 2);
    process.stdout.write(text + '\n');
    if (v.out) writeFileSync(v.out, text + '\n');
    return report.hung === 0 && report.failed === 0 ? 0 : 1;
  } finally {
    await link?.stop();
    await stopUp();
    logFile.end();
  }
}

/** The lease records the harness follows (chaos-leases.ts) and the cluster's pools (lease keys leaseKeys.poolLeader). */
export interface Leases { log: LeaseRecords; pools: readonly string[] }

/**
 * Follows one kill: when the process is back (a new pid under the same kind and id; an engine: a new
 * engine under its instance), when the lease it held was taken again after it (cluster, pool: from the lease
 * records, timeByLeases), and when the instance left the ready set (instance, engine: up to the first status answered
 * after the kill, statusAfterMs, also when that comes after the restart). Gives up after 60 s.
 */
export async function watchKill(k: Kill, tree: () => Proc[], status: () => ClusterStatus | undefined, statusAt: () => number, leases: Leases | undefined, parent?: Proc, gatewayUrl?: string, before: readonly number[] = [k.pid], views?: KillViews): Promise<void> {
  // the pools the victim led by the last cluster status read (the lease records overrule it where they reach back)
  const led = k.kind === 'pool' ? (status()?.pools ?? []).filter((p) => p.leader === k.id).map((p) => p.id) : [];
  if (led.length) k.led = led;
  if (leases) timeByLeases(k, leases.log, leases.pools);
  const until = k.atMs + 60_000;
  const instanceId = k.kind === 'instance' ? k.id : parent?.id;
  const pending = () =>
    // a new leader is awaited only after the kill of one (a standby's kill elects nobody)
    k.restartMs === undefined || (((k.kind === 'cluster' && k.leaderBefore === k.id) || (k.led?.length ?? 0) > 0) && k.newLeaderMs === undefined) || (k.kind === 'nats' && k.statusBackMs === undefined) ||
    (gatewayUrl !== undefined && k.servingMs === undefined);
  // an instance's leave is followed past its restart up to the first status answered after the kill (while no
  // planner serves, the status held is the one read before it): a status then listing it ready, its process back,
  // missed the leave, which gets no figure
  while (Date.now() < until && (pending() || (instanceId !== undefined && k.outOfDispatchMs === undefined && k.statusAfterMs === undefined) || viewsPending(k, views, Date.now()))) {
    await new Promise((r) => setTimeout(r, 100));
    const now = Date.now() - k.atMs;
    // the process tree (a snapshot shared by the watchers) only until the victim is back
    if (k.restartMs === undefined) {
      const procs = tree();
      const back = k.kind === 'engine'
        ? procs.some((p) => p.kind === 'engine' && p.pid !== k.pid && procs.find((q) => q.pid === p.ppid)?.id === instanceId)
        : procs.some((p) => p.kind === k.kind && p.id === k.id && !before.includes(p.pid)); // a new process (a replica's standby was there before)
      if (back) k.restartMs = now;
    }
    if (k.kind === 'nats' && k.restartMs !== undefined && k.statusBackMs === undefined && statusAt() > k.atMs + k.restartMs) k.statusBackMs = statusAt() - k.atMs;
    if (gatewayUrl && k.restartMs !== undefined && k.servingMs === undefined && (await fetch(`${gatewayUrl}/healthz`, { signal: AbortSignal.timeout(500) }).then((r) => r.ok, () => false))) k.servingMs = Date.now() - k.atMs;
    // who led at the kill and who took over, from the records seen so far (those of the kill's time may come late)
    if (leases && k.newLeaderMs === undefined) timeByLeases(k, leases.log, leases.pools);
    if (instanceId && k.statusAfterMs === undefined && statusAt() > k.atMs) k.statusAfterMs = statusAt() - k.atMs;
    if (views) timeByViews(k, views, Date.now());
    const st = status();
    if (!st) continue;
    if (instanceId && k.outOfDispatchMs === undefined) {
      const i = st.pools.flatMap((p) => p.instances).find((x) => x.id === instanceId);
      if (!i || i.state !== 'ready') k.outOfDispatchMs = now;
    }
    if (k.kind !== 'cluster' && k.kind !== 'pool' && !pending() && (!instanceId || k.outOfDispatchMs !== undefined) && !viewsPending(k, views, Date.now())) break;
  }
}

/**
 * A cluster or pool manager's kill read from the lease records (chaos-leases.ts), in place:
 * - who led at the kill: the holder of the record in force at `k.atMs` (cluster: k.leaderBefore, the planner
 *   lease's holder; pool: k.led, the pools whose lease names the victim, and k.leaderBefore their holders). A key
 *   whose records do not reach back to the kill leaves the cluster status's reading; a release ('') or a lease that
 *   had lapsed by the kill (its holder cut off from JetStream) names nobody;
 * - after a leader's kill, k.newLeaderMs: ms from the kill to the acquisition of the next term (the record's own
 *   acquiredMs, which every record of that term carries: exact even when the acquisition's own record was
 *   overwritten before the harness read it), and k.newLeader who took it; for a pool manager, once every pool
 *   it led has one (the latest of them). A kill that the records show was a standby's has neither.
 */
export function timeByLeases(k: Kill, log: LeaseRecords, pools: readonly string[]): void {
  if (k.kind !== 'cluster' && k.kind !== 'pool') return;
  const around = (key: string) => leaseAround(log.records(key), k.atMs);
  const holder = (r: LeaseRecord | undefined) => (r && r.expiresMs >= k.atMs ? r.holder : '');
  let took: { holder: string; acquiredMs: number; pool?: string }[] | undefined;
  if (k.kind === 'cluster') {
    const { at, next } = around(leaseKeys.clusterPlanner());
    if (at) k.leaderBefore = holder(at) || undefined;
    if (k.leaderBefore === k.id && next) took = [{ holder: next.holder, acquiredMs: next.acquiredMs }];
  } else {
    const per = pools.map((pool) => ({ pool, ...around(leaseKeys.poolLeader(pool)) }));
    if (per.some((x) => x.at)) {
      const led = per.filter((x) => holder(x.at) === k.id);
      if (led.length) k.led = led.map((x) => x.pool);
      else delete k.led;
      k.leaderBefore = per.map((x) => holder(x.at)).join(',');
    }
    const led = per.filter((x) => k.led?.includes(x.pool));
    if (led.length && led.every((x) => x.next)) took = led.map((x) => ({ pool: x.pool, holder: x.next!.holder, acquiredMs: x.next!.acquiredMs }));
  }
  if (!took) {
    delete k.newLeaderMs;
    delete k.newLeader;
    return;
  }
  // an acquisition under way at the kill (a lease that had lapsed just before it) counts as at the kill
  k.newLeaderMs = Math.max(0, Math.max(...took.map((t) => t.acquiredMs)) - k.atMs);
  k.newLeader = took.map((t) => (t.pool === undefined ? t.holder : `${t.pool}:${t.holder}`)).join(',');
}

/**
 * `dynamollm up [--config FILE]`: a whole local cluster in one command.
 * 1. NATS, secure by default: without --nats (or NATS_URL / nats.url) start a private nats-server on
 *    127.0.0.1 and a free port, with a config generated from protocols/permissions.ts: one account named
 *    by the cluster id, one nkey user per actor limited to its own rights, seeds in the state directory
 *    (<run-dir>/<cluster id>-<pid>/, removed on stop; never committed). Given a URL, refuse to start when
 *    that server lets an anonymous client in, unless --insecure-nats (then status and the dashboard warn).
 * 2. Supervisor (restarts crashed children with backoff up to a cap, and never gives up; kills and restarts a child
 *    that stopped answering its liveness probes: liveness.watchdog, src/policy/watchdog.ts) starting, in
 *    order: a cluster manager and a pool manager, then a standby of each (it takes the leader's lease when
 *    that one dies; --standbys 0 for none), one node agent per configured server (each starts the instance
 *    managers and their engines the cluster plan asks for), then the gateway replica(s), each with a standby process
 *    that takes its port over when the serving one dies (--gateway-standbys: 1 by default, 0 for none, up to 3).
 *    A restart waits 250 ms after a stable run (the child said it was ready, or lived past the cap) and backs off
 *    to 5 s after failed starts (src/policy/restart-backoff.ts).
 * 3. Waits until the cluster reports a ready instance and a first request (one token through the gateway, marked
 *    as a readiness probe: not counted as traffic)
 *    succeeds end to end, then prints "cluster ready" with the endpoint and dashboard URLs.
 * Ctrl-C (SIGINT) or SIGTERM drains and stops everything in reverse order: the gateway(s) (stop intake, finish
 * streams), the node agents (drain their instance managers, stop the engines), the managers, then NATS, which
 * runs in its own process group so the terminal's Ctrl-C does not reach it first. A second Ctrl-C kills at once.
 * Logs are pretty on a terminal (the children's too), JSON lines otherwise (env DYNAMOLLM_LOG_PRETTY=1|0 forces).
 *
 * The config file is the shared cluster config (actors/common/config.ts) plus an optional `gateway:`
 * section (actors/gateway/config.ts); see deploy/local.yaml. Without --config: Llama2-70B on 4 emulated
 * 8xH100 servers, time-scale 1, gateway on :8000.
 */
import { existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { num, oneOf, positiveNum, readConfigFile, UsageError } from '../args.ts';
import { action, type ExitCode } from '../program.ts';
import { createLogger } from '../../runtime/logger.ts';
import { defaultRunDir, ensurePrivateDir, UnsafeDirError, writePrivateFile } from '../../runtime/private-dir.ts';
import { checkAuthorization, startOwnNats, startOwnNatsCluster, type NatsHandle } from '../../runtime/nats-launcher.ts';
import { localClusterAuth, renderServerConfig } from '../../runtime/nats-server-config.ts';
import { actorNatsSettings, NATS_ENV_NAMES, settingsEnv, type NatsSettings } from '../../runtime/nats-settings.ts';
import { inboxPrefix } from '../../../protocols/permissions.ts';
import { checkProfileCovers, ConfigError, poolsOf, profilePathOf } from '../../../actors/common/config.ts';
import { loadProfile } from '../../telemetry/profile-io.ts';
import { Supervisor, type ChildSpec } from '../../runtime/supervisor.ts';
import { Bus } from '../../runtime/bus.ts';
import { ClusterStatus, StatusRequest } from '../../../protocols/messages.ts';
import { leasePlacementTag, subjects } from '../../../protocols/subjects.ts';
import { applyOverrides, splitConfig, type GatewaySettings } from '../../../actors/gateway/config.ts';
import { launchArgs } from '../../../actors/common/launch-args.ts';
import { gatewayShutdownLimitMs } from '../../../actors/gateway/deadlines.ts';
import { GATEWAY_NODE_FLAGS_ENV, gatewayNodeFlags } from '../../../actors/gateway/node-flags.ts';
import { NODE_AGENT_SHUTDOWN_LIMIT_MS } from '../../../actors/node-agent/deadlines.ts';
import { KILL_MARGIN_MS, shutdownLimitMs } from '../../runtime/actor.ts';
import { cliArgs, REPO_ROOT } from '../../runtime/code-path.ts';

const REPO = REPO_ROOT;


const INSECURE_WARNING = 'NATS does not enforce authorization (--insecure-nats): anyone who reaches it can read every prompt, change GPU clocks and stop instances';

interface UpOptions {
  config?: string;
  nats?: string;
  port?: string;
  runDir?: string;
  readyTimeout: string;
  standbys: string;
  gatewayStandbys: string;
  insecureNats?: boolean;
  natsNodes: string;
  logLevel?: string;
}

/** The JetStream replicas of `up`'s private NATS of `natsNodes` servers (its buckets, streams and lease layout). */
export function upJetstreamReplicas(natsNodes: number): number {
  return natsNodes === 1 ? 1 : 3;
}

export function register(cmd: Command, exit: ExitCode): void {
  cmd
    .option('--config <file>', 'cluster config (YAML/JSON; see deploy/local.yaml). Default: Llama2-70B on 4 emulated 8xH100')
    .option('--nats <url>', 'use this NATS server (also NATS_URL or nats.url); it must refuse anonymous clients. Default: start a private nats-server with per-actor credentials')
    .option('--insecure-nats', 'run on a server that does not enforce authorization (warned at start, in status, dashboard)')
    .option('--nats-nodes <n>', 'servers of the private NATS: 1, or 3 / 5 clustered on this host with JetStream R3 (one may die without an outage)', '1')
    .option('--port <n>', 'gateway HTTP port (overrides gateway.port). Default 8000')
    .option('--run-dir <dir>', 'where the derived actor config and NATS data go. Default $TMPDIR/dynamollm-<uid>/ (made 0700; a folder of another user or writable by others is refused)')
    .option('--ready-timeout <s>', 'how long to wait for the first request to succeed, s', '600')
    .option('--standbys <n>', 'standby cluster managers and standby pool managers (each takes over its leader\'s lease)', '1')
    .option('--gateway-standbys <n>', 'standby processes per gateway replica (0..3): started and waiting, one takes the replica\'s port over when the serving process dies (gateway.standby; not with gateway.workers above 1 or port 0)', '1')
    .option('--log-level <level>', 'log level of up itself (the actors: env DYNAMOLLM_LOG_LEVEL, default warn)')
    .action(action(exit, (values: UpOptions) => up(values)));
}

/** pino's levels, as --log-level takes them. */
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

async function up(values: UpOptions): Promise<number> {
  // the flags up reads first are checked before anything starts
  const logLevel = values.logLevel !== undefined ? oneOf(values.logLevel, 'log-level', LOG_LEVELS) : undefined;
  const readyTimeoutS = positiveNum(values.readyTimeout, 'ready-timeout');
  const log = createLogger({ level: logLevel ?? process.env.DYNAMOLLM_LOG_LEVEL ?? 'info', name: 'up' });
  const raw = ((values.config ? readConfigFile(values.config) : undefined) ?? {}) as Record<string, unknown>;
  const where = values.config ? `config ${values.config}` : 'default config';
  // validate once here so a bad file fails before anything starts
  const first = splitConfig(raw, where);
  const rawNats = (raw.nats ?? {}) as { url?: string | string[] };
  // a server named anywhere (flag, env, config) is used as given; none: up starts its own
  const givenUrl = values.nats ?? (process.env.NATS_URL || undefined) ?? (rawNats.url !== undefined ? ([] as string[]).concat(rawNats.url).join(',') : undefined);
  const clusterRaw: Record<string, unknown> = { ...first.clusterRaw, nats: { ...first.cluster.nats } };
  if (!first.cluster.profile) {
    // shipped profiles are named <model>.<gpu>.json
    const shipped = join(REPO, 'profiles', `${first.cluster.model}.${first.cluster.gpu}.json`);
    if (existsSync(shipped)) clusterRaw.profile = shipped;
  }
  const { cluster, gateway } = splitConfig({ ...clusterRaw, gateway: (raw as { gateway?: unknown }).gateway }, where);
  // a profile that lacks the TP the instances start with (or is for another model/GPU) is refused before anything starts
  const ppath = profilePathOf(cluster);
  if (existsSync(resolve(REPO, ppath)) || existsSync(ppath)) {
    try {
      checkProfileCovers(loadProfile(existsSync(ppath) ? ppath : resolve(REPO, ppath)), [cluster.engine.initialTp], ppath, cluster);
    } catch (err) {
      throw new UsageError(`${where}: ${(err as Error).message}`);
    }
  }
  const port = values.port !== undefined ? num(values.port, 'port') : gateway.port;
  // the gateway's settings as its processes will read them (the file, --port, env DYNAMOLLM_API_KEYS), through its
  // own schema and exposure check before anything starts: a setting it refuses would fail every restart of it
  let settings: GatewaySettings;
  try {
    settings = applyOverrides(gateway, { port: String(port) });
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(`${values.port !== undefined ? `--port ${values.port}` : where}: ${err.message}`);
    throw err;
  }
  if (port !== 0 && port + settings.replicas - 1 > 65535) {
    throw new UsageError(`--port ${port} with ${settings.replicas} gateway replicas needs ports ${port}..${port + settings.replicas - 1}: the last must be at most 65535`);
  }
  const standbys = num(values.standbys, 'standbys');
  const natsNodes = num(values.natsNodes, 'nats-nodes');
  if (![1, 3, 5].includes(natsNodes)) throw new UsageError(`--nats-nodes must be 1, 3 or 5, got ${values.natsNodes}`);
  if (!Number.isInteger(standbys) || standbys < 0 || standbys > 8) throw new UsageError(`--standbys must be an integer 0..8, got ${values.standbys}`);
  const gatewayStandbys = num(values.gatewayStandbys, 'gateway-standbys');
  if (!Number.isInteger(gatewayStandbys) || gatewayStandbys < 0 || gatewayStandbys > 3) throw new UsageError(`--gateway-standbys must be an integer 0..3, got ${values.gatewayStandbys}`);
  // a standby waits for its replica's port: a worker pool shares its port through its primary, port 0 is none in particular
  const gatewayStandby = gatewayStandbys > 0 && gateway.workers === 1 && port !== 0;
  // each replica's processes, by supervisor child name: gateway-<i>, then gateway-<i>-standby, gateway-<i>-standby-2, ...
  const gatewayChildren = (i: number) => [`gateway-${i}`, ...Array.from({ length: gatewayStandby ? gatewayStandbys : 0 }, (_, k) => `gateway-${i}-standby${k ? `-${k + 1}` : ''}`)];
  // the managers: index 0 leads first, the others are standbys with warm state (same config, same roles)
  const managers = Array.from({ length: standbys + 1 }, (_, i) => i);

  // the derived configs carry the gateway's keys: a folder only this user can read and change (src/runtime/private-dir.ts)
  const runDir = resolve(values.runDir ?? defaultRunDir());
  try {
    ensurePrivateDir(runDir);
  } catch (e) {
    if (e instanceof UnsafeDirError) throw new UsageError(e.message);
    throw e;
  }
  const clusterId = cluster.clusterId;
  const stateDir = join(runDir, `${clusterId}-${process.pid}`);

  // NATS: a private server with per-actor credentials, or a given one that must enforce authorization
  let nats: NatsHandle;
  let natsUrl: string;
  /** the NATS env of each child (by child name); undefined: the child reads config/env as given. */
  const childNats = new Map<string, NatsSettings>();
  let observer: NatsSettings;
  let insecure = false;
  if (givenUrl === undefined) {
    const auth = localClusterAuth(
      {
        clusterId,
        clusterManagers: managers.map((i) => `cm-${i}`),
        poolManagers: managers.map((i) => `pm-${i}`),
        gateways: Array.from({ length: gateway.replicas }, (_, i) => `gw-${i}`),
        gatewayWorkers: gateway.workers,
        nodes: cluster.servers,
        pools: poolsOf(cluster).map((p) => p.id),
      },
      join(stateDir, 'keys'),
    );
    const nodeConf = (node?: { index: number; cluster: { name: string; listen: string; routes: string[] } }) =>
      renderServerConfig({
        header: [`dynamollm up: private server of cluster ${clusterId}${node ? `, node ${node.index} of ${natsNodes}` : ''} (generated; per-actor nkey users)`],
        listen: '127.0.0.1:4222',
        serverName: `dynamollm-${clusterId}${node ? `-${node.index}` : ''}`,
        // each node its own lease bucket (src/runtime/lease.ts: a lease is held on a majority of them)
        ...(node ? { serverTags: [leasePlacementTag(node.index)] } : {}),
        storeDir: join(stateDir, 'jetstream'),
        accounts: [auth.account],
        ...(node ? { cluster: node.cluster } : {}),
      });
    let servers: string[];
    if (natsNodes === 1) {
      nats = await startOwnNats({ conf: nodeConf(), dir: stateDir, log, watchdog: cluster.liveness.watchdog });
      servers = [nats.url];
    } else {
      const c = await startOwnNatsCluster({ conf: nodeConf, nodes: natsNodes, name: `dynamollm-${clusterId}`, dir: stateDir, log, watchdog: cluster.liveness.watchdog });
      nats = c;
      servers = c.urls;
    }
    natsUrl = servers.join(',');
    const key = (k: string) => ({ servers, nkey: auth.creds.get(k)!.nkeyFile });
    for (const i of managers) {
      childNats.set(`cluster-${i}`, key(`cluster/cm-${i}`));
      childNats.set(`pool-${i}`, key(`pool/pm-${i}`));
    }
    for (const s of cluster.servers) childNats.set(`node-${s.id}`, key(`node/${s.id}`));
    for (let i = 0; i < gateway.replicas; i++) {
      for (const name of gatewayChildren(i)) childNats.set(name, key(`gateway/gw-${i}`));
    }
    observer = key('observer/');
    // the store lives in the state directory of this run (removed on stop): whatever it holds is this run's
    clusterRaw.nats = { url: servers, instanceKeysDir: auth.instanceKeysDir, jetstreamReplicas: upJetstreamReplicas(natsNodes), ownStore: true };
  } else {
    natsUrl = givenUrl;
    const servers = givenUrl.split(',');
    const check = await checkAuthorization(servers);
    if (check.verdict === 'unreachable') {
      throw new UsageError(`no NATS server answers at ${givenUrl} (${check.message}). Omit --nats (and NATS_URL / nats.url) to let up start its own.`);
    }
    if (check.verdict === 'open') {
      if (!values.insecureNats) {
        throw new UsageError(
          `the NATS server at ${givenUrl} lets anonymous clients in: anyone who reaches it could read every prompt, change GPU ` +
            `clocks and stop instances, so up refuses to run a cluster there. Either omit --nats (up starts its own server with ` +
            `per-actor credentials), or enable authorization on that server (a config generated from the project's roles: ` +
            `nats.conf, see README "Security") and give credentials (NATS_USER/NATS_PASSWORD, NATS_CREDS, NATS_NKEY or nats.roles), ` +
            `or pass --insecure-nats to run anyway.`,
        );
      }
      insecure = true;
      process.stderr.write(`dynamollm: WARNING: ${INSECURE_WARNING}\n`);
    }
    nats = { url: givenUrl, started: false, stop: async () => {} };
    clusterRaw.nats = { ...first.cluster.nats, url: servers, insecure };
    observer = actorNatsSettings('observer', { flags: { nats: givenUrl }, config: first.cluster.nats });
  }

  const clusterFile = join(runDir, `cluster-${process.pid}.json`);
  // the pool leaders hold a request while no instance is ready as long as the gateway waits for it (holdLimitMs)
  writePrivateFile(clusterFile, JSON.stringify({ ...clusterRaw, gateway: { holdLimitMs: gateway.holdLimitMs } }, null, 2));
  const gatewayFile = join(runDir, `gateway-${process.pid}.json`);
  writePrivateFile(gatewayFile, JSON.stringify({ ...clusterRaw, gateway: { ...gateway, port } }, null, 2));


  // the children's output passes through up: on a terminal their logs are pretty too (DYNAMOLLM_LOG_PRETTY wins)
  const env = { DYNAMOLLM_LOG_LEVEL: process.env.DYNAMOLLM_LOG_LEVEL ?? 'warn', DYNAMOLLM_LOG_PRETTY: process.env.DYNAMOLLM_LOG_PRETTY ?? (process.stdout.isTTY ? '1' : '0') };
  const node = process.execPath;
  // each child's grace before SIGKILL: its actor's shutdown bound by its deadlines plus KILL_MARGIN_MS (the managers run
  // with the default deadlines; a node agent waits out its instance managers' drains and engines' stops)
  const grace = { manager: shutdownLimitMs({}) + KILL_MARGIN_MS, node: NODE_AGENT_SHUTDOWN_LIMIT_MS + KILL_MARGIN_MS, gateway: gatewayShutdownLimitMs(settings) + KILL_MARGIN_MS };
  const children: ChildSpec[] = [
    ...managers.flatMap((i): ChildSpec[] => [
      { name: `cluster-${i}`, group: 'cluster', command: node, args: launchArgs('cluster', ['--id', `cm-${i}`, '--config', clusterFile]), env, cwd: REPO, stopGraceMs: grace.manager },
      { name: `pool-${i}`, group: 'pool', command: node, args: launchArgs('pool', ['--id', `pm-${i}`, '--config', clusterFile]), env, cwd: REPO, stopGraceMs: grace.manager },
    ]),
    ...cluster.servers.map((s): ChildSpec => ({ name: `node-${s.id}`, command: node, args: launchArgs('node', ['--id', s.id, '--config', clusterFile]), env, cwd: REPO, stopGraceMs: grace.node })),
  ];
  // the readiness probe's token, for this run's gateways and up's first request only: no client can mark a probe
  const probeToken = randomBytes(24).toString('hex');
  // each replica: its process, and with gateway standbys more under the same id and credentials that wait for the
  // port; whichever holds it serves, and the one restarted after a death becomes a standby
  for (let i = 0; i < gateway.replicas; i++) {
    for (const name of gatewayChildren(i)) {
      children.push({
        name,
        group: `gateway-${i}`,
        command: node,
        args: [...gatewayNodeFlags(process.env[GATEWAY_NODE_FLAGS_ENV]), ...cliArgs(), 'actor', 'gateway', '--id', `gw-${i}`, '--config', gatewayFile, '--set', `port=${port === 0 ? 0 : port + i}`, ...(gatewayStandby ? ['--set', 'standby=true'] : [])],
        env: { ...env, DYNAMOLLM_PROBE_TOKEN: probeToken },
        cwd: REPO,
        stopGraceMs: grace.gateway,
      });
    }
  }
  // each child beats for the supervisor's liveness watchdog (a stopped or stuck one is killed and restarted)
  const liveDir = join(runDir, `live-${process.pid}`);
  for (const c of children) c.liveness = { file: join(liveDir, c.name) };
  // each child connects with its own credentials only: the NATS env of up's shell is cleared for it
  for (const c of children) {
    const s = childNats.get(c.name);
    if (s) c.env = { ...c.env, ...Object.fromEntries(NATS_ENV_NAMES.map((n) => [n, ''])), ...settingsEnv(s) };
  }
  // restarts back off to 5 s after failed starts and never stop (src/policy/restart-backoff.ts); a standby leads while its
  // peer is down, and the last process of a group (a role's managers, a gateway replica's processes) that was killed
  // is restarted without backoff
  const sup = new Supervisor({ children, log, backoff: { initialMs: 250, maxMs: 5000 }, watchdog: cluster.liveness.watchdog });
  sup.on('flapping', (e: { name: string; delayMs: number }) => log.error({ child: e.name, everyMs: e.delayMs }, 'child keeps crashing; still restarting it (see its log above)'));

  let stopping: Promise<void> | null = null;
  const stopAll = () =>
    (stopping ??= (async () => {
      // the order: the gateway(s) stop intake and drain their streams, then the node agents drain their instance
      // managers and stop the engines, then the managers, then NATS (the supervisor stops in reverse start order;
      // NATS and the engines run in their own process groups and the supervised actors ignore SIGINT, so the
      // terminal's Ctrl-C reaches only up, which stops them in this order)
      process.stderr.write('\ndynamollm: draining and stopping: gateway, instances and engines, managers, NATS (Ctrl-C again to kill)...\n');
      const onExit = (e: { name: string; code: number | null; signal: string | null }) =>
        process.stderr.write(`dynamollm: stopped ${e.name}${e.code !== null && e.code !== 0 ? ` (exit ${e.code})` : e.signal ? ` (${e.signal})` : ''}\n`);
      sup.on('exit', onExit);
      await sup.stop();
      sup.off('exit', onExit);
      await nats.stop();
      rmSync(liveDir, { recursive: true, force: true });
      if (nats.started) {
        rmSync(stateDir, { recursive: true, force: true });
        process.stderr.write('dynamollm: stopped NATS\n');
      }
      process.stderr.write('dynamollm: stopped\n');
    })());
  let signals = 0;
  const done = new Promise<void>((resolveDone) => {
    const onSignal = () => {
      signals++;
      if (signals > 1) process.exit(130);
      void stopAll().then(resolveDone);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });

  await sup.start();
  const host = gateway.host === '0.0.0.0' ? '127.0.0.1' : gateway.host;
  process.stdout.write(
    `dynamollm: starting ${cluster.servers.length} server(s) x ${cluster.servers[0]!.gpus} ${cluster.gpu} (${cluster.gpuBackend}), ` +
      `model ${cluster.model}, engine ${cluster.engine.kind}${cluster.engine.kind === 'emulator' ? ` (time-scale ${cluster.engine.timeScale})` : ''}; ` +
      `NATS ${natsUrl}${nats.started ? ` (private, cluster ${clusterId}, per-actor credentials in ${stateDir})` : insecure ? ' (INSECURE: no authorization)' : ''}\n`,
  );
  const observerEnv = nats.started ? `NATS_URL=${natsUrl} NATS_NKEY=${observer.nkey} ` : '';
  const gwUrl = port === 0 ? undefined : `http://${host}:${port}`;
  const model = (gateway.models ?? [cluster.model])[0]!;
  const readyBy = Date.now() + readyTimeoutS * 1000;
  void (async () => {
    const st = await waitReady(observer, readyBy - Date.now(), () => stopping !== null);
    // "ready" means a request went through end to end: gateway, cluster manager, instance manager, engine
    const first = st && gwUrl ? await firstRequest(gwUrl, model, gateway.apiKeys[0], probeToken, readyBy, () => stopping !== null) : null;
    if (stopping) return;
    if (!st || (gwUrl && !first)) {
      process.stdout.write(`dynamollm: ${st ? 'no request succeeded' : 'no instance became ready'} within ${readyTimeoutS} s; still running (check the logs above)\n`);
      return;
    }
    const inst = st.pools.flatMap((p) => p.instances);
    const shown = gwUrl ?? '(gateway on a random port: see its log)';
    process.stdout.write(
      `dynamollm: cluster ready: ${inst.length} instance(s) in ${st.pools.length} pool(s)` +
        (first ? `; a first request answered end to end in ${first.ms} ms` : ' (gateway port unknown: no request sent)') +
        `\n` +
        `  OpenAI endpoint  ${shown}/v1   (model '${model}'${gateway.apiKeys.length ? ', API key required' : ''})\n` +
        `  dashboard        ${shown}/\n` +
        `  metrics          ${shown}/metrics\n` +
        `  replay a trace   dynamollm replay --trace data/traces/AzureLLMInferenceTrace_conv.csv --url ${shown} --speed 10 --limit 500\n` +
        `  status           ${observerEnv}dynamollm status   |   dynamollm top\n` +
        (insecure ? `  WARNING          ${INSECURE_WARNING}\n` : ''),
    );
  })();
  await done;
  return 0;
}

/** Sends a one-token completion until one succeeds (200 with a choice); null on timeout or when stopped. */
async function firstRequest(url: string, model: string, apiKey: string | undefined, probeToken: string, until: number, stopped: () => boolean): Promise<{ ms: number } | null> {
  while (Date.now() < until && !stopped()) {
    const t0 = Date.now();
    try {
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        // marked as a readiness probe with this run's probe token: served end to end, not counted as the cluster's
        // traffic (its first admission would start the pools' re-shard epochs before the first real request)
        headers: { 'content-type': 'application/json', 'x-dynamollm-probe': probeToken, ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}) },
        body: JSON.stringify({ model, prompt: 'ping', max_tokens: 1 }),
        signal: AbortSignal.timeout(Math.max(1000, Math.min(30_000, until - Date.now()))),
      });
      const body = (await res.json().catch(() => null)) as { choices?: unknown[] } | null;
      if (res.ok && (body?.choices?.length ?? 0) > 0) return { ms: Date.now() - t0 };
    } catch {
      // the gateway is not listening yet, or the request timed out
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return null;
}

/** Polls the cluster status until an instance is ready; null on timeout or when stopped. */
async function waitReady(settings: NatsSettings, timeoutMs: number, stopped: () => boolean): Promise<ClusterStatus | null> {
  const until = Date.now() + timeoutMs;
  let bus: Bus | undefined;
  try {
    while (Date.now() < until && !stopped()) {
      try {
        bus ??= await Bus.connect({ settings, name: 'up-status', inboxPrefix: inboxPrefix('observer', `up-${process.pid}`), log: createLogger({ level: 'silent' }), reconnect: true });
        const st = await bus.request(subjects.clusterStatus(), StatusRequest, { v: 1 }, ClusterStatus, { timeoutMs: 1000 });
        if (st.pools.some((p) => p.instances.some((i) => i.state === 'ready' || i.state === 'running'))) return st;
      } catch {
        // leader not elected yet, or NATS not reachable yet
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    return null;
  } finally {
    await bus?.close().catch(() => {});
  }
}

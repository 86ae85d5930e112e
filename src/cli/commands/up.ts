/**
 * `dynamollm up [--config FILE]`: a whole local cluster in one command.
 * 1. NATS: use the server at nats.url if one answers, else start `nats-server -c nats.conf` (with install
 *    hints when the binary is missing).
 * 2. Supervisor (restarts crashed children with backoff) starting, in order: cluster manager, pool manager,
 *    one node agent per configured server (each starts the instance managers and their engines the
 *    cluster plan asks for), then the gateway replica(s).
 * 3. Waits until the cluster reports a ready instance and prints the endpoint and dashboard URLs.
 * Ctrl-C (SIGINT) or SIGTERM drains and stops everything in reverse order; a second Ctrl-C kills at once.
 *
 * The config file is the shared cluster config (actors/common/config.ts) plus an optional `gateway:`
 * section (actors/gateway/config.ts); see deploy/local.yaml. Without --config: Llama2-70B on 4 emulated
 * 8xH100 servers, time-scale 1, gateway on :8000.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { parse, num, readConfigFile, UsageError } from '../args.ts';
import { createLogger } from '../../runtime/logger.ts';
import { ensureNats, type NatsHandle } from '../../runtime/nats-launcher.ts';
import { Supervisor, type ChildSpec } from '../../runtime/supervisor.ts';
import { Bus } from '../../runtime/bus.ts';
import { ClusterStatus, StatusRequest } from '../../../protocols/messages.ts';
import { subjects } from '../../../protocols/subjects.ts';
import { splitConfig } from '../../../actors/gateway/config.ts';
import { launchArgs } from '../../../actors/common/launch-args.ts';
import { cliArgs, REPO_ROOT } from '../../runtime/code-path.ts';

export const summary = 'start a local cluster: NATS, managers, emulated engines, gateway + dashboard';

const REPO = REPO_ROOT;

const USAGE = `usage: dynamollm up [--config FILE] [--nats URL] [--port N] [--run-dir DIR] [--ready-timeout S] [--log-level L]
  --config FILE       cluster config (YAML/JSON; see deploy/local.yaml). Default: Llama2-70B on 4 emulated 8xH100.
  --nats URL          NATS URL (overrides nats.url). Default nats://127.0.0.1:4222.
  --port N            gateway HTTP port (overrides gateway.port). Default 8000.
  --run-dir DIR       where the derived actor config and NATS data go. Default $TMPDIR/dynamollm/
  --ready-timeout S   how long to wait for the first ready instance, s. Default 600.
  --no-nats-start     fail instead of starting nats-server when none answers.`;

/** Local default credentials of nats.conf: control-plane actors share one account (admin), the gateway has its role. */
const LOCAL_ADMIN = { user: 'admin', pass: 'admin-local' };
const LOCAL_GATEWAY = { user: 'gateway', pass: 'gateway-local' };
/** control-plane roles of nats.conf (users cluster/pool/instance/node, passwords <role>-local). */
const LOCAL_ROLES = ['cluster', 'pool', 'instance', 'node'] as const;

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    config: { type: 'string' },
    nats: { type: 'string' },
    port: { type: 'string' },
    'run-dir': { type: 'string' },
    'ready-timeout': { type: 'string' },
    'no-nats-start': { type: 'boolean' },
    'log-level': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const log = createLogger({ level: values['log-level'] ?? process.env.DYNAMOLLM_LOG_LEVEL ?? 'info', name: 'up' });
  const raw = ((values.config ? readConfigFile(values.config) : undefined) ?? {}) as Record<string, unknown>;
  const where = values.config ? `config ${values.config}` : 'default config';
  // validate once here so a bad file fails before anything starts
  const first = splitConfig(raw, where);
  const natsUrl = values.nats ?? (Array.isArray(first.cluster.nats.url) ? first.cluster.nats.url[0]! : first.cluster.nats.url);
  const clusterRaw: Record<string, unknown> = {
    ...first.clusterRaw,
    nats: {
      ...first.cluster.nats, url: natsUrl, user: first.cluster.nats.user ?? LOCAL_ADMIN.user, pass: first.cluster.nats.pass ?? LOCAL_ADMIN.pass,
      // each control-plane actor connects as its own nats.conf role user (least privilege); local defaults
      // unless the config names roles or its own user (a deployment with its own credentials)
      roles: first.cluster.nats.roles ?? (first.cluster.nats.user ? undefined : Object.fromEntries(LOCAL_ROLES.map((r) => [r, { user: r, pass: `${r}-local` }]))),
    },
  };
  if (!first.cluster.profile) {
    // shipped profiles are named <model>.<gpu>.json
    const shipped = join(REPO, 'profiles', `${first.cluster.model}.${first.cluster.gpu}.json`);
    if (existsSync(shipped)) clusterRaw.profile = shipped;
  }
  const { cluster, gateway } = splitConfig({ ...clusterRaw, gateway: (raw as { gateway?: unknown }).gateway }, where);
  const port = values.port !== undefined ? num(values.port, 'port') : gateway.port;
  const readyTimeoutS = num(values['ready-timeout'], 'ready-timeout', 600);

  const runDir = resolve(values['run-dir'] ?? join(tmpdir(), 'dynamollm'));
  mkdirSync(runDir, { recursive: true });
  const clusterFile = join(runDir, `cluster-${process.pid}.json`);
  writeFileSync(clusterFile, JSON.stringify(clusterRaw, null, 2));
  const gatewayFile = join(runDir, `gateway-${process.pid}.json`);
  writeFileSync(gatewayFile, JSON.stringify({ ...clusterRaw, gateway: { ...gateway, port } }, null, 2));

  let nats: NatsHandle;
  if (values['no-nats-start']) {
    nats = await ensureNats({ url: natsUrl, log, bin: '/nonexistent/nats-server-disabled' }).catch(() => {
      throw new UsageError(`no NATS server answers at ${natsUrl} (and --no-nats-start was given)`);
    });
  } else {
    nats = await ensureNats({ url: natsUrl, confPath: join(REPO, 'nats.conf'), storeDir: join(runDir, 'nats'), log });
  }

  const env = { DYNAMOLLM_LOG_LEVEL: process.env.DYNAMOLLM_LOG_LEVEL ?? 'warn' };
  const node = process.execPath;
  const children: ChildSpec[] = [
    { name: 'cluster-0', command: node, args: launchArgs('cluster', ['--id', 'cm-0', '--config', clusterFile]), env, cwd: REPO },
    { name: 'pool-0', command: node, args: launchArgs('pool', ['--id', 'pm-0', '--config', clusterFile]), env, cwd: REPO },
    ...cluster.servers.map((s): ChildSpec => ({ name: `node-${s.id}`, command: node, args: launchArgs('node', ['--id', s.id, '--config', clusterFile]), env, cwd: REPO, stopGraceMs: 20_000 })),
  ];
  const gwCreds = { user: process.env.DYNAMOLLM_GATEWAY_NATS_USER ?? LOCAL_GATEWAY.user, pass: process.env.DYNAMOLLM_GATEWAY_NATS_PASS ?? LOCAL_GATEWAY.pass };
  for (let i = 0; i < gateway.replicas; i++) {
    children.push({
      name: `gateway-${i}`,
      command: node,
      args: [...cliArgs(), 'actor', 'gateway', '--id', `gw-${i}`, '--config', gatewayFile, '--nats', natsUrl, '--user', gwCreds.user, '--pass', gwCreds.pass, '--set', `port=${port === 0 ? 0 : port + i}`],
      env,
      cwd: REPO,
      stopGraceMs: 20_000,
    });
  }
  const sup = new Supervisor({ children, log });
  sup.on('gave_up', (e: { name: string }) => log.error({ child: e.name }, 'child keeps crashing; given up (see its log above)'));

  let stopping: Promise<void> | null = null;
  const stopAll = () =>
    (stopping ??= (async () => {
      process.stderr.write('\ndynamollm: draining and stopping (Ctrl-C again to kill)...\n');
      await sup.stop();
      await nats.stop();
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
      `model ${cluster.model}, engine ${cluster.engine.kind}${cluster.engine.kind === 'emulator' ? ` (time-scale ${cluster.engine.timeScale})` : ''}; NATS ${natsUrl}${nats.started ? ' (started)' : ''}\n`,
  );
  void waitReady(natsUrl, clusterRaw.nats as { user: string; pass: string }, readyTimeoutS * 1000, () => stopping !== null).then((st) => {
    if (stopping) return;
    if (!st) {
      process.stdout.write(`dynamollm: no instance became ready within ${readyTimeoutS} s; still waiting (check the logs above)\n`);
      return;
    }
    const inst = st.pools.flatMap((p) => p.instances);
    const gwUrl = port === 0 ? '(gateway on a random port: see its log)' : `http://${host}:${port}`;
    process.stdout.write(
      `dynamollm: cluster ready: ${inst.length} instance(s) in ${st.pools.length} pool(s)\n` +
        `  OpenAI endpoint  ${gwUrl}/v1   (model '${(gateway.models ?? [cluster.model])[0]}'${gateway.apiKeys.length ? ', API key required' : ''})\n` +
        `  dashboard        ${gwUrl}/\n` +
        `  metrics          ${gwUrl}/metrics\n` +
        `  replay a trace   dynamollm replay --trace data/traces/AzureLLMInferenceTrace_conv.csv --url ${gwUrl} --speed 10 --limit 500\n` +
        `  status           dynamollm status   |   dynamollm top\n`,
    );
  });
  await done;
  return 0;
}

/** Polls the cluster status until an instance is ready; null on timeout or when stopped. */
async function waitReady(url: string, creds: { user: string; pass: string }, timeoutMs: number, stopped: () => boolean): Promise<ClusterStatus | null> {
  const until = Date.now() + timeoutMs;
  let bus: Bus | undefined;
  try {
    while (Date.now() < until && !stopped()) {
      try {
        bus ??= await Bus.connect({ servers: url, name: 'up-status', ...creds, log: createLogger({ level: 'silent' }), reconnect: true });
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

/**
 * `dynamollm telemetry [--follow] [--json] [--requests]`: the cluster's, pools' and instances' telemetry
 * (dyn.v1.tel.cluster, dyn.v1.tel.pool.*, dyn.v1.tel.inst.*; with --requests also every RequestRecord) through
 * the consumer SDK, with the observer's read-only credentials. Without --follow it prints what arrives in
 * about 1.5 s (one message of each publisher) and exits. Readable lines on a terminal, JSON lines otherwise
 * (or with --json).
 */
import { inboxPrefix } from '../../../protocols/permissions.ts';
import { connect } from '@nats-io/transport-node';
import type { Command } from 'commander';
import { action, jsonOption, natsOptions, type ExitCode } from '../program.ts';
import { connectionOptions, natsSettings, type NatsFlags } from '../../runtime/nats-settings.ts';
import { connectNats } from './status.ts';
import { DynamoClient, type ClusterTelemetry, type InstanceTelemetry, type NodeTelemetry, type LiveSubscription, type PoolTelemetry, type Received, type RequestRecord } from '../../client/index.ts';

interface TelemetryOptions extends NatsFlags {
  follow?: boolean;
  json?: boolean;
  requests?: boolean;
}

export function register(cmd: Command, exit: ExitCode): void {
  natsOptions(
    cmd
      .option('-f, --follow', 'keep printing (default: what arrives in about 1.5 s, then exit)')
      .addOption(jsonOption(' (JSON lines; the default when stdout is not a terminal)'))
      .option('--requests', "also every request's record"),
  ).action(action(exit, (values: TelemetryOptions) => runTelemetry(values)));
}

type Any = ClusterTelemetry | PoolTelemetry | InstanceTelemetry | NodeTelemetry | RequestRecord;

const kJ = (j: number) => (j >= 1e6 ? `${(j / 1e6).toFixed(2)} MJ` : j >= 1e3 ? `${(j / 1e3).toFixed(1)} kJ` : `${j.toFixed(1)} J`);
/** the part of a power sum from instances whose GPU read failed (their last reading), or the age of an instance's. */
const stale = (w: number | undefined) => (w !== undefined ? ` (${w.toFixed(0)} W of it stale)` : '');
const old = (ms: number | undefined) => (ms !== undefined ? ` (GPU read failed: ${(ms / 1000).toFixed(0)} s old)` : '');
const load = (l: Partial<Record<string, number>>) => Object.entries(l).filter(([, x]) => (x ?? 0) > 0.005).map(([t, x]) => `${t}:${(x ?? 0).toFixed(2)}`).join(' ') || '-';

export function formatTelemetry(m: Received<Any>, json: boolean): string {
  if (json) return JSON.stringify({ subject: m.subject, ...m.value });
  const v = m.value;
  const s = m.subject;
  if (s.includes('.tel.cluster')) {
    const c = v as ClusterTelemetry;
    return `${new Date(c.sentMs).toISOString()}  cluster  leader ${c.leader}  pools ${c.pools}  instances ${c.readyInstances}/${c.instances} ready  GPUs ${c.gpus - c.freeGpus}/${c.gpus}  ${c.powerW.toFixed(0)} W${stale(c.stalePowerW)}  ${kJ(c.energyJ)}  queued ${c.queued} running ${c.running}  load ${load(c.loadByType)}`;
  }
  if (s.includes('.tel.pool.')) {
    const p = v as PoolTelemetry;
    return `${new Date(p.sentMs).toISOString()}  pool     ${p.pool}  instances ${p.readyInstances}/${p.instances}  GPUs ${p.gpus}  ${p.powerW.toFixed(0)} W${stale(p.stalePowerW)}  ${kJ(p.energyJ)}  queued ${p.queued} running ${p.running}  load ${load(p.loadByType)}`;
  }
  if (s.includes('.tel.inst.')) {
    const i = v as InstanceTelemetry;
    return `${new Date(i.sentMs).toISOString()}  instance ${i.id} (${i.pool}, TP${i.tp})  ${i.clockMhz}/${i.maxClockMhz} MHz  ${i.powerW.toFixed(0)} W${old(i.gpuStaleMs)}  ${kJ(i.energyJ)} ${i.energySource}  queued ${i.queued} running ${i.running}  ${i.state}${i.emergency ? `  emergency ${i.emergency}` : ''}`;
  }
  if (s.includes('.tel.node.')) {
    const n = v as NodeTelemetry;
    return `${new Date(n.sentMs).toISOString()}  node     ${n.node}  unallocated GPUs ${n.unallocated.length}/${n.gpus}  ${n.powerW.toFixed(0)} W  ${kJ(n.energyJ)} ${n.energySource}`;
  }
  const r = v as RequestRecord;
  return `${new Date(r.finishedMs).toISOString()}  request  ${r.id} ${r.outcome} ${r.model ?? ''} ${r.type} key ${r.apiKeyId ?? '-'}  ${r.promptTokens}+${r.completionTokens} tok  ${r.energyJ.toFixed(2)} J ${r.energySource}  TTFT ${r.ttftMs?.toFixed(0) ?? '-'} ms  SLO ${r.sloMet ? 'met' : 'missed'}`;
}

async function runTelemetry(values: TelemetryOptions): Promise<number> {
  const json = values.json === true || !process.stdout.isTTY;
  const settings = natsSettings({ flags: values });
  const nc = await connectNats(settings, () => connect({ ...connectionOptions(settings), name: 'dynamollm-telemetry', timeout: 3000, inboxPrefix: inboxPrefix('observer', `telemetry-${process.pid}`) }));
  const client = DynamoClient.fromConnection(nc);
  const subs: LiveSubscription<Any>[] = [client.clusterTelemetry(), client.poolTelemetry(), client.instanceTelemetry(), client.nodeTelemetry()];
  if (values.requests) subs.push(client.requests());
  const stopAll = () => subs.forEach((s) => s.stop());
  process.once('SIGINT', stopAll);
  process.once('SIGTERM', stopAll);
  const timer = values.follow ? undefined : setTimeout(stopAll, 1500);
  try {
    await Promise.all(
      subs.map(async (s) => {
        for await (const m of s) process.stdout.write(formatTelemetry(m, json) + '\n');
      }),
    );
    return 0;
  } finally {
    clearTimeout(timer);
    process.off('SIGINT', stopAll);
    process.off('SIGTERM', stopAll);
    await client.close();
  }
}

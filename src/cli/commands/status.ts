/**
 * `dynamollm status [--nats URL] [--json]`: one-shot view of the cluster (pools, instances with TP, GPUs,
 * clock, power, queue; cluster power and energy so far), asked from the cluster leader over NATS
 * (StatusRequest -> ClusterStatus, 3 s deadline). Credentials: src/runtime/nats-settings.ts (flags, env
 * NATS_URL/NATS_USER/NATS_PASSWORD/NATS_CREDS/NATS_NKEY/...); `up` prints the observer's settings.
 */
import type { Command } from 'commander';
import { randomBytes } from 'node:crypto';
import { num } from '../args.ts';
import { action, jsonOption, natsOptions, type ExitCode } from '../program.ts';
import { Bus } from '../../runtime/bus.ts';
import { inboxPrefix } from '../../../protocols/permissions.ts';
import { natsSettings, type NatsFlags, type NatsSettings } from '../../runtime/nats-settings.ts';
import { silentLogger } from '../../runtime/logger.ts';
import { ClusterStatus, StatusRequest } from '../../../protocols/messages.ts';
import { subjects } from '../../../protocols/subjects.ts';
import { renderStatus } from '../../telemetry/status-view.ts';

interface StatusOptions extends NatsFlags {
  timeoutMs: string;
  json?: boolean;
}

export function register(cmd: Command, exit: ExitCode): void {
  natsOptions(cmd.option('--timeout-ms <ms>', "deadline of the cluster leader's answer", '3000').addOption(jsonOption())).action(
    action(exit, (values: StatusOptions) => runStatus(values)),
  );
}

/** Connects through `connect`; a failure becomes one line naming the server(s). */
export async function connectNats<T>(settings: NatsSettings, connect: () => Promise<T>): Promise<T> {
  try {
    return await connect();
  } catch (err) {
    throw new Error(`cannot connect to NATS at ${settings.servers.join(',')}: ${(err as Error).message}`, { cause: (err as Error).cause });
  }
}

/** Connects with the settings of flags/env (src/runtime/nats-settings.ts); `up` hands its observer's to children. */
export async function connectObserver(values: NatsFlags): Promise<Bus> {
  const settings = natsSettings({ flags: values });
  return connectNats(settings, () => Bus.connect({
    settings,
    name: 'dynamollm-status',
    inboxPrefix: inboxPrefix('observer', `status-${randomBytes(4).toString('hex')}`),
    log: silentLogger(),
    reconnect: false,
    connectTimeoutMs: 3000,
  }));
}

export async function fetchStatus(bus: Bus, timeoutMs: number): Promise<ClusterStatus> {
  return bus.request(subjects.clusterStatus(), StatusRequest, { v: 1, detail: true }, ClusterStatus, { timeoutMs });
}

async function runStatus(values: StatusOptions): Promise<number> {
  const bus = await connectObserver(values);
  try {
    const s = await fetchStatus(bus, num(values.timeoutMs, 'timeout-ms'));
    process.stdout.write((values.json ? JSON.stringify(s, null, 2) : renderStatus(s)) + '\n');
    return 0;
  } finally {
    await bus.close();
  }
}

/**
 * `dynamollm status [--nats URL] [--json]`: one-shot view of the cluster (pools, instances with TP, GPUs,
 * clock, power, queue; cluster power and energy so far), asked from the cluster leader over NATS
 * (StatusRequest -> ClusterStatus, 3 s deadline). Credentials: src/runtime/nats-settings.ts (flags, env
 * NATS_URL/NATS_USER/NATS_PASSWORD/NATS_CREDS/NATS_NKEY/...); `up` prints the observer's settings.
 */
import { parse, num } from '../args.ts';
import { randomBytes } from 'node:crypto';
import { Bus } from '../../runtime/bus.ts';
import { inboxPrefix } from '../../../protocols/permissions.ts';
import { natsSettings, NATS_FLAG_OPTIONS, NATS_FLAGS_USAGE, type NatsFlags } from '../../runtime/nats-settings.ts';
import { silentLogger } from '../../runtime/logger.ts';
import { ClusterStatus, StatusRequest } from '../../../protocols/messages.ts';
import { subjects } from '../../../protocols/subjects.ts';
import { renderStatus } from '../../telemetry/status-view.ts';

export const summary = 'one-shot cluster status: pools, instances, clocks, power, energy';

export const STATUS_OPTIONS = {
  ...NATS_FLAG_OPTIONS,
  'timeout-ms': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Connects with the settings of flags/env (src/runtime/nats-settings.ts); `up` hands its observer's to children. */
export async function connectObserver(values: NatsFlags): Promise<Bus> {
  return Bus.connect({
    settings: natsSettings({ flags: values }),
    name: 'dynamollm-status',
    inboxPrefix: inboxPrefix('observer', `status-${randomBytes(4).toString('hex')}`),
    log: silentLogger(),
    reconnect: false,
    connectTimeoutMs: 3000,
  });
}

export async function fetchStatus(bus: Bus, timeoutMs: number): Promise<ClusterStatus> {
  return bus.request(subjects.clusterStatus(), StatusRequest, { v: 1, detail: true }, ClusterStatus, { timeoutMs });
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(argv, STATUS_OPTIONS);
  if (values.help) {
    process.stdout.write(`usage: dynamollm status ${NATS_FLAGS_USAGE} [--timeout-ms MS] [--json]\n`);
    return 0;
  }
  const bus = await connectObserver(values);
  try {
    const s = await fetchStatus(bus, num(values['timeout-ms'], 'timeout-ms', 3000));
    process.stdout.write((values.json ? JSON.stringify(s, null, 2) : renderStatus(s)) + '\n');
    return 0;
  } finally {
    await bus.close();
  }
}

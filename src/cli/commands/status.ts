/**
 * `dynamollm status [--nats URL] [--json]`: one-shot view of the cluster (pools, instances with TP, GPUs,
 * clock, power, queue; cluster power and energy so far), asked from the cluster leader over NATS
 * (StatusRequest -> ClusterStatus, 3 s deadline). Credentials: --user/--pass, env NATS_USER/NATS_PASS,
 * default the local observer role of nats.conf.
 */
import { parse, num } from '../args.ts';
import { Bus } from '../../runtime/bus.ts';
import { silentLogger } from '../../runtime/logger.ts';
import { ClusterStatus, StatusRequest } from '../../../protocols/messages.ts';
import { subjects } from '../../../protocols/subjects.ts';
import { renderStatus } from '../../telemetry/status-view.ts';

export const summary = 'one-shot cluster status: pools, instances, clocks, power, energy';

export const STATUS_OPTIONS = {
  nats: { type: 'string' },
  user: { type: 'string' },
  pass: { type: 'string' },
  'timeout-ms': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function connectObserver(values: { nats?: string; user?: string; pass?: string }): Promise<Bus> {
  return Bus.connect({
    servers: (values.nats ?? process.env.NATS_URL ?? 'nats://127.0.0.1:4222').split(','),
    name: 'dynamollm-status',
    user: values.user ?? process.env.NATS_USER ?? 'observer',
    pass: values.pass ?? process.env.NATS_PASS ?? 'observer-local',
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
    process.stdout.write('usage: dynamollm status [--nats URL] [--user U --pass P] [--timeout-ms MS] [--json]\n');
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

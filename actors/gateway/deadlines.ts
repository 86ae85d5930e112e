/**
 * A gateway's shutdown bound from its settings: whatever supervises a gateway process (dynamollm up, the primary of
 * `gateway.workers` processes, deploy/k8s, deploy/systemd) gives it at least this between its SIGTERM and its SIGKILL.
 */
import { shutdownLimitMs } from '../../src/runtime/actor.ts';
import { gatewayDrainGraceMs, type GatewaySettings } from './config.ts';

/** The longest a gateway process takes from its SIGTERM to its exit by its deadlines (its drain delay, its wait for the streams, its stop), ms. */
export function gatewayShutdownLimitMs(s: Pick<GatewaySettings, 'drainDelayMs' | 'drainStreamsMs'>): number {
  return shutdownLimitMs({ drainGraceMs: gatewayDrainGraceMs(s) });
}

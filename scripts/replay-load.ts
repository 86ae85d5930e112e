/**
 * The real-time run's closed loop for the measuring scripts (scripts/gateway-syscalls.ts, scripts/relay-syscalls.ts,
 * scripts/gateway-profile.ts RT=1):
 * RT_CLIENTS clients of replay-shaped requests (test/bench/datapath.bench.ts) while it is on.
 */
import { BENCH_MODEL } from './bench-cluster.ts';
import { RT_CLIENTS, replayShaped } from '../test/bench/datapath.bench.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The closed loop: RT_CLIENTS clients of replay-shaped requests while `on`; `done` counts the completed ones. */
export class ReplayLoad {
  done = 0;
  /** requests that failed (a connection the gateway closed as it was reused: the client's retry is the next request) */
  failed = 0;
  private on = false;
  private clients: Promise<void>[] = [];
  constructor(private readonly base: string) {}
  /** the clients start spread over `spreadMs` (a request's length): their requests' starts and ends spread over time, not in waves */
  start(spreadMs: number): void {
    this.on = true;
    this.clients = Array.from({ length: RT_CLIENTS }, async (_, k) => {
      await sleep((k * spreadMs) / RT_CLIENTS);
      while (this.on) {
        try {
          if (await replayShaped(this.base, BENCH_MODEL)) this.done++;
        } catch {
          this.failed++;
        }
      }
    });
  }
  async stop(): Promise<void> {
    this.on = false;
    await Promise.all(this.clients);
  }
}

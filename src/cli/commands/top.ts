/**
 * `dynamollm top [--nats URL] [--interval S]`: live terminal view of the cluster, redrawn every interval
 * (default 1 s) from the cluster leader's status; q or Ctrl-C quits. A failed poll shows the error and
 * keeps trying (a leader failover is visible, not fatal).
 */
import type { Command } from 'commander';
import { num } from '../args.ts';
import { action, natsOptions, type ExitCode } from '../program.ts';
import { renderStatus } from '../../telemetry/status-view.ts';
import { connectObserver, fetchStatus } from './status.ts';
import type { NatsFlags } from '../../runtime/nats-settings.ts';

export function register(cmd: Command, exit: ExitCode): void {
  natsOptions(cmd.option('--interval <s>', 'redraw every S seconds', '1')).action(action(exit, (values: NatsFlags & { interval: string }) => runTop(values)));
}

async function runTop(values: NatsFlags & { interval: string }): Promise<number> {
  const intervalMs = num(values.interval, 'interval', 1) * 1000;
  const bus = await connectObserver(values);
  let stop = false;
  const quit = () => {
    stop = true;
  };
  process.once('SIGINT', quit);
  if (process.stdin.isTTY) {
    process.stdin.setRawMode(true);
    process.stdin.resume();
    process.stdin.on('data', (d) => {
      if (d.toString() === 'q' || d[0] === 3) quit();
    });
  }
  try {
    while (!stop) {
      let text: string;
      try {
        text = renderStatus(await fetchStatus(bus, Math.max(1000, intervalMs)));
      } catch (err) {
        text = `no status: ${(err as Error).message} (retrying)`;
      }
      process.stdout.write(`\x1b[H\x1b[2J${text}\n\n(q to quit)\n`);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  } finally {
    if (process.stdin.isTTY) {
      process.stdin.setRawMode(false);
      process.stdin.pause();
    }
    await bus.close();
  }
  return 0;
}

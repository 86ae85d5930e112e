/**
 * `dynamollm nats up [--url URL] [--conf FILE] [--store DIR]`: make sure a NATS server answers at URL
 * (default nats://127.0.0.1:4222), starting `nats-server -c nats.conf` when none does; then wait until
 * SIGINT/SIGTERM and stop the server if this command started it.
 */
import type { Command } from 'commander';
import { action, type ExitCode } from '../program.ts';
import { ensureNats } from '../../runtime/nats-launcher.ts';
import { createLogger } from '../../runtime/logger.ts';

export function register(cmd: Command, exit: ExitCode): void {
  cmd
    .command('up')
    .description('start nats-server -c nats.conf unless a server answers at --url; Ctrl-C stops the one it started')
    .option('--url <url>', 'where the server listens', 'nats://127.0.0.1:4222')
    .option('--conf <file>', 'server config', 'nats.conf')
    .option('--store <dir>', 'JetStream store directory')
    .action(action(exit, (values: { url: string; conf: string; store?: string }) => natsUp(values)));
}

async function natsUp(values: { url: string; conf: string; store?: string }): Promise<number> {
  const log = createLogger({ name: 'nats' });
  const h = await ensureNats({ url: values.url, confPath: values.conf, storeDir: values.store, log });
  if (!h.started) {
    process.stdout.write(`nats-server already running at ${h.url}\n`);
    return 0;
  }
  process.stdout.write(`nats-server started at ${h.url}; Ctrl-C stops it\n`);
  await new Promise<void>((r) => {
    process.once('SIGINT', r);
    process.once('SIGTERM', r);
  });
  await h.stop();
  return 0;
}

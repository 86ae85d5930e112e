/**
 * `dynamollm nats up [--url URL] [--conf FILE] [--store DIR]`: make sure a NATS server answers at URL
 * (default nats://127.0.0.1:4222), starting `nats-server -c nats.conf` when none does; then wait until
 * SIGINT/SIGTERM and stop the server if this command started it.
 */
import { parse, UsageError } from '../args.ts';
import { ensureNats } from '../../runtime/nats-launcher.ts';
import { createLogger } from '../../runtime/logger.ts';

export const summary = 'start the local NATS server (nats up) when none is reachable';

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { url: { type: 'string' }, conf: { type: 'string' }, store: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    true,
  );
  const usage = 'usage: dynamollm nats up [--url nats://127.0.0.1:4222] [--conf nats.conf] [--store .nats-data]';
  if (values.help) {
    process.stdout.write(usage + '\n');
    return 0;
  }
  if (positionals[0] !== 'up') throw new UsageError(usage);
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

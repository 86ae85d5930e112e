/**
 * `dynamollm events [--follow] [--since 1h|SEQ|TIME] [--kind clock,scale,...] [--json] [--durable NAME]`:
 * the decision events of the DYN_V1_EVENTS stream through the consumer SDK (dynamollm/client), with the
 * observer's read-only credentials. Without --follow it prints the stored events (from --since on, else all)
 * and exits; with --follow it goes on printing new ones (without --since: only new ones). Readable lines on a
 * terminal, JSON lines otherwise (or with --json).
 */
import { inboxPrefix } from '../../../protocols/permissions.ts';
import { connect } from '@nats-io/transport-node';
import type { Command } from 'commander';
import { UsageError } from '../args.ts';
import { action, jsonOption, natsOptions, type ExitCode } from '../program.ts';
import { connectionOptions, natsSettings, type NatsFlags } from '../../runtime/nats-settings.ts';
import { connectNats } from './status.ts';
import { DynamoClient, EVENT_KINDS, isEventKind, type DecisionEvent, type EventKind, type StreamReceived } from '../../client/index.ts';

interface EventsOptions extends NatsFlags {
  follow?: boolean;
  since?: string;
  kind?: string;
  json?: boolean;
  durable?: string;
}

export function register(cmd: Command, exit: ExitCode): void {
  natsOptions(
    cmd
      .option('-f, --follow', 'keep printing new events (without --since: only new ones)')
      .option('--since <when>', 'a duration back from now (1h, 30m, 2d, 90s), a stream sequence number, or an ISO time')
      .option('--kind <kinds>', `only these kinds, comma-separated: ${EVENT_KINDS.join(',')}`)
      .addOption(jsonOption(' (JSON lines; the default when stdout is not a terminal)'))
      .option('--durable <name>', 'read through this durable consumer: a second run resumes after the last event it printed'),
  ).action(action(exit, (values: EventsOptions) => runEvents(values)));
}

/** '1h' | '90s' | '2d' -> a start time; '123' -> a sequence; an ISO time -> a start time. */
export function parseSince(s: string, now = Date.now()): { since: number } | { fromSeq: number } {
  const d = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(s);
  if (d) return { since: now - Number(d[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[d[2] as 's' | 'm' | 'h' | 'd'] };
  if (/^\d+$/.test(s)) {
    const n = Number(s);
    if (n < 1) throw new UsageError('--since: stream sequences start at 1');
    return { fromSeq: n };
  }
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new UsageError(`--since '${s}': give a duration (1h, 30m, 2d), a sequence number or an ISO time`);
  return { since: t };
}

export function parseKinds(s: string | undefined): EventKind[] | undefined {
  if (s === undefined) return undefined;
  const kinds = s.split(',').map((k) => k.trim()).filter(Boolean);
  for (const k of kinds) if (!isEventKind(k)) throw new UsageError(`--kind '${k}': one of ${EVENT_KINDS.join(', ')}`);
  return kinds as EventKind[];
}

export function formatEvent(m: Pick<StreamReceived<DecisionEvent>, 'seq' | 'time' | 'value' | 'subject'>, json: boolean): string {
  if (json) return JSON.stringify({ seq: m.seq, time: m.time.toISOString(), subject: m.subject, ...m.value });
  const e = m.value;
  return `${new Date(e.atMs).toISOString()}  #${String(m.seq).padEnd(6)} ${e.kind.padEnd(9)} ${e.actor.padEnd(14)} ${e.summary}`;
}

async function runEvents(values: EventsOptions): Promise<number> {
  const kinds = parseKinds(values.kind);
  const start = values.since !== undefined ? parseSince(values.since) : values.follow ? { newOnly: true } : {};
  const json = values.json === true || !process.stdout.isTTY;
  const settings = natsSettings({ flags: values });
  const nc = await connectNats(settings, () => connect({ ...connectionOptions(settings), name: 'dynamollm-events', timeout: 3000, inboxPrefix: inboxPrefix('observer', `events-${process.pid}`) }));
  const client = DynamoClient.fromConnection(nc);
  const sub = await client.eventHistory({ ...start, kinds, durable: values.durable });
  const stop = () => void sub.stop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const it = sub[Symbol.asyncIterator]();
    let pending = it.next();
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<'idle'>((r) => (timer = setTimeout(() => r('idle'), 1000)));
      const r = await Promise.race([pending, idle]);
      clearTimeout(timer);
      if (r === 'idle') {
        // without --follow: done once the consumer has nothing left (the pending read is raced again)
        if (!values.follow && (await sub.caughtUp())) break;
        continue;
      }
      if (r.done) break;
      process.stdout.write(formatEvent(r.value, json) + '\n');
      r.value.ack();
      pending = it.next();
    }
    return 0;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await sub.stop();
    await client.close();
  }
}

/**
 * The resume journal's cost on the gateway side, per journaled token: `streams` resumable streams at once, each
 * making one token every `itlMs` (one engine read each, so one journal entry per token while the journal answers
 * within the inter-token time) for `seconds`, against a 3-node nats-server cluster with the journal's stream at R3.
 * Mode `publish`: each entry published without acknowledgement (core NATS). Mode `acked`: JournalWriter's appends
 * (JetStream acknowledgement, one in flight per stream, entries made meanwhile joined), the time from each entry's
 * flush to its ack measured. Prints, per mode: this process's CPU per token (user + system, µs), the NATS servers'
 * CPU per token (from /proc), and for `acked` the flush-to-held latency p50/p99.
 *   npx tsx scripts/journal-cost.ts [streams] [itlMs] [seconds]   (MODES=acked,publish: those modes in that order)
 */
import { readFileSync } from 'node:fs';
import { startNatsCluster, as } from '../test/helpers/nats.ts';
import { Bus } from '../src/runtime/bus.ts';
import { silentLogger } from '../src/runtime/logger.ts';
import { ensureResumeStream } from '../actors/common/events.ts';
import { JournalWriter, jetStreamAppend } from '../actors/gateway/resume.ts';
import { ResumeEntry } from '../protocols/journal.ts';
import { subjects } from '../protocols/subjects.ts';

const [streamsArg = '32', itlArg = '20', secsArg = '6'] = process.argv.slice(2);
const STREAMS = Number(streamsArg);
const ITL = Number(itlArg);
const SECS = Number(secsArg);

function cpuMsOf(pid: number): number {
  const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

const head = (id: string): NonNullable<ResumeEntry['head']> => ({
  req: { v: 1, id, model: 'm', kind: 'completion', prompt: 'Tell me about energy-efficient inference. '.repeat(4), inputTokens: 40, maxTokens: 4096, arrivalMs: Date.now(), giveUpAtMs: Date.now() + 600_000, streamSubject: `dyn.v1.stream.${id}` },
  created: 1, includeUsage: false, continuousUsage: false,
});

async function run(bus: Bus, mode: 'publish' | 'acked', servers: number[]): Promise<void> {
  const append = jetStreamAppend(bus);
  const lat: number[] = [];
  let tokens = 0;
  const writers: { w?: JournalWriter; id: string; i: number; pending: number[] }[] = [];
  for (let s = 0; s < STREAMS; s++) {
    const id = `cost${mode}${s}${Date.now().toString(36)}`;
    const x: (typeof writers)[number] = { id, i: 0, pending: [] };
    if (mode === 'acked') {
      x.w = new JournalWriter(append, id, 0, 1 << 30);
      await x.w.head(head(id));
    } else bus.publish(subjects.resume(id), ResumeEntry, { v: 1, id, gen: 0, head: head(id) });
    writers.push(x);
  }
  await bus.nc.flush();
  const cpu0 = process.cpuUsage();
  const srv0 = servers.map(cpuMsOf);
  const until = Date.now() + SECS * 1000;
  await Promise.all(writers.map(async (x) => {
    // staggered, one token every ITL ms
    await new Promise((r) => setTimeout(r, Math.random() * ITL));
    while (Date.now() < until) {
      const text = ` w${x.i}`;
      if (x.w) {
        x.w.text(x.i, text, 1);
        x.w.flush();
        const t = performance.now();
        const w = x.w;
        if (w.held()) w.onRelease(() => lat.push(performance.now() - t));
      } else bus.publish(subjects.resume(x.id), ResumeEntry, { v: 1, id: x.id, gen: 0, from: x.i, events: [{ text, tokens: 1 }] });
      x.i++;
      tokens++;
      await new Promise((r) => setTimeout(r, ITL));
    }
  }));
  // every entry held (acked) or flushed to the server
  if (mode === 'acked') await Promise.all(writers.map((x) => new Promise<void>((r) => (x.w!.held() ? x.w!.onRelease(r) : r()))));
  await bus.nc.flush();
  const cpu = process.cpuUsage(cpu0);
  const srv = servers.map(cpuMsOf).reduce((n, c, i) => n + c - srv0[i]!, 0);
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]?.toFixed(2);
  console.log(JSON.stringify({
    mode, streams: STREAMS, itlMs: ITL, seconds: SECS, tokens,
    clientCpuUsPerToken: +((cpu.user + cpu.system) / tokens).toFixed(1),
    natsCpuUsPerToken: +((srv * 1000) / tokens).toFixed(1),
    ...(mode === 'acked' ? { flushToHeldMs: { p50: q(0.5), p99: q(0.99), n: lat.length } } : {}),
  }));
}

const cluster = await startNatsCluster(3);
try {
  const bus = await Bus.connect({ servers: cluster.urls, name: 'journal-cost', ...as('admin'), log: silentLogger() });
  bus.jetstreamReplicas = 3;
  for (const until = Date.now() + 30_000; ;) {
    try {
      await ensureResumeStream(bus);
      break;
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  const pids = cluster.servers.map((s) => s.pid);
  const modes = process.env.MODES ? (process.env.MODES.split(',') as ('publish' | 'acked')[]) : (['publish', 'acked', 'publish', 'acked'] as const);
  for (const mode of modes) await run(bus, mode, pids);
  await bus.close();
} finally {
  await cluster.stop();
}

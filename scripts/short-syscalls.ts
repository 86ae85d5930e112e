/**
 * The serving gateway's system calls per short request: the datapath bench's one-instance cluster (scripts/bench-cluster.ts:
 * zero-delay emulator, direct path, the default gateway.dataPlane), a closed loop of 16 clients of streamed 4-token
 * completions of an 8-token-id prompt, and after WARM_S seconds `strace -c -f` of the gateway process (every thread) for
 * S seconds: its table, then each call's count per request completed in that window. strace slows the process, so the
 * figures are counts, not times. Also the native data plane's spans and the events they carried per request in the window
 * (the gateway's dynamollm_gateway_native_spans_total and _events_total); STRACE=0: those alone, without strace.
 *   npm run build; WARM_S=20 S=10 nice -n 5 npx tsx scripts/short-syscalls.ts [tree]
 */
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { BENCH_MODEL, startBenchCluster } from './bench-cluster.ts';

const TREE = resolve(process.argv[2] ?? '.');
const WARM_S = Number(process.env.WARM_S ?? 20);
const S = Number(process.env.S ?? 10);
const STRACE = process.env.STRACE !== '0';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** the gateway's native spans and the events they carried so far (its /metrics). */
async function spans(base: string): Promise<{ spans: number; events: number }> {
  const m = await (await fetch(`${base}/metrics`)).text();
  const of = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(m)?.[1] ?? 0);
  return { spans: of('dynamollm_gateway_native_spans_total'), events: of('dynamollm_gateway_native_events_total') };
}

const c = await startBenchCluster({ tree: TREE, name: 'short-syscalls', upArgs: ['--gateway-standbys', '0'] });
let on = true;
let done = 0;
const body = JSON.stringify({ model: BENCH_MODEL, prompt: [1, 2, 3, 4, 5, 6, 7, 8], max_tokens: 4, ignore_eos: true, stream: true });
const clients = Array.from({ length: 16 }, async () => {
  while (on) {
    const r = await fetch(`${c.base}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    if (!(await r.text()).includes('[DONE]')) throw new Error('a request did not end with [DONE]');
    done++;
  }
});
try {
  await sleep(WARM_S * 1000);
  const gw = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).find((d) => {
    try {
      // this cluster's serving gateway: a child of its `up`
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      return readFileSync(`/proc/${d}/cmdline`, 'utf8').includes('actor\0gateway\0') && Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === c.up.pid;
    } catch {
      return false;
    }
  });
  if (!gw) throw new Error('no gateway process');
  let table = '';
  const s0 = await spans(c.base);
  const d0 = done;
  const st = STRACE ? spawn('strace', ['-c', '-f', '-p', gw], { stdio: ['ignore', 'ignore', 'pipe'] }) : undefined;
  st?.stderr!.on('data', (d: Buffer) => (table += d.toString()));
  await sleep(S * 1000);
  const n = done - d0;
  st?.kill('SIGINT');
  if (st) await new Promise((r) => st.once('exit', r));
  const s1 = await spans(c.base);
  console.log(`${TREE}: ${n} requests in ${S} s${STRACE ? ' under strace' : ''}; native spans ${(s1.spans - s0.spans) / n} and events ${(s1.events - s0.events) / n} per request`);
  if (STRACE) {
    const rows = table.split('\n').filter((l) => /^\s*[\d.]+\s+[\d.]+\s+\d+\s+\d+/.test(l));
    console.log(rows.filter((l) => !/ total$/.test(l)).join('\n'));
    console.log('per request:', rows.map((l) => l.trim().split(/\s+/)).filter((f) => f.at(-1) !== 'total').map((f) => `${f.at(-1)} ${(Number(f[3]) / n).toFixed(2)}`).join(', '));
  }
} finally {
  on = false;
  await Promise.allSettled(clients);
  await c.stop();
}

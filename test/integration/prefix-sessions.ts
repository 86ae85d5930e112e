/**
 * Cache-aware routing, live (issue 17): a real nats-server, the cluster, pool and node actors as processes,
 * emulated engines with automatic prefix caching (config engine.prefixCaching), and the gateway actor with its
 * direct dispatch (src/policy/machines/router.ts), driven by concurrent multi-turn chat sessions: each turn
 * resends the whole conversation so far (a system prompt all sessions share, then the session's turns) plus a
 * new user message, as a chat client does. Run once with `policy.prefixRouting` on and once off, it reads the
 * engines' own prefix-cache counters (vLLM's prefix_cache_queries/hits, as the instance managers report them in
 * InstanceStatus.prefixCacheTokens), the instances' modelled energy (InstanceTelemetry.energyJ, emulated GPUs:
 * src/model's power model) and the client's TTFT. Used by test/integration/prefix-routing.test.ts and
 * test/bench/prefix-routing.bench.ts.
 */
import { splitConfig } from '../../actors/gateway/config.ts';
import { GatewayActor } from '../../actors/gateway/main.ts';
import { InstanceStatus, InstanceTelemetry, RequestRecord, controlSubjects, subjects } from '../../protocols/index.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { rng } from '../../src/sim/trace.ts';
import { startHarness, type Harness } from './control-harness.ts';

export interface ClusterOptions {
  /** emulated TP1 instances (one server of this many GPUs). Default 3. */
  instances?: number;
  /** the emulator's time scale (engine.timeScale). Default 1. */
  timeScale?: number;
}

export interface SessionsOptions {
  /** cache-aware routing at the gateway (config policy.prefixRouting). */
  routing: boolean;
  sessions?: number;
  turns?: number;
  /** words of the system prompt all sessions share, and of each user message. */
  systemWords?: number;
  userWords?: number;
  /** completion tokens per turn (the assistant's answer the client appends to the conversation is as long). */
  outputTokens?: number;
  /** a session's pause between an answer and its next turn, ms (uniform in [thinkMs / 2, 3 thinkMs / 2]). */
  thinkMs?: number;
  /** the sessions' text (the system prompt too: runs of different seeds share no prefix). */
  seed?: number;
}

export interface SessionsResult {
  routing: boolean;
  requests: number;
  /** turns that failed after their retries, and retries of refused turns (HTTP 429/503, retryable). */
  failed: number;
  retried: number;
  errors: string[];
  /** prompt tokens the engines looked up in their prefix caches over the run, and found there. */
  lookupTokens: number;
  hitTokens: number;
  hitShare: number;
  /** per instance: requests it admitted, prompt tokens looked up and hit. */
  perInstance: { id: string; requests: number; lookup: number; hit: number }[];
  ttftP50Ms: number;
  ttftP90Ms: number;
  ttftP99Ms: number;
  /** modelled energy of the instances over the run (emulated GPUs), J, and per request served. */
  energyJ: number;
  energyPerRequestJ: number;
  /** the requests' own modelled energy (RequestRecord.energyJ: the emulator's per-request figure), J. */
  requestEnergyJ: number;
  /** turns after a session's first served by the instance that served its previous turn. */
  sameInstanceShare: number;
  /**
   * the same share were each turn placed on an instance at random with the run's own spread (the sum over instances
   * of its share of the requests, squared): what sameInstanceShare reads without any stickiness, high when the load
   * sits on few instances (an energy-packing pick at low load).
   */
  chanceSameShare: number;
  wallS: number;
}

const WORDS = ('the of and to in is was for that on with as by at from his her they we you this are be an which or have ' +
  'one had not but what all were when there can more if no out so said up its about into than them could time some ' +
  'would other only new these two may first then do any like my now over such our man me even most made after also ' +
  'did many before must through back years where much your way well down should because each just those people how ' +
  'too little state good very make world still own see men work long get here between both life being under never ' +
  'day same another know while last might us great old year off come since against go came right used take three ' +
  'river cache engine token power clock prompt answer model server energy region window garden lantern harbor quiet').split(' ');

function text(r: () => number, words: number): string {
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(WORDS[Math.floor(r() * WORDS.length)]!);
  return out.join(' ') + '.';
}

export function sessionsConfig(o: ClusterOptions, routing: boolean): Record<string, unknown> {
  return {
    model: 'llama3.1-8b', gpu: 'h100', profile: 'profiles/llama3.1-8b.h100.tp1.json',
    servers: [{ id: 'n0', gpus: o.instances ?? 3 }],
    pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    // no re-shard or cluster epoch inside a run: the instances stay the TP1 ones it starts with
    epochs: { clusterS: 3600, poolS: 3600, instanceS: 5 },
    liveness: { statusIntervalMs: 250, deadAfterMs: 3000, leaseTtlMs: 3000 },
    engine: { kind: 'emulator', timeScale: o.timeScale ?? 1, healthDeadlineMs: 60_000, initialTp: 1, maxInEngine: 64, maxQueued: 256, prefixCaching: true },
    policy: { prefixRouting: routing },
  };
}

function pct(xs: number[], q: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * q))]!;
}

/** One streamed chat turn through the gateway: TTFT (first content delta) and the instance that served it (from the gateway's reply header), or an error. */
async function turn(base: string, messages: { role: string; content: string }[], maxTokens: number): Promise<{ ttftMs?: number; id?: string; error?: string }> {
  const t0 = performance.now();
  let r: Response;
  try {
    r = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'llama3.1-8b', messages, max_tokens: maxTokens, min_tokens: maxTokens, ignore_eos: true, stream: true }),
      signal: AbortSignal.timeout(120_000),
    });
  } catch (err) {
    return { error: (err as Error).message };
  }
  if (!r.ok || !r.body) return { error: `HTTP ${r.status}: ${(await r.text()).slice(0, 300)}` };
  let ttft: number | undefined;
  let buf = '';
  const dec = new TextDecoder();
  for await (const part of r.body as unknown as AsyncIterable<Uint8Array>) {
    buf += dec.decode(part, { stream: true });
    if (ttft === undefined && /"content":"[^"]/.test(buf)) ttft = performance.now() - t0;
  }
  if (!buf.includes('[DONE]')) return { error: `no [DONE]: ${buf.slice(-300)}` };
  if (buf.includes('"error"')) return { error: buf.slice(-300) };
  return ttft !== undefined ? { ttftMs: ttft, id: r.headers.get('x-request-id') ?? '' } : { error: 'no content' };
}

export interface SessionsCluster {
  h: Harness;
  /** a gateway with routing on or off, the sessions through it, the gateway stopped: the run's figures. */
  run(o: SessionsOptions): Promise<SessionsResult>;
  stop(): Promise<void>;
}

/**
 * The cluster (nats, cluster/pool/node actors, `instances` TP1 engines with prefix caching), waiting until they are
 * ready. Each run starts its own gateway (the routing switch is the gateway's config) on this cluster; runs of
 * different seeds share no prefix, so one run's cached blocks give the next no hits.
 */
export async function startSessionsCluster(o: ClusterOptions = {}): Promise<SessionsCluster> {
  const nInst = o.instances ?? 3;
  const h = await startHarness(sessionsConfig(o, false));
  const statuses = new Map<string, InstanceStatus>();
  const energy = new Map<string, number>();
  const records = new Map<string, RequestRecord>();
  try {
    h.startActor('cluster', 'cm-0');
    h.startActor('pool', 'pm-0');
    h.startActor('node', 'n0');
    await h.waitReady(nInst, 90_000);
    h.bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (s) => {
      const prev = statuses.get(s.id);
      if (!prev || s.seq >= prev.seq || s.startedMs !== prev.startedMs) statuses.set(s.id, s);
    }, { capacity: 4096 });
    h.bus.subscribe(subjects.telInstanceAll(), InstanceTelemetry, (t) => void energy.set(t.id, t.energyJ), { capacity: 4096 });
    h.bus.subscribe(subjects.telRequestAll(), RequestRecord, (x) => void records.set(x.id, x), { capacity: 4096 });
  } catch (err) {
    await h.stop();
    throw err;
  }
  let runs = 0;
  return {
    h,
    stop: () => h.stop(),
    async run(r) {
      const sessions = r.sessions ?? 24, turns = r.turns ?? 6;
      const systemWords = r.systemWords ?? 300, userWords = r.userWords ?? 220, out = r.outputTokens ?? 32, thinkMs = r.thinkMs ?? 1500;
      const { cluster, gateway } = splitConfig({ ...sessionsConfig(o, r.routing), gateway: { port: 0, host: '127.0.0.1' } });
      const gw = new GatewayActor({ id: `gw-prefix-${++runs}`, cluster, settings: gateway, servers: h.nats.url, ...h.nats.creds('gateway'), log: silentLogger() });
      await gw.start();
      try {
        const base = `http://127.0.0.1:${gw.port}`;
        // the gateway routes itself once it has the routing table and every instance's status (one a 250 ms)
        await new Promise((res) => setTimeout(res, 2000));
        const snap = () => new Map([...statuses].map(([id, s]) => [id, { lookup: s.prefixCacheTokens?.lookup ?? 0, hit: s.prefixCacheTokens?.hit ?? 0 }]));
        const s0 = snap();
        const e0 = new Map(energy);
        const seed = r.seed ?? 1;
        const system = text(rng(seed), systemWords);
        const ttfts: number[] = [];
        const errors: string[] = [];
        const served: string[][] = [];
        let requests = 0, retried = 0;
        const t0 = performance.now();
        await Promise.all(Array.from({ length: sessions }, async (_, k) => {
          const sr = rng(seed * 1000 + k + 1);
          const messages = [{ role: 'system', content: system }];
          const ids: string[] = (served[k] = []);
          // sessions start spread over the first think time
          await new Promise((res) => setTimeout(res, sr() * thinkMs));
          for (let t = 0; t < turns; t++) {
            messages.push({ role: 'user', content: text(sr, userWords) });
            requests++;
            // a retryable refusal (429/503: at capacity, or a deadline of the gateway's tokenize or admission on
            // this loaded box) is retried as a client does, a few times with a growing pause
            let x = await turn(base, messages, out);
            for (let a = 1; a <= 5 && x.error && /^HTTP (429|503)/.test(x.error); a++) {
              retried++;
              await new Promise((res) => setTimeout(res, 250 * a));
              x = await turn(base, messages, out);
            }
            if (x.error) errors.push(x.error);
            else {
              ttfts.push(x.ttftMs!);
              ids.push(x.id!);
            }
            messages.push({ role: 'assistant', content: text(sr, Math.round(out * 0.75)) });
            await new Promise((res) => setTimeout(res, thinkMs * (0.5 + sr())));
          }
        }));
        const wallS = (performance.now() - t0) / 1000;
        // the counters of the last requests reach a status within a scrape (1 s) and a status period
        await new Promise((res) => setTimeout(res, 2500));
        const s1 = snap();
        const byInstance = new Map<string, number>();
        for (const ids of served) for (const id of ids) {
          const at = records.get(id)?.instance;
          if (at) byInstance.set(at, (byInstance.get(at) ?? 0) + 1);
        }
        const perInstance = [...s1].map(([id, b]) => {
          const a = s0.get(id) ?? { lookup: 0, hit: 0 };
          return { id, requests: byInstance.get(id) ?? 0, lookup: b.lookup - a.lookup, hit: b.hit - a.hit };
        }).sort((a, b) => (a.id < b.id ? -1 : 1));
        const lookupTokens = perInstance.reduce((a, p) => a + p.lookup, 0);
        const hitTokens = perInstance.reduce((a, p) => a + p.hit, 0);
        let energyJ = 0;
        for (const [id, e] of energy) energyJ += e - (e0.get(id) ?? 0);
        const ok = requests - errors.length;
        let requestEnergyJ = 0, same = 0, next = 0;
        for (const ids of served) {
          const at = ids.map((id) => records.get(id));
          for (const x of at) requestEnergyJ += x?.energyJ ?? 0;
          for (let t = 1; t < at.length; t++) {
            next++;
            if (at[t]?.instance !== undefined && at[t]!.instance === at[t - 1]?.instance) same++;
          }
        }
        const placed = perInstance.reduce((a, p) => a + p.requests, 0);
        const chanceSameShare = placed ? perInstance.reduce((a, p) => a + (p.requests / placed) ** 2, 0) : 0;
        return {
          routing: r.routing, requests, failed: errors.length, retried, errors: errors.slice(0, 5), lookupTokens, hitTokens, hitShare: lookupTokens > 0 ? hitTokens / lookupTokens : 0,
          perInstance, ttftP50Ms: pct(ttfts, 0.5), ttftP90Ms: pct(ttfts, 0.9), ttftP99Ms: pct(ttfts, 0.99), energyJ, energyPerRequestJ: ok ? energyJ / ok : NaN,
          requestEnergyJ, sameInstanceShare: next ? same / next : 0, chanceSameShare, wallS,
        };
      } finally {
        await gw.stop().catch(() => undefined);
      }
    },
  };
}

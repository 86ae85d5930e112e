/**
 * The request counts an instance manager carries in its telemetry (protocols/request-counts.ts), both ends:
 * - RequestTally: the manager adds each RequestRecord it publishes to its sums (one map lookup and a few additions).
 * - RequestCountDeltas: a consumer (the gateway's Prometheus metrics and live dashboard) takes, from each instance's
 *   cumulative counts, what was added since the last counts it saw of that instance's process: all of them for a
 *   process not seen before (a new instance, a restart: another `startedMs`), the difference otherwise. What it added
 *   stays added when the instance goes silent; it remembers the last counts of at most `maxInstances` instances.
 */
import { REQUEST_TTFT_BUCKETS_S, type RequestCountGroup, type RequestCounts, type RequestRecord } from '../../protocols/messages.ts';
import { RECORD_OUTCOMES } from '../../protocols/request-record.ts';

type Outcome = (typeof RECORD_OUTCOMES)[number];
/** an outcome as counted: one this reader does not know (a newer instance's) as 'failed', as the record codec takes it. */
const outcomeOf = (k: string): Outcome => ((RECORD_OUTCOMES as readonly string[]).includes(k) ? k as Outcome : 'failed');
/** groups an instance counts (the schema's bound): a model name and type past it is not counted. */
const MAX_GROUPS = 256;

/** The slot of REQUEST_TTFT_BUCKETS_S (plus one past the largest) that a TTFT of `s` seconds falls in. */
export function ttftSlot(s: number): number {
  const b = REQUEST_TTFT_BUCKETS_S;
  let i = 0;
  while (i < b.length && s > b[i]!) i++;
  return i;
}

export class RequestTally {
  readonly #groups = new Map<string, RequestCountGroup>();
  /** all the records' outcomes and tokens (the instance's own /metrics). */
  readonly outcomes: Partial<Record<RequestRecord['outcome'], number>> = {};
  promptTokens = 0;
  completionTokens = 0;

  /** Adds one record (as published by the instance) to its group's sums and to the totals. */
  add(r: RequestRecord): void {
    this.outcomes[r.outcome] = (this.outcomes[r.outcome] ?? 0) + 1;
    this.promptTokens += r.promptTokens;
    this.completionTokens += r.completionTokens;
    const model = r.model ?? '';
    const key = `${model}\u0000${r.type}`;
    let g = this.#groups.get(key);
    if (!g) {
      if (this.#groups.size >= MAX_GROUPS) return;
      g = { model, type: r.type, outcomes: {}, sloMissed: 0, ttft: new Array<number>(REQUEST_TTFT_BUCKETS_S.length + 1).fill(0), ttftSumS: 0, energyJ: {} };
      this.#groups.set(key, g);
    }
    g.outcomes[r.outcome] = (g.outcomes[r.outcome] ?? 0) + 1;
    if (r.outcome === 'ok') {
      if (!r.sloMet) g.sloMissed++;
      if (r.ttftMs !== undefined) {
        g.ttft[ttftSlot(r.ttftMs / 1000)]!++;
        g.ttftSumS += r.ttftMs / 1000;
      }
    }
    g.energyJ[r.energySource] = (g.energyJ[r.energySource] ?? 0) + r.energyJ;
  }

  /** A copy of the sums so far, for the telemetry of the process started at `startedMs`. */
  counts(startedMs: number): RequestCounts {
    const groups: RequestCountGroup[] = [];
    for (const g of this.#groups.values()) groups.push({ ...g, outcomes: { ...g.outcomes }, ttft: [...g.ttft], energyJ: { ...g.energyJ } });
    return { startedMs, groups };
  }
}

/** What one group added since the counts seen last (every figure >= 0). */
export interface RequestCountDelta {
  model: string;
  type: RequestCountGroup['type'];
  outcomes: Record<Outcome, number>;
  sloMissed: number;
  /** TTFTs by slot of REQUEST_TTFT_BUCKETS_S (not cumulative), their sum (s) and count. */
  ttft: number[];
  ttftSumS: number;
  ttftCount: number;
  energyJ: { measured: number; modelled: number };
  /** whether anything was added. */
  any: boolean;
}

interface Seen {
  startedMs: number;
  groups: Map<string, RequestCountGroup>;
}

const pos = (a: number, b: number | undefined) => Math.max(0, a - (b ?? 0));

/** One group's growth since `prev` (undefined: since nothing). */
function deltaOf(g: RequestCountGroup, prev: RequestCountGroup | undefined): RequestCountDelta {
  const outcomes = { ok: 0, rejected: 0, failed: 0, cancelled: 0, timed_out: 0 };
  let any = false;
  for (const [k, n] of Object.entries(g.outcomes)) {
    const d = pos(n, prev?.outcomes[k]);
    outcomes[outcomeOf(k)] += d;
    any ||= d > 0;
  }
  const ttft = g.ttft.map((n, i) => pos(n, prev?.ttft[i]));
  const ttftCount = ttft.reduce((a, b) => a + b, 0);
  const energyJ = { measured: pos(g.energyJ.measured ?? 0, prev?.energyJ.measured), modelled: pos(g.energyJ.modelled ?? 0, prev?.energyJ.modelled) };
  any ||= ttftCount > 0 || energyJ.measured > 0 || energyJ.modelled > 0;
  return { model: g.model, type: g.type, outcomes, sloMissed: pos(g.sloMissed, prev?.sloMissed), ttft, ttftSumS: ttftCount > 0 ? pos(g.ttftSumS, prev?.ttftSumS) : 0, ttftCount, energyJ, any };
}

/** Whether `g` is below `prev` somewhere (the same process cannot count down: another one reusing its start time). */
function shrank(g: RequestCountGroup, prev: RequestCountGroup): boolean {
  for (const [k, n] of Object.entries(prev.outcomes)) if ((g.outcomes[k] ?? 0) < n) return true;
  return g.sloMissed < prev.sloMissed || g.ttft.some((n, i) => n < (prev.ttft[i] ?? 0));
}

export class RequestCountDeltas {
  readonly #seen = new Map<string, Seen>();

  constructor(private readonly maxInstances = 4096) {}

  /** What instance `id`'s counts `c` add to what was taken of it before, one entry per group that grew. */
  take(id: string, c: RequestCounts): RequestCountDelta[] {
    let seen = this.#seen.get(id);
    if (seen && seen.startedMs !== c.startedMs) seen = undefined; // another process of the instance: its counts from 0
    if (seen && c.groups.some((g) => { const p = seen!.groups.get(`${g.model}\u0000${g.type}`); return p !== undefined && shrank(g, p); })) seen = undefined;
    const out: RequestCountDelta[] = [];
    const groups = new Map<string, RequestCountGroup>();
    for (const g of c.groups) {
      const key = `${g.model}\u0000${g.type}`;
      const d = deltaOf(g, seen?.groups.get(key));
      if (d.any) out.push(d);
      groups.set(key, g);
    }
    // the most recently heard last (the oldest forgotten first past maxInstances)
    this.#seen.delete(id);
    this.#seen.set(id, { startedMs: c.startedMs, groups });
    if (this.#seen.size > this.maxInstances) this.#seen.delete(this.#seen.keys().next().value!);
    return out;
  }
}

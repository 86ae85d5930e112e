/**
 * The gateways' own failover counters in a `dynamollm chaos` report (retries, migrations, resumes, holds: their
 * /metrics). A replica's counters live as long as its process: one killed during the run starts again from 0.
 * The harness scrapes every replica every SCRAPE_EVERY_MS (each scrape with a deadline, one at a time per replica)
 * and once more at the end, and counts each process's increase: a counter that went down, or a process start time
 * that changed, is a new process, whose counters count from 0 again (tallyScrape, pure). What a process counted
 * after its last scrape before its death is not seen (at most one period's increase per kill); a restart whose new
 * process counted past the old one's last reading by the next scrape is seen by the start time only (exposed where
 * the replica runs no workers: prom-client omits it from the workers' aggregate).
 */

/** The report's name of each counter, and its Prometheus series (actors/gateway/main.ts failoverMetrics). */
export const GATEWAY_COUNTERS = {
  retries: 'dynamollm_gateway_admission_retries_total',
  migrated: 'dynamollm_gateway_migrations_total',
  resumed: 'dynamollm_gateway_resumed_total',
  held: 'dynamollm_gateway_held_for_reconnect_total',
  poolHolds: 'dynamollm_gateway_pool_holds_total',
  electionHolds: 'dynamollm_gateway_election_holds_total',
  localTokenized: 'dynamollm_gateway_local_tokenize_total',
} as const;
export type CounterKey = keyof typeof GATEWAY_COUNTERS;
const KEYS = Object.keys(GATEWAY_COUNTERS) as CounterKey[];

/** The counters (null: not in the text read). */
export type Counters = Record<CounterKey, number | null>;

/** One scrape of one replica: its counters and its process start (s since the epoch; null where not exposed). */
export interface Scrape { startS: number | null; counters: Counters }

/** The series of a replica's process start time (src/telemetry/metrics.ts: prom-client's defaults, prefixed). */
const START_SERIES = 'dynamollm_process_process_start_time_seconds';

const none = (): Counters => Object.fromEntries(KEYS.map((k) => [k, null])) as Counters;

/** The counters and the process start in a /metrics text. */
export function parseScrape(text: string): Scrape {
  const read = (name: string) => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  return { startS: read(START_SERIES), counters: Object.fromEntries(KEYS.map((k) => [k, read(GATEWAY_COUNTERS[k])])) as Counters };
}

/**
 * One replica's counters over the run: the increase of its ended processes, the current process's last scrape,
 * the scrapes answered and missed, and the restarts seen.
 */
export interface ReplicaTally { ended: Counters; last: Scrape | null; scrapes: number; missed: number; restarts: number }

export function emptyTally(): ReplicaTally {
  return { ended: none(), last: null, scrapes: 0, missed: 0, restarts: 0 };
}

const add = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : a + b);

/**
 * The tally with one more scrape (null: missed, no answer in time). A scrape whose start time differs from the
 * last one's, or with a counter below the last one's reading, is of a new process: the last scrape's readings
 * close the ended process and the new one's count from 0. A missed scrape changes no count: the next answered
 * one carries the increase meanwhile.
 */
export function tallyScrape(t: ReplicaTally, s: Scrape | null): ReplicaTally {
  if (!s) return { ...t, missed: t.missed + 1 };
  const prev = t.last;
  const restarted = prev !== null && (
    (prev.startS !== null && s.startS !== null && prev.startS !== s.startS) ||
    KEYS.some((k) => prev.counters[k] !== null && s.counters[k] !== null && s.counters[k] < prev.counters[k]));
  if (!restarted) return { ...t, last: s, scrapes: t.scrapes + 1 };
  const ended = Object.fromEntries(KEYS.map((k) => [k, add(t.ended[k], prev.counters[k])])) as Counters;
  return { ended, last: s, scrapes: t.scrapes + 1, missed: t.missed, restarts: t.restarts + 1 };
}

/** The counters of every process of one replica (null: never read). */
export function tallyTotal(t: ReplicaTally): Counters {
  return Object.fromEntries(KEYS.map((k) => [k, add(t.ended[k], t.last?.counters[k] ?? null)])) as Counters;
}

/** The counters summed over the replicas (null: read from none), and the scrapes answered, missed and the restarts seen. */
export function sumTallies(ts: readonly ReplicaTally[]): { counters: Counters; scrapes: number; missed: number; restarts: number } {
  const totals = ts.map(tallyTotal);
  return {
    counters: Object.fromEntries(KEYS.map((k) => [k, totals.reduce<number | null>((n, c) => add(n, c[k]), null)])) as Counters,
    scrapes: ts.reduce((n, t) => n + t.scrapes, 0),
    missed: ts.reduce((n, t) => n + t.missed, 0),
    restarts: ts.reduce((n, t) => n + t.restarts, 0),
  };
}

/** period of the scrapes, ms. */
export const SCRAPE_EVERY_MS = 1000;
/** deadline of one scrape, ms. */
export const SCRAPE_DEADLINE_MS = 1000;

/** Scrapes every replica's /metrics every `everyMs` (one scrape at a time per replica) into its tally. */
export class CounterScraper {
  private readonly tallies: ReplicaTally[];
  private readonly busy: boolean[];
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly urls: readonly string[], private readonly token: string | undefined, private readonly everyMs = SCRAPE_EVERY_MS, private readonly deadlineMs = SCRAPE_DEADLINE_MS) {
    this.tallies = urls.map(() => emptyTally());
    this.busy = urls.map(() => false);
  }

  start(): void {
    this.timer ??= setInterval(() => {
      for (let i = 0; i < this.urls.length; i++) void this.scrape(i);
    }, this.everyMs).unref();
  }

  /** Stops the period, then scrapes every replica once more (waiting for one still under way first). */
  async finish(): Promise<ReturnType<typeof sumTallies>> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    for (const until = Date.now() + this.deadlineMs; this.busy.some(Boolean) && Date.now() < until;) await new Promise((r) => setTimeout(r, 20));
    await Promise.all(this.urls.map((_, i) => this.scrape(i)));
    return sumTallies(this.tallies);
  }

  private async scrape(i: number): Promise<void> {
    if (this.busy[i]) return;
    this.busy[i] = true;
    try {
      const r = await fetch(`${this.urls[i]}/metrics`, { headers: this.token ? { authorization: `Bearer ${this.token}` } : {}, signal: AbortSignal.timeout(this.deadlineMs) });
      const s = r.ok ? parseScrape(await r.text()) : null;
      this.tallies[i] = tallyScrape(this.tallies[i]!, s);
    } catch {
      this.tallies[i] = tallyScrape(this.tallies[i]!, null);
    } finally {
      this.busy[i] = false;
    }
  }
}

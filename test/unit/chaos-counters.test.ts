/**
 * The gateways' counters in a `dynamollm chaos` report (src/cli/chaos-counters.ts): each replica's /metrics scraped
 * through the run, the increase of each of its processes added up. A replica killed mid-run counts what its earlier
 * process counted (up to its last scrape) and what the new one counts from 0; a missed scrape loses nothing.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { CounterScraper, emptyTally, parseScrape, sumTallies, tallyScrape, tallyTotal, type Counters, type Scrape } from '../../src/cli/chaos-counters.ts';

const counters = (retries: number | null, migrated: number | null = 0): Counters =>
  ({ retries, migrated, resumed: 0, held: 0, poolHolds: 0, electionHolds: 0, localTokenized: 0 });
const scrape = (retries: number | null, migrated: number | null = 0, startS: number | null = null): Scrape => ({ startS, counters: counters(retries, migrated) });
const tally = (...ss: (Scrape | null)[]) => ss.reduce((t, s) => tallyScrape(t, s), emptyTally());

describe('tallyScrape', () => {
  it('counts a process restarted mid-run from 0 again: a counter that went down closes the earlier process at its last reading', () => {
    // retries 3, 7, then the replica is killed and its new process reads 2, 5: 7 + 5
    const t = tally(scrape(3, 1), scrape(7, 4), scrape(2, 0), scrape(5, 2));
    expect(tallyTotal(t).retries).toBe(12);
    // one counter's fall is the whole process's restart: migrated 4 of the earlier process + 2
    expect(tallyTotal(t).migrated).toBe(6);
    expect(t.restarts).toBe(1);
  });

  it('loses nothing to a missed scrape: the next answered one carries the increase, also across a restart', () => {
    const t = tally(scrape(3), null, scrape(9));
    expect(tallyTotal(t).retries).toBe(9);
    expect(t).toMatchObject({ scrapes: 2, missed: 1, restarts: 0 });
    // killed while unanswered: the earlier process counts to its last reading (4), the new one from 0 (1)
    expect(tallyTotal(tally(scrape(4), null, null, scrape(1))).retries).toBe(5);
  });

  it('tells a restart by the process start time where the new process counted past the old one\'s last reading', () => {
    const t = tally(scrape(3, 0, 1000), scrape(5, 0, 1010));
    expect(tallyTotal(t).retries).toBe(8);
    expect(t.restarts).toBe(1);
    // the same start time and counters that only grow: one process
    expect(tallyTotal(tally(scrape(3, 0, 1000), scrape(5, 0, 1000))).retries).toBe(5);
  });

  it('keeps a counter null until some scrape reads it, and sums replicas (null where none read it)', () => {
    expect(tallyTotal(tally(null, null)).retries).toBeNull();
    const a = tally(scrape(2, null), scrape(1, null));
    const b = tally(scrape(null, null), scrape(4, null));
    const s = sumTallies([a, b, emptyTally()]);
    expect(s.counters.retries).toBe(2 + 1 + 4);
    expect(s.counters.migrated).toBeNull();
    expect(s).toMatchObject({ scrapes: 4, missed: 0, restarts: 1 });
  });
});

describe('parseScrape', () => {
  it('reads the counters and the process start from a /metrics text, labelled or not; null where absent', () => {
    const text = [
      '# HELP dynamollm_gateway_admission_retries_total x',
      '# TYPE dynamollm_gateway_admission_retries_total counter',
      'dynamollm_gateway_admission_retries_total 12',
      'dynamollm_gateway_migrations_total{replica="gw-0"} 3',
      'dynamollm_gateway_admission_retries_total_other 99',
      'dynamollm_process_process_start_time_seconds 1765000000',
    ].join('\n');
    const s = parseScrape(text);
    expect(s.startS).toBe(1765000000);
    expect(s.counters.retries).toBe(12);
    expect(s.counters.migrated).toBe(3);
    expect(s.counters.resumed).toBeNull();
  });
});

const servers: Server[] = [];
afterAll(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
});

describe('CounterScraper', () => {
  it('scrapes a replica through the run: a restart in the middle and a scrape past its deadline lose no count', async () => {
    // a replica stand-in: retries 0..5 in its first process, a scrape unanswered past the deadline, then a new
    // process counting from 0 (1, 2, 3 ...)
    let n = 0;
    const auth: (string | undefined)[] = [];
    const server = createServer((req, res) => {
      auth.push(req.headers.authorization);
      const i = n++;
      if (i === 6) return; // no answer: the scrape's deadline
      const retries = i < 6 ? i : i - 6;
      res.writeHead(200, { 'content-type': 'text/plain' }).end(`dynamollm_gateway_admission_retries_total ${retries}\n`);
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const scraper = new CounterScraper([url], 'metrics-token-0123456789', 40, 1000);
    scraper.start();
    while (n < 10) await new Promise((r) => setTimeout(r, 10));
    const got = await scraper.finish();
    const last = n - 1 - 6;
    // the first process's 5 and the second's last reading
    expect(got.counters.retries).toBe(5 + last);
    expect(got.restarts).toBe(1);
    // the unanswered one (and any other past its deadline on a loaded host: the next answered one carries it)
    expect(got.missed).toBeGreaterThanOrEqual(1);
    expect(auth.every((a) => a === 'Bearer metrics-token-0123456789')).toBe(true);
    server.closeAllConnections();
  });
});

/**
 * Admission credits against an instance's seats, in simulated time, with the policy's own functions (src/policy/machines/
 * credits.ts: the gateway's creditSpend / creditReceived, the instance's lendCredits / spendCredit): G gateway processes
 * with C closed-loop clients each, an engine that serves every request in SERVICE_MS (no batching limit but the
 * instance's MAX seats), and a one-way NATS delay of RTT/2 for every report, admission and loan. A request that finds no
 * credit asks for admission (one round trip; queued at the instance while running requests and credits outstanding
 * fill its seats). Prints, per (G, C, RTT): requests per second, the share routed without a credit, the share queued.
 *   npx tsx scripts/credit-seats.ts   env: MAX (64), PER (16: engine.gatewayCredits), SERVICE_MS (1), SIM_S (5), HOLD_MS (0)
 * The instance hears of a credited start RTT/2 after it and of an end RTT/2 after it, so a request holds its seat
 * from start to end shifted by RTT/2, and the credits spent on the way still count as outstanding: the seats the
 * loans need grow with the rate times the round trip, on top of the requests running.
 */
import { CREDIT_RENEW_TRIPS, creditReceived, creditsForTrips, creditSpend, creditsOutstanding, initialCreditLedger, lendCredits, spendCredit, type CreditLedger, type CreditLines } from '../src/policy/machines/credits.ts';

const MAX = Number(process.env.MAX ?? 64);
const PER = Number(process.env.PER ?? 16);
const SERVICE_MS = Number(process.env.SERVICE_MS ?? 1);
const SIM_MS = Number(process.env.SIM_S ?? 5) * 1000;
/**
 * the gateway's hold of the reports that want no reply (a credited start without a top-up, an end), ms: while reports
 * come often they go out together at the end of a window of this length (actors/gateway/leg-reports.ts), modelled as
 * windows back to back, so that a leg's reports keep their order.
 */
const HOLD_MS = Number(process.env.HOLD_MS ?? 0);
/**
 * RECYCLE=1: a credited request's end gives its seat back to the gateway that spent it when that gateway's line holds
 * fewer credits than its pace spends in CREDIT_RENEW_TRIPS loan round trips: the gateway adds one credit to its line when
 * its leg ends and says so in the end's report, and the instance adds one to that gateway's loan when it reads it (while
 * the loan is of the same epoch and live). A study of the rule, not the policy's.
 */
const RECYCLE = process.env.RECYCLE === '1';
/** the client's turnaround between two requests, ms. */
const THINK_MS = 0.02;

/** A binary min-heap of timed callbacks (the simulation's clock). */
class Agenda {
  #h: { t: number; n: number; f: () => void }[] = [];
  #n = 0;
  now = 0;
  at(t: number, f: () => void): void {
    const h = this.#h;
    h.push({ t, n: this.#n++, f });
    for (let i = h.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (before(h[p]!, h[i]!)) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }
  run(): void {
    const h = this.#h;
    while (h.length) {
      const top = h[0]!;
      const last = h.pop()!;
      if (h.length) {
        h[0] = last;
        for (let i = 0; ;) {
          const l = 2 * i + 1, r = l + 1;
          let m = i;
          if (l < h.length && before(h[l]!, h[m]!)) m = l;
          if (r < h.length && before(h[r]!, h[m]!)) m = r;
          if (m === i) break;
          [h[m], h[i]] = [h[i]!, h[m]!];
          i = m;
        }
      }
      this.now = top.t;
      top.f();
    }
  }
}
const before = (a: { t: number; n: number }, b: { t: number; n: number }) => a.t < b.t || (a.t === b.t && a.n < b.n);

function simulate(G: number, C: number, rttMs: number): { reqPerS: number; uncredited: number; queued: number; overdrafts: number } {
  const ag = new Agenda();
  const d = rttMs / 2;
  let ledger: CreditLedger = initialCreditLedger();
  const running = new Set<number>();
  const waiting: (() => void)[] = [];
  const lines: CreditLines[] = Array.from({ length: G }, (): CreditLines => new Map());
  const cfg = { perGateway: PER, ttlMs: 2000 };
  const ctx = { grant: { url: '', apiKey: '' }, pool: 'p' };
  let sent = 0, uncredited = 0, queued = 0, done = 0;
  const hold = () => (HOLD_MS > 0 ? Math.ceil(ag.now / HOLD_MS) * HOLD_MS - ag.now : 0);
  const seatsTaken = () => running.size + creditsOutstanding(ledger, ag.now);
  const lend = (g: number, want?: number) => {
    const r = lendCredits(ledger, `g${g}`, waiting.length === 0 ? MAX - seatsTaken() : 0, ag.now, cfg, want);
    ledger = r.ledger;
    return r.loan;
  };
  const admitWaiting = () => {
    while (waiting.length && seatsTaken() < MAX) waiting.shift()!();
  };
  // the engine serves it; the end reaches the instance d later; the client sends its next request
  const serve = (id: number, g: number, epoch?: number) => ag.at(ag.now + SERVICE_MS, () => {
    if (ag.now <= SIM_MS) done++;
    const line = lines[g]!.get('i');
    // the gateway keeps the seat only while its line holds fewer credits than its pace spends in CREDIT_RENEW_TRIPS round
    // trips (at least one), and says so in the end's report; the instance adds it to that gateway's loan
    const keep = RECYCLE && epoch !== undefined && line !== undefined && line.epoch === epoch && ag.now <= line.expiresMs &&
      line.total - line.spent < Math.max(1, creditsForTrips(line.pace, CREDIT_RENEW_TRIPS));
    if (keep) line.total++;
    ag.at(ag.now + d + hold(), () => {
      running.delete(id);
      const l = ledger.loans.get(`g${g}`);
      if (keep && l && ledger.epoch === epoch && ag.now <= l.untilMs) {
        ledger = { ...ledger, loans: new Map(ledger.loans).set(`g${g}`, { ...l, total: l.total + 1 }) };
      }
      admitWaiting();
    });
    ag.at(ag.now + THINK_MS, () => send(g));
  });
  const send = (g: number) => {
    if (ag.now > SIM_MS) return;
    const id = sent++;
    const spent = creditSpend(lines[g]!, 'i', ag.now);
    if (spent) {
      serve(id, g, spent.epoch);
      ag.at(ag.now + d + (spent.topUp ? 0 : hold()), () => {
        ledger = spendCredit(ledger, `g${g}`, spent.epoch, ag.now).ledger;
        running.add(id);
        if (spent.topUp) {
          const loan = lend(g, spent.want);
          ag.at(ag.now + d, () => creditReceived(lines[g]!, 'i', loan, ctx, ag.now));
        }
      });
      return;
    }
    uncredited++;
    const asked = ag.now;
    ag.at(ag.now + d, () => {
      const admit = () => {
        running.add(id);
        const loan = lend(g);
        ag.at(ag.now + d, () => (creditReceived(lines[g]!, 'i', loan, { ...ctx, tripMs: ag.now - asked }, ag.now), serve(id, g)));
      };
      if (waiting.length === 0 && seatsTaken() < MAX) return admit();
      queued++;
      waiting.push(admit);
    });
  };
  for (let g = 0; g < G; g++) for (let c = 0; c < C; c++) ag.at((g * C + c) * 0.01, () => send(g));
  ag.run();
  return { reqPerS: done / (SIM_MS / 1000), uncredited: uncredited / sent, queued: queued / sent, overdrafts: ledger.overdrafts / sent };
}

console.log(`seats ${MAX}, engine.gatewayCredits ${PER}, service ${SERVICE_MS} ms, reports held up to ${HOLD_MS} ms, ${SIM_MS / 1000} s simulated${RECYCLE ? ', ends recycle their seats' : ''}`);
console.log('| gateways x clients | round trip (ms) | req/s | without a credit | queued at the instance | overdrafts |\n|---|---|---|---|---|---|');
for (const [G, C] of [[1, 16], [4, 4], [8, 2]] as const) {
  for (const rtt of [0.3, 1, 3, 6]) {
    const r = simulate(G, C, rtt);
    console.log(`| ${G} x ${C} | ${rtt} | ${r.reqPerS.toFixed(0)} | ${(r.uncredited * 100).toFixed(1)}% | ${(r.queued * 100).toFixed(1)}% | ${(r.overdrafts * 100).toFixed(2)}% |`);
  }
}

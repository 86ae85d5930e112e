/**
 * The gateway's own routing (docs/DATAPATH.md "Request plane"): the shell of src/policy/machines/router.ts.
 * It follows the routing table the cluster leader publishes and every instance's status, classifies a
 * request as intake does (src/policy/classify.ts classifyIntake, with its own online output predictor that
 * learns from the ends of the legs it routed, as its backend streams them), and says which pools and instances to ask. The
 * gateway's backend (nats-backend.ts) then asks the chosen instance for admission directly; whatever this
 * view cannot decide (no table yet, no ready instance in it) goes to the cluster intake.
 */
import { suspectAfterMsOf } from '../../src/policy/suspect.ts';
import type { Bus, SubscribeHandle } from '../../src/runtime/bus.ts';
import { systemClock, type Clock } from '../../src/runtime/clock.ts';
import { Admission, ClientDisconnect, InferenceRequest, InstanceStatus, endedConnection, RoutingTable, controlSubjects, subjects, type DispatchView, type DynError, type RequestType } from '../../protocols/index.ts';
import { OnlineOutputPredictor, type PredictorAccuracy } from '../../src/policy/predictor.ts';
import type { Profile } from '../../src/model/profile-types.ts';
import { initialRouterState, routerCapacityComing, routerConnectionEnded, routerGone, routerHeard, routerHolderGone, routerLink, routerPick, routerPools, routerStatus, routerSweep, routerTable, routerView, type RouterConfig, type RouterState } from '../../src/policy/machines/router.ts';
import { spillNext, spillPasses } from '../../src/policy/machines/cluster.ts';
import { creditReceived, creditRecycle, creditSpend, creditTopUpFailed, type CreditSpent, type LoanContext } from '../../src/policy/machines/credits.ts';
import { classifyIntake } from '../../src/policy/classify.ts';
import { thresholdsOf, withSlo, type ClassifiedRequest } from '../../src/policy/slo.ts';
import type { ClusterConfig } from '../common/config.ts';
import type { AbortLike } from '../../src/runtime/abort.ts';

/** What the backend needs of a router (a test may give its own view). */
export interface RequestRouter {
  /** The request classified as intake would (type, SLO, predicted output) and the pools to try in order; undefined: send it to intake. */
  plan(req: InferenceRequest): { req: ClassifiedRequest; pools: string[] } | undefined;
  /** The instance of `pool` to ask next (not one of `exclude`), counted in the view; undefined: none left, or (`spill`) every one at its SLO cap. */
  pick(pool: string, req: ClassifiedRequest, exclude: ReadonlySet<string>, spill?: boolean): string | undefined;
  /** The instance did not answer (no responders): out of the view until its next status. */
  gone(pool: string, instance: string): void;
  /** A leg of this gateway ended: its completion tokens when it ended ok (the output predictor learns them), undefined when not. */
  learn?(id: string, completionTokens: number | undefined): void;
  /** The process of `instance` that admitted a request at `admittedMs` (started at `startedMs`) is gone: dead, or replaced by a new process. */
  holderGone(instance: string, startedMs: number | undefined, admittedMs: number): boolean;
  /** No instance ready, and one seen less than `holdMs` ago is starting, restarting or dead (policy routerCapacityComing). */
  capacityComing?(holdMs: number): boolean;
  /** this gateway's id, which the instances lend admission credits to (absent: it asks for none). */
  readonly creditId?: string;
  /** the router's time (a loan's round trip is timed on it). */
  readonly clock?: Clock;
  /** A credit of `instance` spent, when one is there (policy creditSpend). */
  spendCredit?(instance: string): CreditSpent | undefined;
  /** A loan of `instance` arrived (an admission reply, a top-up reply); undefined: a top-up that brought none. */
  creditLoan?(instance: string, loan: Admission['credit'], ctx: LoanContext): void;
  /** A leg started on a credit of `epoch` ended well: whether the gateway keeps its seat as a credit (policy creditRecycle). */
  recycleCredit?(instance: string, epoch: number, startedMs: number | undefined): boolean;
}

/** legs whose features are kept for the predictor until their stream's end (bounded). */
const FEATURES_KEPT = 50_000;

export class GatewayRouter implements RequestRouter {
  #s: RouterState = initialRouterState();
  #cfg: RouterConfig;
  #predictor: OnlineOutputPredictor;
  #features = new Map<string, { inputTokens: number; maxTokens: number; model: string; tenant?: string }>();
  #subs: SubscribeHandle[] = [];

  readonly creditId?: string;

  /** `creditId`: this gateway's id, to be lent admission credits under (absent: none asked); `clock`: the view's time (src/runtime/clock.ts). */
  constructor(private readonly bus: Bus, private readonly config: ClusterConfig, profile?: Profile, creditId?: string, readonly clock: Clock = systemClock) {
    if (creditId !== undefined && config.engine.gatewayCredits > 0) this.creditId = creditId;
    this.#cfg = { ...(profile ? { profile } : {}), headroom: config.policy.headroom, deadAfterMs: config.liveness.deadAfterMs, suspectAfterMs: suspectAfterMsOf(config.liveness), prefixRouting: config.policy.prefixRouting ?? config.engine.prefixCaching === true };
    this.#predictor = new OnlineOutputPredictor({ thresholds: thresholdsOf(config) });
  }

  start(): void {
    this.bus.on('status', this.#onLink);
    this.#subs.push(
      this.bus.subscribe(controlSubjects.routing(), RoutingTable, (t) => {
        const now = this.clock.now();
        routerHeard(this.#s, now, this.#cfg);
        routerTable(this.#s, t, now);
      }, { capacity: 64 }),
      this.bus.subscribe(controlSubjects.instanceStatusAll(), InstanceStatus, (st) => {
        const now = this.clock.now();
        routerHeard(this.#s, now, this.#cfg);
        routerStatus(this.#s, st, now);
        routerSweep(this.#s, now, this.#cfg);
      }, {
        capacity: 8192, expectSubject: (st) => controlSubjects.instanceStatus(st.pool, st.id),
      }),
      // the server's word that a connection of the account ended: an instance reporting on it leaves this view's dispatch at once
      this.bus.subscribe(controlSubjects.connectionEnded(), ClientDisconnect, (a) => {
        const conn = endedConnection(a);
        if (conn) routerConnectionEnded(this.#s, conn, this.clock.now(), this.#cfg);
      }, { capacity: 4096 }),
    );
  }

  /** Whether a routing table arrived (before it, every request goes to the cluster intake). */
  routable(): boolean {
    return this.#s.epoch !== undefined;
  }

  stop(): void {
    this.bus.off('status', this.#onLink);
    for (const s of this.#subs.splice(0)) s.unsubscribe();
  }

  /** the bus's own link: its silence while down calls no holder gone (policy routerLink). */
  readonly #onLink = (st: { type: string }): void => {
    if (st.type === 'disconnect' || st.type === 'reconnect') routerLink(this.#s, st.type === 'reconnect', this.clock.now());
  };

  /** The instances this view routes to now and those it tracks that take no request, by pool (policy routerView). */
  view(): { routing: boolean; pools: DispatchView['pools'] } {
    return routerView(this.#s, this.clock.now(), this.#cfg);
  }

  /**
   * A leg's end, as this gateway streamed it (nats-backend.ts): a leg it routed that ended ok teaches the predictor its
   * completion tokens (the engine's count, the instance's record's own); any other end (undefined) lets its features go.
   */
  learn(id: string, completionTokens: number | undefined): void {
    const f = this.#features.get(id);
    if (!f) return;
    this.#features.delete(id);
    if (completionTokens !== undefined) this.#predictor.observe(f, completionTokens);
  }

  /** The output predictor's observations and accuracy (the legs it learned from). */
  predictorAccuracy(): PredictorAccuracy {
    return this.#predictor.accuracy();
  }

  plan(req: InferenceRequest): { req: ClassifiedRequest; pools: string[] } | undefined {
    if (this.#s.epoch === undefined) return undefined;
    let cls: { type: RequestType; predicted: number };
    try {
      cls = classifyIntake(req, this.#predictor, this.config);
    } catch {
      return undefined; // intake answers the invalid request with its own error
    }
    const pools = routerPools(this.#s, cls.type, this.clock.now(), this.#cfg);
    if (!pools.length) return undefined;
    if (this.#features.size >= FEATURES_KEPT) this.#features.delete(this.#features.keys().next().value!);
    // the predictor learns from traffic, not from a readiness probe
    if (!req.probe) this.#features.set(req.id, { inputTokens: req.inputTokens, maxTokens: req.maxTokens, model: req.model, ...(req.tenant ? { tenant: req.tenant } : {}) });
    // withSlo's object is a new one: the prediction goes on it (one copy of the request, not two)
    const classified: ClassifiedRequest = withSlo(req, cls.type, this.config);
    classified.predictedOutputTokens = cls.predicted;
    return { req: classified, pools };
  }

  pick(pool: string, req: ClassifiedRequest, exclude: ReadonlySet<string>, spill?: boolean): string | undefined {
    return routerPick(this.#s, pool, req, exclude, this.clock.now(), this.#cfg, spill);
  }

  gone(pool: string, instance: string): void {
    routerGone(this.#s, pool, instance, this.clock.now());
  }

  holderGone(instance: string, startedMs: number | undefined, admittedMs: number): boolean {
    return routerHolderGone(this.#s, instance, startedMs, admittedMs, this.clock.now(), this.#cfg);
  }

  capacityComing(holdMs: number): boolean {
    return routerCapacityComing(this.#s, this.clock.now(), this.#cfg, holdMs);
  }

  spendCredit(instance: string): CreditSpent | undefined {
    return this.#s.credits.size ? creditSpend(this.#s.credits, instance, this.clock.now()) : undefined;
  }

  recycleCredit(instance: string, epoch: number, startedMs: number | undefined): boolean {
    return this.#s.credits.size ? creditRecycle(this.#s.credits, instance, epoch, startedMs, this.clock.now()) : false;
  }

  creditLoan(instance: string, loan: Admission['credit'], ctx: LoanContext): void {
    if (loan) creditReceived(this.#s.credits, instance, loan, ctx, this.clock.now());
    else creditTopUpFailed(this.#s.credits, instance);
  }
}

/** Instances of one pool asked in turn (the pool leader's dispatch tries as many). */
const DIRECT_TRIES = 4;

/**
 * A request admitted by the gateway's own routing: the pools intake would try, in each the instances the
 * pool's dispatch would pick (at most DIRECT_TRIES), each asked directly; an overloaded pool spills to the
 * next, as intake does. 'intake': the view cannot decide (no table, nothing ready in it, an instance refusing
 * as unavailable: a pool leader may hold the request); 'timed_out': an instance did not answer in time and
 * may hold the request.
 */
export type RoutedAdmission = Admission & {
  /** started on a credit the instance lent (no admission asked): the request to report as credited, and the credit. */
  credited?: { req: InferenceRequest; gateway: string; epoch: number; topUp: boolean; want?: number; joins?: boolean; batches?: boolean };
};

/** A copy of `o` with `k` set to `v` (Object.assign, then the member: Node 20's V8 adds a member to a spread's copy on its slow path, ~2 us). */
function withMember<T extends object, K extends string, V>(o: T, k: K, v: V): T & Record<K, V> {
  const out = Object.assign({}, o) as T & Record<K, V>;
  (out as Record<K, V>)[k] = v;
  return out;
}

/**
 * A direct request as an instance is sent it (InferenceRequest.promptForm): without its prompt, which the gateway holds
 * and sends to the engine itself, and with the prompt's form (the instance's drain migration reads it). The prompt
 * is most of the request (a 2,000-token-id prompt is ~6 KB of its ~6.3 KB), which the admission and the credited
 * report would otherwise encode and validate here and decode and validate at the instance, per request.
 */
export function withoutPrompt<R extends InferenceRequest>(req: R): R {
  if (req.prompt === undefined && req.messages === undefined) return req;
  // its members copied one by one, in their order (an object rest and a spread of it allocate about three copies' bytes)
  const out: Record<string, unknown> = {};
  for (const k in req) if (k !== 'prompt' && k !== 'messages') out[k] = req[k];
  out.promptForm = req.messages !== undefined ? 'chat' : typeof req.prompt === 'string' ? 'text' : 'ids';
  return out as R;
}

export async function admitRouted(bus: Bus, router: RequestRouter, msg: InferenceRequest, signal: AbortLike, timeoutMs: number, exclude?: string): Promise<RoutedAdmission | 'intake' | 'timed_out'> {
  if (!bus.connected) return 'intake';
  const plan = router.plan(msg);
  if (!plan) return 'intake';
  // what the instance is sent: a direct request without its prompt (the router's pick reads the prompt: plan.req)
  const sent = msg.direct ? withoutPrompt(plan.req) : plan.req;
  const tried = new Set<string>(exclude ? [exclude] : []);
  const clock = router.clock ?? systemClock;
  // policy spillPasses, spillNext: along the chain a pool whose every instance is at its SLO cap is passed over; every
  // pool passed over or refusing, the chain again without that (the first pool takes it at its cap); a pool's answer
  // (its last instance's) other than overloaded ends the walk
  let move = spillNext<string, Admission>({ offers: spillPasses(plan.pools) });
  while (move.kind === 'offer') {
    const { pool, spill } = move.offer;
    let last: Admission | undefined;
    for (let k = 0; k < DIRECT_TRIES; k++) {
      const id = router.pick(pool, plan.req, tried, spill && k === 0);
      if (id === undefined) break;
      tried.add(id);
      const creditTo = msg.direct ? router.creditId : undefined;
      // a credit the instance lent this gateway: the request starts now, the instance is told (no round trip)
      const c = creditTo !== undefined ? router.spendCredit?.(id) : undefined;
      if (c && creditTo !== undefined) {
        return {
          v: 1, id: msg.id, ok: true, instance: id, pool, type: plan.req.type, grant: c.grant, ...(c.startedMs !== undefined ? { startedMs: c.startedMs } : {}),
          credited: { req: withMember(sent, 'pool', pool), gateway: creditTo, epoch: c.epoch, topUp: c.topUp, ...(c.want !== undefined ? { want: c.want } : {}), ...(c.joins ? { joins: true } : {}), ...(c.batches ? { batches: true } : {}) },
        };
      }
      let a: Admission;
      let askedMs = 0;
      try {
        // a direct request asks for its grant in the reply (one message less when it starts at once), and for credits
        const asked = withMember(sent, 'pool', pool);
        if (msg.direct) asked.replyGrant = true;
        if (creditTo !== undefined) asked.creditTo = creditTo;
        askedMs = clock.now();
        a = await bus.request(subjects.instanceAdmit(id), InferenceRequest, asked, Admission, { timeoutMs, signal });
      } catch (err) {
        const code = (err as DynError).code;
        if (code === 'no_responders') {
          router.gone(pool, id); // its process is gone; nobody holds the request
          continue;
        }
        if (code === 'timeout') return 'timed_out';
        if (signal.aborted) throw err;
        return 'intake';
      }
      if (a.ok && a.grant && a.credit) router.creditLoan?.(id, a.credit, { grant: a.grant, pool, ...(a.startedMs !== undefined ? { startedMs: a.startedMs } : {}), tripMs: clock.now() - askedMs });
      if (a.ok) {
        // the reply's members but the loan, one by one (a rest and a spread with members added take V8's slow path)
        const admitted: Record<string, unknown> = {};
        for (const k in a) if (k !== 'credit') admitted[k] = a[k as keyof Admission];
        admitted.pool = pool;
        admitted.type = plan.req.type;
        return admitted as RoutedAdmission;
      }
      if (a.error?.code === 'unavailable') return 'intake'; // draining, restarting: the pool leader may hold it
      if (a.error && !a.error.retryable) return a;
      last = a;
    }
    move = spillNext(move.walk, last);
  }
  return move.answer ? { ...move.answer, type: plan.req.type } : 'intake';
}

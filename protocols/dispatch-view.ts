/**
 * A dispatcher's own view of the instances it sends requests to, answered on subjects.dispatchView (request:
 * StatusRequest): a gateway's routing view or a pool manager's dispatch view of each pool it hosts. Read by the
 * observer (`dynamollm chaos` times a dead instance's leave of every view by it); computed only when asked.
 */
import { z } from 'zod';
import { codec } from './codec.ts';
import { DISPATCH_VIEW_KINDS } from './subjects.ts';

const v = z.literal(1);
const id = z.string().min(1).max(128).regex(/^[A-Za-z0-9_-]+$/);
const nonneg = z.number().finite().nonnegative();

/** Why an instance a dispatcher tracks takes no request now (policy outOfDispatch). */
export const DISPATCH_OUT_REASONS = [
  /** its status says a state other than ready (starting, restarting, draining, failed, ...). */
  'state',
  /** dead in this view: the pool leader's death verdict, or (gateway) it did not answer an admission (no responders). */
  'dead',
  /** (gateway) no status from it for liveness.deadAfterMs. */
  'lapsed',
  /** no status from it for liveness.suspectAfterMs while another instance of its pool was heard (policy suspect.ts): no new request, its own go on. */
  'suspect',
  /** the NATS server said the connection its status went out on ended (protocols/nats-advisory.ts). */
  'conn_ended',
] as const;
export type DispatchOutReason = (typeof DISPATCH_OUT_REASONS)[number];

/**
 * One dispatcher's view of the instances it sends requests to (subjects.dispatchView): a gateway's own routing (the
 * pools its routing table names and the instances of each it tracks), or a pool manager's dispatch view of each pool
 * it hosts. `ready`: the instances a request may go to now; `out`: those it tracks that take none, and why.
 */
export const dispatchView = z.object({
  v,
  kind: z.enum(DISPATCH_VIEW_KINDS),
  id,
  /** when the view was read, ms since epoch (the answering process's clock). */
  atMs: nonneg,
  /** gateway: whether it routes requests itself (its request plane is direct and it holds a routing table); otherwise every request goes to the cluster intake. */
  routing: z.boolean().optional(),
  pools: z.array(z.object({
    pool: id,
    /** pool manager: whether it leads the pool (only the leader dispatches; a standby keeps a warm view). */
    leader: z.boolean().optional(),
    ready: z.array(id).max(1024),
    out: z.array(z.object({
      id, state: z.string().max(32), why: z.enum(DISPATCH_OUT_REASONS),
      /** when it left this view's dispatch, ms since epoch (the answering process's clock): the earliest of its reasons that applies; absent when unknown. */
      sinceMs: nonneg.optional(),
    })).max(1024),
  })).max(256),
});
export type DispatchView = z.infer<typeof dispatchView>;
export const DispatchView = codec('DispatchView', dispatchView);

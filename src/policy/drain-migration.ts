/**
 * Which requests a draining instance hands to its pool's peers instead of finishing them itself (issue 13 item 1:
 * request migration used for a scale-in or a re-shard). Pure; the simulator runs it on every instance its pool drains
 * (src/sim/drain-migration.ts).
 *
 * A draining instance holds all its GPUs until its last request ends; a request moved to a peer continues there with
 * its prompt and the tokens already sent as the new prompt (the peer prefills them again, the KV cache not being moved)
 * and the rest of its output. A request is moved when its remaining decode, at the TBT it has been getting, is longer
 * than `minRemainingS`: the GPUs it would hold (the whole instance, loaded idle at least) for that long cost more than
 * one prefill of its context on a peer. Requests not started yet (no token sent) move at no prefill beyond their own.
 * A request that is already a continuation (moved before, or migrated after a failure) stays: the peer a drain sends
 * it to may be drained next (a re-shard's stop units, one after another), and each move costs a leg of the gateway's
 * migration limit and a prefill.
 */
export interface DrainMigrationConfig {
  /** a request whose remaining decode is longer than this moves, s. */
  minRemainingS: number;
}

export interface DrainingRequest {
  id: string;
  /** tokens generated (sent) so far. */
  generated: number;
  /** tokens left to generate. */
  remaining: number;
  /** the TBT it has been getting, ms (the instance's step time while it decodes). */
  tbtMs: number;
  /** a continuation already (an earlier leg ended elsewhere): it is not moved again. */
  continued?: boolean;
}

/** The requests to move, longest remaining decode first. */
export function drainMigrations(reqs: readonly DrainingRequest[], cfg: DrainMigrationConfig): string[] {
  return reqs
    .filter((r) => !r.continued && r.remaining > 0 && (r.remaining * r.tbtMs) / 1000 > cfg.minRemainingS)
    .sort((a, b) => b.remaining * b.tbtMs - a.remaining * a.tbtMs || (a.id < b.id ? -1 : 1))
    .map((r) => r.id);
}

/**
 * A request whose stream can continue as a new leg (the gateway's request migration, actors/gateway/legs.ts canMigrate):
 * its prompt a string or chat messages (the text already sent is appended to it), no `echo` (the next leg would echo
 * that text again). A token-id prompt cannot be extended with text: such a leg ended for a drain would end its stream.
 * A request sent without its prompt is read by its `promptForm`.
 */
export function continuable(req: { messages?: unknown; prompt?: unknown; promptForm?: 'text' | 'chat' | 'ids'; params?: { echo?: unknown } }): boolean {
  if (req.params?.echo) return false;
  if (req.messages !== undefined) return true;
  if (req.prompt !== undefined) return typeof req.prompt === 'string';
  // a direct request sent without its prompt names the prompt's form (InferenceRequest.promptForm)
  return req.promptForm !== 'ids';
}

/**
 * The leader elections a request's intake may wait on, as the gateway sees them: the shell of
 * src/policy/machines/router.ts's election state, fed by the heartbeats of the cluster managers (`leader`)
 * and the pool managers (`leads`: the pools each leads). A role whose leader stopped beating (dead, a
 * standby not leading yet) is an election under way; nats-backend.ts waits for the intake's answer while
 * one is (docs/DATAPATH.md "Elections").
 */
import type { Bus, SubscribeHandle } from '../../src/runtime/bus.ts';
import { systemClock, type Clock } from '../../src/runtime/clock.ts';
import { Heartbeat, subjects } from '../../protocols/index.ts';
import { electionLeaderSeen, initialElectionState, lastElectionMs, type ElectionState } from '../../src/policy/machines/router.ts';

/** What the backend needs of an election watch. */
export interface Elections {
  /** The last time an election was under way (now while one is), ms; undefined: none seen. */
  lastMs(now: number): number | undefined;
}

/**
 * How long an intake that began at `startMs` is waited for because of elections, as of `now`: until admitTimeoutMs
 * after the last one under way since it began (bounded by the watch's holdMs after the leader's last heartbeat); 0: none.
 */
export function electionDeadline(e: Elections | undefined, startMs: number, admitTimeoutMs: number, now: number): number {
  const last = e?.lastMs(now);
  return last !== undefined && last >= startMs ? last + admitTimeoutMs : 0;
}

/** The role of the cluster planner, and of a pool's leader, in the election state. */
const CLUSTER_ROLE = 'cluster';
const poolRole = (pool: string) => `pool:${pool}`;

export class ElectionWatch implements Elections {
  #s: ElectionState = initialElectionState();
  #subs: SubscribeHandle[] = [];

  /**
   * `deadAfterMs`: a leader silent this long is dead; `holdMs`: the longest after its last heartbeat that its successor
   * is waited for; `clock`: the time heartbeats are seen at (src/runtime/clock.ts).
   */
  constructor(private readonly bus: Bus, private readonly deadAfterMs: number, private readonly holdMs: number, private readonly clock: Clock = systemClock) {}

  start(): void {
    this.#subs.push(
      this.bus.subscribe(subjects.heartbeatsOf('cluster'), Heartbeat, (hb) => this.beat(hb, this.clock.now()), { capacity: 256, expectSubject: (hb) => subjects.heartbeat('cluster', hb.id) }),
      this.bus.subscribe(subjects.heartbeatsOf('pool'), Heartbeat, (hb) => this.beat(hb, this.clock.now()), { capacity: 1024, expectSubject: (hb) => subjects.heartbeat('pool', hb.id) }),
    );
  }

  /** One manager's heartbeat: the roles it leads are led now. */
  beat(hb: Heartbeat, now: number): void {
    if (hb.state !== 'running') return;
    if (hb.kind === 'cluster' && hb.meta?.leader === true) electionLeaderSeen(this.#s, CLUSTER_ROLE, now, this.deadAfterMs);
    const leads = hb.kind === 'pool' ? hb.meta?.leads : undefined;
    if (typeof leads === 'string') for (const p of leads.split(',')) if (p) electionLeaderSeen(this.#s, poolRole(p), now, this.deadAfterMs);
  }

  lastMs(now: number): number | undefined {
    return lastElectionMs(this.#s, now, this.deadAfterMs, this.holdMs);
  }

  stop(): void {
    for (const s of this.#subs.splice(0)) s.unsubscribe();
  }
}

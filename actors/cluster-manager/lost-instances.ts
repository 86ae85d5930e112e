/**
 * The cluster leader's answer to a node's lost instances (NodeStatus.lost, decided by src/policy/lost-instances.ts):
 * on each status that lists one, once this replica leads and has checked the store for a previous run's assignments
 * (issue 12: until then its assignments may be that run's), the start or stop command for each, sent at once to the
 * node agent that sent the status. A node agent may live only a second: one command per instance per node-agent process
 * (its startedMs) is in flight at a time, and a new process of the node gets its own at once. A command that failed
 * is sent again on that process's next status; what succeeded leaves the node's list.
 */
import type { Logger } from 'pino';
import type { Bus } from '../../src/runtime/bus.ts';
import { Ack, NodeCommand, subjects, type NodeStatus, type PoolAssignment } from '../../protocols/index.ts';
import { decideLostInstances } from '../../src/policy/lost-instances.ts';
import type { EventPublisher } from '../common/events.ts';

/** at most this many commands in flight (a bound: a node lists at most 64 lost instances). */
const MAX_IN_FLIGHT = 256;

export class LostInstances {
  /** `node|startedMs|instance` of the commands in flight. */
  #inFlight = new Set<string>();

  constructor(private readonly o: {
    bus: Bus;
    log: Logger;
    evt: EventPublisher;
    /** deadline of each node command, ms (config timeouts.controlMs). */
    timeoutMs: number;
    /** whether this replica leads and has checked the store (its assignments are this run's). */
    deciding: () => boolean;
    assignments: () => ReadonlyMap<string, PoolAssignment>;
  }) {}

  onNodeStatus(st: NodeStatus): void {
    if (!st.lost?.length || !this.o.deciding()) return;
    for (const d of decideLostInstances(st, this.o.assignments())) {
      const i = d.instance;
      const key = `${st.node}|${st.startedMs}|${i.id}`;
      if (this.#inFlight.has(key) || this.#inFlight.size >= MAX_IN_FLIGHT) continue;
      this.#inFlight.add(key);
      const cmd: NodeCommand = d.kind === 'start'
        ? { v: 1, op: 'start_instance', instanceId: i.id, pool: i.pool, tp: i.tp, gpuIds: i.gpuIds, reason: d.why }
        : { v: 1, op: 'stop_instance', instanceId: i.id, graceMs: 0, reason: `forget: ${d.why}` };
      this.o.bus.request(subjects.nodeControl(st.node), NodeCommand, cmd, Ack, { timeoutMs: this.o.timeoutMs }).then(
        () => this.o.evt(d.kind === 'start' ? 'instance' : 'plan', `${st.node}: lost instance ${i.id} ${d.kind === 'start' ? 'started again' : 'forgotten'} (${d.why})`,
          { instance: i.id, lost: d.kind }, { node: st.node, pool: i.pool, gpuIds: i.gpuIds, nodeStartedMs: st.startedMs, ...(d.kind === 'start' ? { epoch: d.epoch } : {}) }),
        (err: unknown) => this.o.log.info({ node: st.node, instance: i.id, op: cmd.op, err: (err as Error).message }, 'lost instance command failed; sent again on the node\'s next status'),
      ).finally(() => this.#inFlight.delete(key));
    }
  }
}

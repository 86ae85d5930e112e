/**
 * Node agent (one per GPU server, `--id NODE --config FILE`): owns the server's GPUs. On NodeCommand
 * start_instance it starts an instance-manager process on the given GPUs (runtime Supervisor, restarted on
 * failure: a SIGKILLed instance manager comes back under the same id, resets its GPUs' clocks first and
 * serves again); on stop_instance it stops it (SIGTERM: the instance drains, then SIGKILL after graceMs). Each
 * instance manager beats for the supervisor's liveness watchdog (liveness.watchdog, src/policy/watchdog.ts): one that
 * stopped answering (SIGSTOP, a stuck event loop) is SIGKILLed and restarted under its id, and a start_instance for an
 * id whose process missed probes in a row (its pool leader found it dead) replaces it at once (`replaced` in the
 * Ack) instead of answering `already`.
 * Publishes NodeStatus (free GPUs, instances, and when each instance's process last ended: at once on that end, so
 * the cluster drops the instance from its ready set then) every status interval and keeps it in the inventory KV, and
 * NodeTelemetry (1/s): the power and energy of its GPUs that no instance holds (src/telemetry
 * unallocated-energy.ts; modelled idle power for emulated GPUs, the GPUs' own counters read-only on NVML/SMI).
 *
 * Its instance managers outlive it (src/runtime/adoption.ts): each is started adoptable, with a record of its pid,
 * pool, TP and GPUs in a directory of this node's (the same across restarts of the node agent, per cluster, NATS
 * servers and node), and writes its output to the node agent's own stdout and stderr, not through it. A node agent
 * that died is restarted by its supervisor; the new one adopts every instance manager its records name that still
 * runs before it serves any command, so a node agent's death costs no instance its engine or its requests. A record
 * whose process is gone names an instance that ended while no node agent ran: it is not started again here (a cluster
 * whose actors all died starts like a first run, issue 12) but listed as lost in every status (NodeStatus.lost, its
 * record kept, so a successor of this node agent lists it too) until a leader decides: the cluster leader answers the
 * first status that lists it with a start under its id (its GPUs still granted to its pool) or a stop (forget it).
 */
import { busPingMs } from '../../src/policy/bus-keepalive.ts';
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Actor, type ActorOptions } from '../../src/runtime/actor.ts';
import { Supervisor, type ChildSpec } from '../../src/runtime/supervisor.ts';
import { Ack, NodeCommand, NodeStatus, NodeTelemetry, controlSubjects, inventoryKeys, jetstream, subjects, DynError } from '../../protocols/index.ts';
import { UnallocatedGpuMeter } from '../../src/telemetry/unallocated-energy.ts';
import { createGpuControl, type GpuControl } from '../../src/gpu/index.ts';
import { getGpuSpec } from '../../src/model/catalog.ts';
import { ConfigError, requireProfileCovers, type ClusterConfig } from '../common/config.ts';
import { parseConfig } from '../common/config.ts';
import type { ActorFactoryOptions } from '../../src/runtime/actor-factory.ts';
import { launchArgs } from '../common/launch-args.ts';
import { INSTANCE_STOP_GRACE_MS, NODE_AGENT_DEADLINES } from './deadlines.ts';
import { NATS_ENV_NAMES } from '../../src/runtime/nats-settings.ts';
import { ADOPT_FILE_ENV, adoptionDir, pidAlive, pidIsChild, readRecords, recordPath, removeRecord, writeRecord } from '../../src/runtime/adoption.ts';

export { INSTANCE_STOP_GRACE_MS, NODE_AGENT_SHUTDOWN_LIMIT_MS, NODE_AGENT_STOP_HOOK_MS } from './deadlines.ts';

/** NodeTelemetry period, ms (as the instances' InstanceTelemetry). */
const TELEMETRY_MS = 1000;

export const summary = 'node agent: starts and stops instance managers on one GPU server';

interface Inst {
  id: string;
  pool: string;
  tp: 1 | 2 | 4 | 8;
  gpuIds: number[];
}

export class NodeAgent extends Actor {
  #sup?: Supervisor;
  #insts = new Map<string, Inst>();
  /** when each instance's manager process last ended (ms, this clock), since this node agent started. */
  #exited = new Map<string, number>();
  /** instances told to stop whose process has not exited yet (their GPUs still held). */
  #stopping = new Set<string>();
  /** instances whose record names a process that is gone (ended while no node agent ran): not running, GPUs free. */
  #lost = new Map<string, Inst>();
  #timer?: unknown;
  #telTimer?: unknown;
  #gpus: number;
  #meter?: UnallocatedGpuMeter;
  /** read-only GPU control over all this server's GPUs (measured backends): their energy counters. */
  #gpuRead?: GpuControl;
  /** the records of this node's instance managers (src/runtime/adoption.ts). */
  readonly adoptDir: string;
  /**
   * `configPath`: the config file its instance managers get (`--config`): nodeConfigPath(adoptDir), which this node
   * agent removes when it stops on purpose (its instance managers stopped with it).
   */
  constructor(opts: ActorOptions, private readonly config: ClusterConfig, readonly configPath: string) {
    super({ ...NODE_AGENT_DEADLINES, ...opts });
    const s = config.servers.find((x) => x.id === opts.id);
    if (!s) throw new ConfigError(`node ${opts.id} is not in config.servers (${config.servers.map((x) => x.id).join(', ')})`);
    this.#gpus = s.gpus;
    this.adoptDir = nodeAdoptionDir(config, opts.nats?.servers ?? [], opts.id);
  }

  free(): number[] {
    const used = new Set<number>();
    for (const i of this.#insts.values()) for (const g of i.gpuIds) used.add(g);
    return Array.from({ length: this.#gpus }, (_, i) => i).filter((g) => !used.has(g));
  }

  protected async onStart(): Promise<void> {
    // its instance managers stop side by side (each drains on its own GPUs): a node's stop takes one instance's grace
    this.#sup = new Supervisor({ children: [], log: this.log, backoff: { initialMs: 200, maxMs: 5000 }, watchdog: this.config.liveness.watchdog, stopTogether: true });
    // each end of an instance manager's process (a child's exit, or an adopted one's pid gone): its status says when
    // at once, so the cluster takes the instance out of its ready set without waiting for its statuses to lapse
    this.#sup.on('exit', ({ name }: { name: string }) => {
      if (!this.#insts.has(name)) return;
      this.#exited.set(name, this.clock.now());
      void this.#status();
    });
    // each (re)start of an instance manager: its record names its new pid and this supervisor
    this.#sup.on('spawn', ({ name, pid }: { name: string; pid?: number }) => {
      const i = this.#insts.get(name);
      if (i && pid !== undefined) this.#record(i, pid);
    });
    await this.#sup.start();
    this.#adopt();
    this.serve(subjects.nodeControl(this.id), NodeCommand, Ack, (cmd) => this.#command(cmd), { capacity: 64, concurrency: 4, requestsOnly: true });
    this.#timer = this.clock.setInterval(() => void this.#status(), this.config.liveness.statusIntervalMs);
    await this.#status();
    await this.#openMeter();
    this.#telTimer = this.clock.setInterval(() => void this.#telemetry(), TELEMETRY_MS);
  }

  async #openMeter(): Promise<void> {
    const c = this.config;
    if (c.gpuBackend === 'emulated') {
      this.#meter = new UnallocatedGpuMeter({ kind: 'modelled', idlePowerW: getGpuSpec(c.gpu).idlePowerW, timeScale: c.engine.kind === 'emulator' ? c.engine.timeScale : 1 });
    } else {
      try {
        this.#gpuRead = await createGpuControl({ backend: c.gpuBackend, gpuIds: Array.from({ length: this.#gpus }, (_, i) => i), readOnly: true });
        this.#meter = new UnallocatedGpuMeter({ kind: 'measured' });
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'GPU energy counters not readable: GPUs with no instance are not counted in the cluster energy');
        return;
      }
    }
    await this.#sampleMeter();
  }

  /** Charges the interval since the last sample to the GPUs unallocated during it; the set from now is free(). */
  async #sampleMeter(): Promise<NodeTelemetry | undefined> {
    const m = this.#meter;
    if (!m) return undefined;
    let counters: number[] | undefined;
    if (this.#gpuRead) {
      try {
        counters = await this.#gpuRead.readEnergyMj();
      } catch (err) {
        this.log.debug({ err: (err as Error).message }, 'GPU energy counters not read');
      }
    }
    const free = this.free();
    const r = m.sample(this.clock.now(), free, counters);
    return { v: 1, node: this.id, gpus: this.#gpus, unallocated: free, powerW: r.powerW, energyJ: r.energyJ, energySource: this.#gpuRead ? 'measured' : 'modelled', sentMs: this.clock.now() };
  }

  async #telemetry(): Promise<void> {
    if (this.state !== 'running') return;
    const t = await this.#sampleMeter();
    if (t) this.bus.publish(subjects.telNode(this.id), NodeTelemetry, t);
  }

  /**
   * An instance connects with its own credentials: the seed file `<instanceKeysDir>/<id>.nk` when the
   * config names the directory (the node's own NATS env is cleared, so an instance never runs as its node).
   */
  #instanceNatsEnv(id: string): Record<string, string> {
    const dir = this.config.nats.instanceKeysDir;
    if (!dir) return {};
    return { ...Object.fromEntries(NATS_ENV_NAMES.map((n) => [n, ''])), NATS_URL: (this.opts.nats?.servers ?? []).join(','), NATS_NKEY: join(dir, `${id}.nk`) };
  }

  /**
   * The instance managers a previous node agent of this node started that still run: supervised from now on. Those
   * whose process is gone are lost (listed in the status, records kept) unless an adopted one holds one of their GPUs.
   */
  #adopt(): void {
    const gone: Inst[] = [];
    for (const r of readRecords(this.adoptDir)) {
      const m = r.meta as Partial<Inst>;
      const inst: Inst | undefined = typeof m.pool === 'string' && [1, 2, 4, 8].includes(m.tp as number) && Array.isArray(m.gpuIds) && m.gpuIds.every((g) => Number.isInteger(g) && g >= 0 && g < this.#gpus) ? { id: r.name, pool: m.pool, tp: m.tp!, gpuIds: m.gpuIds } : undefined;
      if (!inst || this.#insts.has(r.name)) {
        removeRecord(this.adoptDir, r.name);
        continue;
      }
      if (!pidAlive(r.pid) || !pidIsChild(r.pid, r.name)) {
        gone.push(inst);
        continue;
      }
      this.#insts.set(inst.id, inst);
      this.#sup!.adopt(this.#spec(inst, INSTANCE_STOP_GRACE_MS), r.pid);
      this.#record(inst, r.pid);
      this.log.info({ instance: inst.id, pid: r.pid, gpus: inst.gpuIds }, 'instance adopted');
    }
    const held = new Set([...this.#insts.values()].flatMap((i) => i.gpuIds));
    for (const inst of gone) {
      if (this.#insts.has(inst.id) || inst.gpuIds.some((g) => held.has(g))) removeRecord(this.adoptDir, inst.id);
      else {
        this.#lost.set(inst.id, inst);
        this.log.warn({ instance: inst.id, gpus: inst.gpuIds }, 'instance manager ended while no node agent ran: listed as lost for the cluster to decide');
      }
    }
  }

  /** Lost instances on any of `gpuIds`: not wanted any more (another instance starts there), records removed. */
  #forgetLost(gpuIds: number[]): void {
    for (const l of [...this.#lost.values()]) {
      if (!l.gpuIds.some((g) => gpuIds.includes(g))) continue;
      this.#lost.delete(l.id);
      removeRecord(this.adoptDir, l.id);
    }
  }

  #record(i: Inst, pid: number): void {
    try {
      writeRecord(this.adoptDir, { v: 1, name: i.id, pid, supervisorPid: process.pid, meta: { pool: i.pool, tp: i.tp, gpuIds: i.gpuIds } });
    } catch (err) {
      this.log.warn({ instance: i.id, err: (err as Error).message }, 'adoption record not written: the instance stops with this node agent');
    }
  }

  #spec(inst: Inst, stopGraceMs: number): ChildSpec {
    return {
      name: inst.id,
      command: process.execPath,
      args: launchArgs('instance', [
        '--id', inst.id, '--config', this.configPath, '--pool', inst.pool, '--tp', String(inst.tp), '--gpus', inst.gpuIds.join(','), '--node', this.id,
        // its /metrics (and probes) on a port of its own: the base plus its first GPU's index
        ...(this.config.instanceMetricsPortBase !== undefined ? ['--health', `0.0.0.0:${this.config.instanceMetricsPortBase + Math.min(...inst.gpuIds)}`] : []),
      ]),
      restart: 'on-failure',
      // DYNAMOLLM_ADOPT_INSTANCES=0 (the systemd unit, whose KillMode stops them with the agent): not adoptable
      env: { ...this.#instanceNatsEnv(inst.id), ...(process.env.DYNAMOLLM_ADOPT_INSTANCES === '0' ? {} : { [ADOPT_FILE_ENV]: recordPath(this.adoptDir, inst.id) }) },
      stopGraceMs,
      // it beats into a file of this node's adoption directory: a successor of this node agent probes the same file
      liveness: { file: join(this.adoptDir, 'live', inst.id) },
      // its output goes straight to this process's stdout/stderr (not through it): it outlives this process
      output: 'direct',
    };
  }

  async #command(cmd: NodeCommand): Promise<Ack> {
    if (cmd.op === 'start_instance') {
      this.#refuseStopping(cmd.instanceId);
      if (this.#insts.has(cmd.instanceId)) return this.#already(cmd.instanceId);
      if (!cmd.pool || !cmd.tp || !cmd.gpuIds || cmd.gpuIds.length !== cmd.tp) {
        throw new DynError('invalid_request', 'start_instance needs pool, tp and tp gpuIds', { retryable: false });
      }
      // the interval up to now is charged to the GPUs unallocated until now (checked again after the read)
      await this.#sampleMeter();
      this.#refuseStopping(cmd.instanceId);
      if (this.#insts.has(cmd.instanceId)) return this.#already(cmd.instanceId);
      const free = new Set(this.free());
      const busy = cmd.gpuIds.filter((g) => !free.has(g));
      if (busy.length) throw new DynError('unavailable', `GPUs ${busy.join(',')} of ${this.id} are in use`, { retryable: true, retryAfterS: 1 });
      const inst: Inst = { id: cmd.instanceId, pool: cmd.pool, tp: cmd.tp, gpuIds: cmd.gpuIds };
      // a lost instance of that id starts again here; one on any of these GPUs is not wanted any more
      this.#lost.delete(inst.id);
      this.#forgetLost(inst.gpuIds);
      this.#insts.set(inst.id, inst);
      // at most INSTANCE_STOP_GRACE_MS: this node agent's own stop (NODE_AGENT_STOP_HOOK_MS) waits for it
      this.#sup!.add(this.#spec(inst, Math.min(cmd.graceMs ?? INSTANCE_STOP_GRACE_MS, INSTANCE_STOP_GRACE_MS)));
      // its record at once (not at the 'spawn' event): a successor of a node agent killed right now adopts it
      const pid = this.#sup!.children().find((c) => c.name === inst.id)?.pid;
      if (pid !== undefined) this.#record(inst, pid);
      this.log.info({ instance: inst.id, gpus: inst.gpuIds }, 'instance started');
      void this.#status();
      return { v: 1, ok: true, detail: { instanceId: inst.id } };
    }
    const inst = this.#insts.get(cmd.instanceId);
    if (!inst && this.#lost.delete(cmd.instanceId)) {
      // a lost instance the cluster does not want: forgotten
      removeRecord(this.adoptDir, cmd.instanceId);
      void this.#status();
      return { v: 1, ok: true, detail: { instanceId: cmd.instanceId, forgotten: true } };
    }
    if (!inst) return { v: 1, ok: true, detail: { instanceId: cmd.instanceId, absent: true } };
    // told to stop: a successor of this node agent must not adopt it. The GPUs come back to the inventory only
    // once the instance manager exited (it resets their clocks)
    removeRecord(this.adoptDir, inst.id);
    if (this.#stopping.has(inst.id)) return { v: 1, ok: true, detail: { instanceId: inst.id, stopping: true } };
    this.#stopping.add(inst.id);
    void this.#sup!.remove(inst.id).finally(async () => {
      await this.#sampleMeter();
      this.#stopping.delete(inst.id);
      this.#insts.delete(inst.id);
      this.#exited.delete(inst.id);
      rmSync(join(this.adoptDir, 'live', inst.id), { force: true });
      void this.#status();
    });
    return { v: 1, ok: true, detail: { instanceId: inst.id } };
  }

  /**
   * A start of an instance this node is stopping is refused (retryable) until its process has exited: answered
   * `already`, the caller would wait for an instance that is about to end, its GPUs freed after that.
   */
  #refuseStopping(id: string): void {
    if (this.#stopping.has(id)) throw new DynError('unavailable', `instance ${id} of ${this.id} is stopping`, { retryable: true, retryAfterS: 1 });
  }

  /**
   * A start of an instance this node runs: `already`, unless its process stopped answering the watchdog's probes
   * (policy watchdog unresponsive): then it is SIGKILLed now and restarted under its id by the supervisor (`replaced`).
   */
  #already(id: string): Ack {
    if (this.#sup!.unresponsive(id) && this.#sup!.replace(id, 'start_instance for an instance whose process does not answer')) {
      this.log.warn({ instance: id }, 'instance manager unresponsive: replaced on start_instance');
      return { v: 1, ok: true, detail: { instanceId: id, replaced: true } };
    }
    return { v: 1, ok: true, detail: { instanceId: id, already: true } };
  }

  async #status(): Promise<void> {
    if (this.state !== 'running' && this.state !== 'starting') return;
    const st: NodeStatus = {
      v: 1, node: this.id, gpus: this.#gpus, free: this.free(),
      instances: [...this.#insts.values()].map((i) => {
        const exitedMs = this.#exited.get(i.id);
        return { id: i.id, pool: i.pool, tp: i.tp, gpuIds: i.gpuIds, state: this.#sup?.children().find((c) => c.name === i.id)?.state ?? 'unknown', ...(exitedMs !== undefined ? { exitedMs } : {}) };
      }),
      ...(this.#lost.size ? { lost: [...this.#lost.values()].slice(0, 64).map((i) => ({ id: i.id, pool: i.pool, tp: i.tp, gpuIds: i.gpuIds })) } : {}),
      startedMs: this.startedMs, sentMs: this.clock.now(),
    };
    try {
      this.bus.publish(controlSubjects.nodeStatus(this.id), NodeStatus, st);
      const kv = await this.bus.kv(jetstream.inventoryBucket);
      await kv.put(inventoryKeys.node(this.id), NodeStatus.encode(st));
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'node status not published');
    }
  }

  protected override async onStop(): Promise<void> {
    if (this.#timer !== undefined) this.clock.clearInterval(this.#timer);
    if (this.#telTimer !== undefined) this.clock.clearInterval(this.#telTimer);
    await this.#sup?.stop();
    // stopped on purpose (the cluster stops): nothing left to adopt
    for (const i of [...this.#insts.values(), ...this.#lost.values()]) removeRecord(this.adoptDir, i.id);
    rmSync(join(this.adoptDir, 'live'), { recursive: true, force: true });
    // no instance manager of this node runs or restarts any more: its credentials go too
    rmSync(this.configPath, { force: true });
    await this.#gpuRead?.close();
  }

  protected override heartbeatMeta() {
    return { gpus: this.#gpus, free: this.free().length, instances: this.#insts.size };
  }
}


/** The adoption directory of node `id` (src/runtime/adoption.ts): per cluster id, NATS servers and node id. */
export function nodeAdoptionDir(config: ClusterConfig, servers: readonly string[], id: string): string {
  return adoptionDir(`${config.clusterId}|${servers.join(',')}|${id}`);
}

/**
 * The config file of a node's instance managers: one per node, in its adoption directory (mode 0700), in a
 * subdirectory so that no adoption record (`<dir>/<name>.json`) is ever this file.
 */
export function nodeConfigPath(adoptDir: string): string {
  return join(adoptDir, 'config', 'node.json');
}

/**
 * Writes the instance managers' config (with the NATS credentials) at `path`, mode 0600 in a 0700 directory, replaced
 * atomically (a temporary file renamed over it): an instance manager starting meanwhile reads the old or the new file,
 * never half of one. Temporary files left by a writer that died (its pid gone) are removed.
 */
export function writeNodeConfig(path: string, text: string): void {
  const dir = join(path, '..');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const f of readdirSync(dir)) {
    const m = /\.(\d+)\.tmp$/.exec(f);
    if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) rmSync(join(dir, f), { force: true });
  }
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, text, { mode: 0o600 });
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** `dynamollm actor node` (src/cli/actor-registry.ts); its instance managers get the config as a file (nodeConfigPath). */
export function createActor(o: ActorFactoryOptions): NodeAgent {
  const config = parseConfig(o.config ?? {});
  requireProfileCovers(config, [config.engine.initialTp]);
  const { servers, ...auth } = o.nats;
  const path = nodeConfigPath(nodeAdoptionDir(config, servers, o.id));
  writeNodeConfig(path, JSON.stringify({ ...config, nats: { ...config.nats, url: servers, ...auth } }));
  return new NodeAgent({ kind: 'node', id: o.id, nats: o.nats, log: o.log, heartbeatMs: config.liveness.statusIntervalMs, natsPingMs: busPingMs(config.liveness.deadAfterMs), jetstreamReplicas: config.nats.jetstreamReplicas }, config, path);
}

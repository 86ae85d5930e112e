/**
 * Server power: the cluster machine's decisions about whole servers (src/policy/machines/cluster.ts runs them
 * inside `clusterStep`; the live cluster manager performs the effects through the operator's power driver, the
 * simulator on its virtual servers). Off unless the cluster machine is configured with `power`.
 *
 * - A server is powered off only when it is drained: granted to no pool and holding no instance (what the node
 *   agents and instance managers report), and idle for `idleBeforeOffMs` (default the boot time: a server needed
 *   again within a boot costs less powered than cycled, the ski-rental break-even). `reserveServers` idle powered
 *   servers stay on beyond the grants: a forecast change or a failed server is served without waiting for a boot.
 * - A server is powered on ahead of need: when the scale epoch arms a start-ahead epoch whose plan needs more
 *   servers than are powered, the shortfall is powered on `bootMs` before that epoch (the instances then start on
 *   servers that are up, instanceStartupMs before the epoch that needs them); a plan that finds too few powered
 *   servers (an early epoch on a forecast change) grants what is up and powers on the rest at once, and the epoch
 *   runs again as soon as one of them is up.
 * - A server is up when its node agent reports (a new incarnation, first seen after the power-on). One that is not
 *   up `bootDeadlineMs` after its power-on, or whose power-on the driver refused, is marked failed: the plan leaves
 *   it out (and powers on another where it needs one) until its node agent reports again.
 * Events: one decision event (kind 'power') per power change and per outcome.
 */

/** What the cluster machine needs to decide server power (all ms). */
export interface ServerPowerConfig {
  /** time from a power-on to the server's node agent reporting, ms (paper Table V: a VM 1-2 min; default 120 s). */
  bootMs: number;
  /** a server not up this long after its power-on is marked failed, ms (default 600 s). */
  bootDeadlineMs: number;
  /** idle powered servers (no grant, no instance) kept on beyond the grants (default 1). */
  reserveServers: number;
  /** a drained server idle this long is powered off, ms (default the boot time). */
  idleBeforeOffMs: number;
}

/** The defaults of the live config's `power` section (s) and of the simulator's `--unused-servers off`. */
export const SERVER_POWER_DEFAULTS = { bootS: 120, bootDeadlineS: 600, reserveServers: 1 } as const;

export function serverPowerConfig(o: { bootS?: number; bootDeadlineS?: number; reserveServers?: number; idleBeforeOffS?: number } = {}): ServerPowerConfig {
  const bootS = o.bootS ?? SERVER_POWER_DEFAULTS.bootS;
  return {
    bootMs: bootS * 1000, bootDeadlineMs: (o.bootDeadlineS ?? SERVER_POWER_DEFAULTS.bootDeadlineS) * 1000,
    reserveServers: o.reserveServers ?? SERVER_POWER_DEFAULTS.reserveServers, idleBeforeOffMs: (o.idleBeforeOffS ?? bootS) * 1000,
  };
}

/**
 * on: powered (usable once its node agent reports); booting: powered on, not up yet; stopping: powered off, the
 * driver not done; off: powered off (or never seen up); failed: did not come back (left out of the plan).
 */
export type ServerPowerState = 'on' | 'booting' | 'stopping' | 'off' | 'failed';

export interface ServerPower {
  state: ServerPowerState;
  /** when it entered the state. */
  sinceMs: number;
  /** on, granted to no pool and holding no instance since then. */
  idleSinceMs?: number;
  /** its node agent reports (last observation). */
  alive: boolean;
}

export interface PowerMachineState {
  servers: Map<string, ServerPower>;
  /** servers the plan in force wants beyond those it could grant (being powered on). */
  shortfall: number;
  /** servers the start-ahead epoch's plan needs powered at atMs (its start time less the boot). */
  wake?: { atMs: number; servers: number };
  /** a driver outcome that asks the plan to run again (a power-on refused while short of servers), taken by the next observation. */
  replan?: string;
}

/** A server whose node agent reports, since when (the first status of its current incarnation). */
export interface AliveServer { id: string; upSinceMs: number }

export type PowerEffect =
  /** the power driver's command for one server. */
  | { kind: 'power'; action: 'on' | 'off'; server: string; why: string }
  | { kind: 'event'; event: 'power'; summary: string; decision: Record<string, unknown>; inputs: Record<string, unknown> };

/** The driver's outcome for one power command (the live actor after its retries; the simulator at once). */
export interface PowerResult { server: string; action: 'on' | 'off'; ok: boolean; error?: string }

/** Where effects go (the cluster machine's list of effects). */
export interface EffectSink { push(...e: PowerEffect[]): unknown }

export function initialPowerState(): PowerMachineState {
  return { servers: new Map(), shortfall: 0 };
}

export function clonePower(p: PowerMachineState): PowerMachineState {
  return { servers: new Map([...p.servers].map(([k, v]) => [k, { ...v }])), shortfall: p.shortfall, ...(p.wake ? { wake: { ...p.wake } } : {}), ...(p.replan ? { replan: p.replan } : {}) };
}

const ev = (summary: string, decision: Record<string, unknown>, inputs: Record<string, unknown> = {}): PowerEffect => ({ kind: 'event', event: 'power', summary, decision, inputs });

/** The servers grants may go to: powered and reporting. */
export function usableServers<S extends { id: string }>(p: PowerMachineState, servers: readonly S[]): S[] {
  return servers.filter((x) => {
    const r = p.servers.get(x.id);
    return !r || (r.state === 'on' && r.alive);
  });
}

/** The servers a plan may count on: all but the failed ones and powered ones whose node agent does not report. */
export function plannableServers<S extends { id: string }>(p: PowerMachineState, servers: readonly S[]): S[] {
  return servers.filter((x) => {
    const r = p.servers.get(x.id);
    return !r || (r.state !== 'failed' && !(r.state === 'on' && !r.alive));
  });
}

/** Servers powered or on their way up (what a wake counts as there). */
function poweredCount(p: PowerMachineState): number {
  let n = 0;
  for (const r of p.servers.values()) if ((r.state === 'on' && r.alive) || r.state === 'booting') n++;
  return n;
}

/**
 * The servers' states from what is observed (node agents reporting). Returns why the plan should run again now
 * (a server came up or failed while the plan in force is short of servers), else undefined.
 */
export function observePower(p: PowerMachineState, servers: readonly { id: string }[], alive: readonly AliveServer[], now: number, cfg: ServerPowerConfig, fx: EffectSink): string | undefined {
  const up = new Map(alive.map((a) => [a.id, a.upSinceMs]));
  let replan: string | undefined;
  for (const x of servers) {
    const since = up.get(x.id);
    let r = p.servers.get(x.id);
    if (!r) {
      // first sight: reporting, it is on; else off until the plan needs it (a power-on of a running server is harmless)
      r = { state: since !== undefined ? 'on' : 'off', sinceMs: now, alive: since !== undefined };
      p.servers.set(x.id, r);
      continue;
    }
    r.alive = since !== undefined;
    const fresh = since !== undefined && since >= r.sinceMs; // an incarnation that began after the last power change
    if (r.state === 'booting') {
      if (fresh) {
        fx.push(ev(`${x.id} up ${Math.round((now - r.sinceMs) / 1000)} s after its power-on`, { server: x.id, state: 'on', bootS: (now - r.sinceMs) / 1000 }));
        Object.assign(r, { state: 'on', sinceMs: now });
        if (p.shortfall > 0) replan = `servers powered on (${x.id} up)`;
      } else if (now - r.sinceMs > cfg.bootDeadlineMs) {
        fx.push(ev(`${x.id} not up ${Math.round(cfg.bootDeadlineMs / 1000)} s after its power-on: failed, left out of the plan`, { server: x.id, state: 'failed' }, { bootDeadlineS: cfg.bootDeadlineMs / 1000 }));
        Object.assign(r, { state: 'failed', sinceMs: now });
        if (p.shortfall > 0) replan = `${x.id} failed to boot`;
      }
    } else if ((r.state === 'off' || r.state === 'failed') && fresh) {
      fx.push(ev(`${x.id} reports again (was ${r.state}): on`, { server: x.id, state: 'on', was: r.state }));
      Object.assign(r, { state: 'on', sinceMs: now });
    }
  }
  return replan;
}

/** Power on up to n servers that are off (configured order), for `why`. */
export function powerOn(p: PowerMachineState, servers: readonly { id: string }[], n: number, now: number, why: string, fx: EffectSink): number {
  let done = 0;
  for (const x of servers) {
    if (done >= n) break;
    const r = p.servers.get(x.id);
    if (!r || r.state !== 'off') continue;
    Object.assign(r, { state: 'booting', sinceMs: now, idleSinceMs: undefined });
    fx.push({ kind: 'power', action: 'on', server: x.id, why });
    fx.push(ev(`power on ${x.id}: ${why}`, { server: x.id, action: 'on' }, { why }));
    done++;
  }
  return done;
}

/** After a scale epoch's placement: `wanted` servers planned, `granted` placed on usable servers. Powers on the shortfall not already booting. */
export function afterPlacement(p: PowerMachineState, servers: readonly { id: string }[], wanted: number, granted: number, now: number, fx: EffectSink): void {
  p.shortfall = Math.max(0, wanted - granted);
  if (!p.shortfall) return;
  // the placement took every usable server: what is short and not already booting is powered on
  let booting = 0;
  for (const r of p.servers.values()) if (r.state === 'booting') booting++;
  powerOn(p, servers, p.shortfall - booting, now, `the plan needs ${wanted} servers, ${granted} powered and free`, fx);
}

/** A start-ahead epoch in `inMs` plans for `servers` servers: those not powered then are powered on bootMs before it. */
export function wakeAhead(p: PowerMachineState, servers: number, inMs: number, now: number, cfg: ServerPowerConfig): void {
  p.wake = { atMs: now + Math.max(0, inMs - cfg.bootMs), servers };
}

/**
 * Every observation: a wake that is due powers on what it needs; drained servers (no grant, no instance) idle for
 * idleBeforeOffMs are powered off, oldest idle first, keeping reserveServers idle ones (all of them while a wake is
 * due within a boot).
 */
export function idlePower(p: PowerMachineState, servers: readonly { id: string }[], granted: ReadonlySet<string>, busy: ReadonlySet<string>, now: number, cfg: ServerPowerConfig, fx: EffectSink): void {
  if (p.wake && now >= p.wake.atMs) {
    const need = p.wake.servers - poweredCount(p);
    if (need > 0) powerOn(p, servers, need, now, `ahead of the start-ahead epoch (its plan needs ${p.wake.servers} servers, ${poweredCount(p)} powered)`, fx);
    p.wake = undefined;
  }
  const idle: { id: string; r: ServerPower }[] = [];
  for (const x of servers) {
    const r = p.servers.get(x.id);
    if (!r || r.state !== 'on') continue;
    if (!r.alive || granted.has(x.id) || busy.has(x.id)) {
      r.idleSinceMs = undefined;
      continue;
    }
    r.idleSinceMs ??= now;
    idle.push({ id: x.id, r });
  }
  if (p.wake && p.wake.atMs - now <= cfg.bootMs) return;
  idle.sort((a, b) => a.r.idleSinceMs! - b.r.idleSinceMs! || (a.id < b.id ? -1 : 1));
  for (const { id, r } of idle.slice(0, Math.max(0, idle.length - cfg.reserveServers))) {
    if (now - r.idleSinceMs! < cfg.idleBeforeOffMs) continue;
    const why = `no grant and no instance for ${Math.round((now - r.idleSinceMs!) / 1000)} s (reserve ${cfg.reserveServers} idle server(s) kept)`;
    Object.assign(r, { state: 'stopping', sinceMs: now, idleSinceMs: undefined });
    fx.push({ kind: 'power', action: 'off', server: id, why });
    fx.push(ev(`power off ${id}: ${why}`, { server: id, action: 'off' }, { idleServers: idle.length, reserve: cfg.reserveServers }));
  }
}

/** The driver's outcome. Returns why the plan should run again (a failed power-on while short of servers). */
export function powerResult(p: PowerMachineState, res: PowerResult, now: number, fx: EffectSink): string | undefined {
  const r = p.servers.get(res.server);
  if (!r) return undefined;
  if (res.action === 'off') {
    if (r.state !== 'stopping') return undefined;
    if (res.ok) {
      Object.assign(r, { state: 'off', sinceMs: now });
      fx.push(ev(`${res.server} off`, { server: res.server, state: 'off' }));
    } else {
      // still powered: idle again from now, so the next try waits idleBeforeOffMs
      Object.assign(r, { state: 'on', sinceMs: now, idleSinceMs: now });
      fx.push(ev(`power off ${res.server} failed: ${res.error ?? 'driver error'}; it stays on`, { server: res.server, state: 'on', error: res.error ?? null }));
    }
    return undefined;
  }
  if (res.ok || r.state !== 'booting') return undefined;
  Object.assign(r, { state: 'failed', sinceMs: now });
  fx.push(ev(`power on ${res.server} failed: ${res.error ?? 'driver error'}; failed, left out of the plan`, { server: res.server, state: 'failed', error: res.error ?? null }));
  return p.shortfall > 0 ? `${res.server} failed to power on` : undefined;
}

/** Servers by power state (telemetry). */
export function powerCounts(p: PowerMachineState): Record<ServerPowerState, number> {
  const out: Record<ServerPowerState, number> = { on: 0, booting: 0, stopping: 0, off: 0, failed: 0 };
  for (const r of p.servers.values()) out[r.state]++;
  return out;
}

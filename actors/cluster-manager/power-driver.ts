/**
 * The operator's power driver: the command the cluster manager runs to power a server on or off (config `power`).
 * An argv run without a shell, its `{action}` (on|off), `{server}` (the server's id) and `{address}` (its configured
 * address, or '') placeholders replaced, e.g. `["/usr/local/bin/server-power", "{action}", "{server}"]` around
 * `ipmitool -H <bmc> chassis power on|soft`, a Wake-on-LAN packet (on) and `systemctl poweroff` over ssh (off), or a
 * cloud API's start/stop instance.
 * - Exit status 0: done. 75 (EX_TEMPFAIL), a command killed at its deadline, or one that could not start: retryable,
 *   tried again (`attempts` in all, 1 s then 2 s ... apart). Any other status: refused, not retried.
 * - One command at a time per server (a second waits for the first), at most 64 queued in all (a typed overflow).
 * - A power-on that returns 0 only says the command was accepted: the server is up when its node agent reports.
 */
import { spawn } from 'node:child_process';
import type { Logger } from 'pino';
import { DynError } from '../../protocols/errors.ts';
import { systemClock, type Clock } from '../../src/runtime/clock.ts';
import type { PowerResult } from '../../src/policy/machines/cluster-power.ts';

export interface PowerDriverConfig {
  /** argv with {action}, {server}, {address}. */
  command: string[];
  /** deadline of one run, ms. */
  timeoutMs: number;
  /** runs of a command that fails retryably, in all. */
  attempts: number;
}

export type PowerAction = 'on' | 'off';

/** What a power command came to, after its retries. */
export interface PowerOutcome { ok: boolean; attempts: number; error?: { code: string; message: string; retryable: boolean } }

/** EX_TEMPFAIL (sysexits.h): "try again later". */
export const EXIT_TEMPFAIL = 75;
const MAX_QUEUED = 64;
const OUTPUT_BYTES = 2048;

export function powerArgv(command: readonly string[], action: PowerAction, server: { id: string; address?: string }): string[] {
  return command.map((a) => a.replaceAll('{action}', action).replaceAll('{server}', server.id).replaceAll('{address}', server.address ?? ''));
}

/** One run of the command: ok, or an error that says whether to retry; its deadline on `clock`. */
export function runOnce(argv: readonly string[], timeoutMs: number, clock: Clock = systemClock): Promise<PowerOutcome> {
  return new Promise((resolve) => {
    let out = '';
    let settled = false;
    const done = (o: PowerOutcome) => {
      if (settled) return;
      settled = true;
      clock.clearTimeout(timer);
      resolve(o);
    };
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], shell: false });
    const keep = (b: Buffer) => {
      if (out.length < OUTPUT_BYTES) out = (out + b.toString()).slice(0, OUTPUT_BYTES);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = clock.setTimeout(() => {
      child.kill('SIGKILL');
      done({ ok: false, attempts: 1, error: { code: 'timeout', message: `${argv[0]} did not finish within ${timeoutMs} ms`, retryable: true } });
    }, timeoutMs);
    child.on('error', (err) => done({ ok: false, attempts: 1, error: { code: 'unavailable', message: `${argv[0]} could not start: ${err.message}`, retryable: true } }));
    child.on('close', (code, signal) => {
      if (code === 0) return done({ ok: true, attempts: 1 });
      const what = code !== null ? `exit ${code}` : `signal ${signal}`;
      const tail = out.trim().split('\n').slice(-2).join(' / ');
      done({ ok: false, attempts: 1, error: { code: code === EXIT_TEMPFAIL || code === null ? 'unavailable' : 'rejected', message: `${argv[0]} ${what}${tail ? `: ${tail}` : ''}`, retryable: code === EXIT_TEMPFAIL || code === null } });
    });
  });
}

export class PowerDriver {
  #busy = new Map<string, Promise<unknown>>();
  /** power commands issued (telemetry). */
  commands = 0;
  #queued = 0;

  /** `clock`: each run's deadline and the pauses between attempts (src/runtime/clock.ts). */
  constructor(readonly cfg: PowerDriverConfig, private readonly log: Logger, private readonly clock: Clock = systemClock) {}

  /** Power a server on or off: the command, retried while it fails retryably; after the one before it for that server. Throws DynError 'overloaded' when too many wait. */
  run(action: PowerAction, server: { id: string; address?: string }): Promise<PowerOutcome> {
    if (this.#queued >= MAX_QUEUED) throw new DynError('overloaded', `power driver: ${MAX_QUEUED} commands already queued`, { retryable: true });
    this.#queued++;
    const prev = this.#busy.get(server.id) ?? Promise.resolve();
    const p = prev.then(() => this.#attempts(action, server)).finally(() => {
      this.#queued--;
      if (this.#busy.get(server.id) === p) this.#busy.delete(server.id);
    });
    this.#busy.set(server.id, p);
    return p;
  }

  /** run(), logged, as the cluster machine's outcome: never throws. */
  async command(action: PowerAction, server: string, address: string | undefined, why: string): Promise<PowerResult> {
    this.commands++;
    this.log.info({ server, action, why }, 'power command');
    let o: PowerOutcome;
    try {
      o = await this.run(action, { id: server, ...(address ? { address } : {}) });
    } catch (err) {
      o = { ok: false, attempts: 0, error: { code: 'overloaded', message: (err as Error).message, retryable: true } };
    }
    if (!o.ok) this.log.warn({ server, action, attempts: o.attempts, err: o.error?.message }, 'power command failed');
    return { server, action, ok: o.ok, ...(o.error ? { error: `${o.error.message} (${o.attempts} attempt(s))` } : {}) };
  }

  async #attempts(action: PowerAction, server: { id: string; address?: string }): Promise<PowerOutcome> {
    const argv = powerArgv(this.cfg.command, action, server);
    let last: PowerOutcome = { ok: false, attempts: 0 };
    for (let k = 1; k <= this.cfg.attempts; k++) {
      last = { ...(await runOnce(argv, this.cfg.timeoutMs, this.clock)), attempts: k };
      if (last.ok || !last.error?.retryable) return last;
      this.log.warn({ server: server.id, action, attempt: k, err: last.error.message }, 'power command failed; retrying');
      if (k < this.cfg.attempts) await this.clock.sleep(1000 * 2 ** (k - 1));
    }
    return last;
  }
}

/**
 * What the cluster machine's power decisions observe, from the node agents' and instances' statuses: the servers
 * whose node agent reported within deadAfterMs, each since the first status of its current run (`upSinceMs`, local
 * time: a server powered on is up once a run that began after the power-on reports), and the servers holding an
 * instance (in their node's status or a live instance's).
 */
export function serverObservation(
  nodes: ReadonlyMap<string, { st: { startedMs: number; instances: unknown[] }; seenMs: number; upSinceMs: number }>,
  instances: Iterable<{ st: { node?: string }; seenMs: number }>, now: number, deadAfterMs: number,
): { alive: { id: string; upSinceMs: number }[]; busy: string[] } {
  const alive: { id: string; upSinceMs: number }[] = [];
  const busy = new Set<string>();
  for (const [id, n] of nodes) {
    if (now - n.seenMs >= deadAfterMs) continue;
    alive.push({ id, upSinceMs: n.upSinceMs });
    if (n.st.instances.length) busy.add(id);
  }
  for (const { st, seenMs } of instances) if (st.node && now - seenMs < deadAfterMs) busy.add(st.node);
  return { alive, busy: [...busy] };
}

/** A node agent's status as the cluster manager keeps it: a new run of the agent (another startedMs, or one after a silence) is up from now. */
export function nodeSeen<S extends { startedMs: number }>(prev: { st: S; seenMs: number; upSinceMs: number } | undefined, st: S, now: number, deadAfterMs: number): { st: S; seenMs: number; upSinceMs: number } {
  const fresh = !prev || prev.st.startedMs !== st.startedMs || now - prev.seenMs >= deadAfterMs;
  return { st, seenMs: now, upSinceMs: fresh ? now : prev.upSinceMs };
}

/**
 * The instance machine's lifecycle changes and its part of the pool's sleep-mode standby (src/policy/sleep-standby.ts
 * decides which instances sleep; the pool sends 'sleep' and 'wake'). Pure helpers of instanceStep: they edit the
 * state it handed them and add effects. The decisions:
 * - a sleep (of a ready instance): it turns 'sleeping' at once (it admits nothing, its status says so, dispatch passes
 *   it over), finishes what it holds, then its engine sleeps (engine_sleep, once nothing is queued or running);
 * - the give-up: requests still held at the deadline (config sleepDrainDeadlineMs), it serves again;
 * - a wake: before the fall it serves again at once; during the fall, once the engine has slept it wakes; asleep, the
 *   engine wakes (engine_wake) and the instance serves once it has; a failed wake leaves it asleep, a failed sleep
 *   serves again;
 * - a drain (or any other lifecycle) ends a wait to sleep; an engine asleep stays so (the pool stops the instance);
 * - a return to 'ready' (a resume of a drained instance) while the engine is asleep, falling asleep or waking: the
 *   instance turns 'sleeping' (out of dispatch) and the engine wakes as for the pool's wake; it serves once awake;
 * - an engine crash ends any sleep under way (the restarted engine is awake): once ready again the instance can sleep.
 * The live instance manager performs engine_sleep / engine_wake on its engine (actors/instance-manager/sleep-mode.ts),
 * the simulator on its engine model with src/model/sleep.ts's times (src/sim/sleep-standby.ts).
 */
import { revokeCredits } from './credits.ts';
import { pump } from './instance-admission.ts';
import { SLEEP_DRAIN_DEADLINE_MS, type InstanceEffect, type InstanceLifecycle, type InstanceMachineConfig, type InstanceMachineState } from './instance-types.ts';

/**
 * A lifecycle change: loans revoked, the change published, the status sent, the queue pumped. 'ready' with the
 * engine not awake (asleep, falling, waking) is a wake: 'sleeping' until engine_woke.
 */
export function changeLifecycle(s: InstanceMachineState, fx: InstanceEffect[], state: InstanceLifecycle, why: string, now: number, cfg: InstanceMachineConfig): void {
  const z = s.sleep;
  if (state === 'ready' && z && z.phase !== 'to-sleep') {
    state = 'sleeping';
    if (z.phase === 'asleep') {
      s.sleep = { ...z, phase: 'waking', wake: why };
      fx.push({ kind: 'engine_wake' });
    } else s.sleep = { ...z, wake: why };
  }
  if (s.lifecycle === state) return;
  const from = s.lifecycle;
  s.lifecycle = state;
  s.credits = revokeCredits(s.credits);
  fx.push({ kind: 'event', event: 'instance', summary: `${from} -> ${state} (${why})`, decision: { state, from }, inputs: {} }, { kind: 'status' });
  pump(s, fx, now, cfg);
}

/** The pool's sleep: a ready instance stops admitting and goes to sleep once it holds nothing. */
export function sleepCommand(s: InstanceMachineState, fx: InstanceEffect[], level: 1 | 2, why: string, now: number, cfg: InstanceMachineConfig): void {
  if (s.lifecycle !== 'ready' || s.sleep) return;
  s.sleep = { phase: 'to-sleep', level, giveUpAtMs: now + (cfg.sleepDrainDeadlineMs ?? SLEEP_DRAIN_DEADLINE_MS) };
  changeLifecycle(s, fx, 'sleeping', why, now, cfg);
}

/** The pool's wake. */
export function wakeCommand(s: InstanceMachineState, fx: InstanceEffect[], why: string, now: number, cfg: InstanceMachineConfig): void {
  const z = s.sleep;
  if (s.lifecycle !== 'sleeping') return;
  if (!z || z.phase === 'to-sleep') {
    s.sleep = undefined;
    changeLifecycle(s, fx, 'ready', why, now, cfg);
  } else if (z.phase === 'falling') s.sleep = { ...z, wake: why };
  else if (z.phase === 'asleep') {
    s.sleep = { ...z, phase: 'waking', wake: why };
    fx.push({ kind: 'engine_wake' });
  }
}

/** The engine's sleep call answered: asleep (or waking at once for a wake that came meanwhile), or awake again. */
export function engineSlept(s: InstanceMachineState, fx: InstanceEffect[], ok: boolean, error: string | undefined, now: number, cfg: InstanceMachineConfig): void {
  const z = s.sleep;
  if (z?.phase !== 'falling') return;
  if (!ok) {
    s.sleep = undefined;
    if (s.lifecycle === 'sleeping') changeLifecycle(s, fx, 'ready', `engine sleep failed: ${error ?? 'no reason'}`, now, cfg);
    return;
  }
  if (z.wake !== undefined && s.lifecycle === 'sleeping') {
    s.sleep = { ...z, phase: 'waking' };
    fx.push({ kind: 'engine_wake' });
    return;
  }
  const { wake: _w, ...asleep } = z;
  s.sleep = { ...asleep, phase: 'asleep' };
  fx.push({ kind: 'event', event: 'instance', summary: `engine asleep (level ${z.level})`, decision: { sleep: 'asleep', level: z.level }, inputs: {} });
}

/** The engine's wake call answered: the instance serves, or stays asleep (a failed wake). */
export function engineWoke(s: InstanceMachineState, fx: InstanceEffect[], ok: boolean, error: string | undefined, now: number, cfg: InstanceMachineConfig): void {
  const z = s.sleep;
  if (z?.phase !== 'waking') return;
  if (!ok) {
    const { wake: _w, ...asleep } = z;
    s.sleep = { ...asleep, phase: 'asleep' };
    fx.push({ kind: 'event', event: 'instance', summary: `engine wake failed: the instance stays sleeping (${error ?? 'no reason'})`, decision: { sleep: 'asleep', level: z.level }, inputs: {} });
    return;
  }
  s.sleep = undefined;
  if (s.lifecycle === 'sleeping') changeLifecycle(s, fx, 'ready', z.wake ?? 'woken', now, cfg);
}

/** After every event: a wait to sleep ends (a drain), falls asleep (nothing held), or gives up (the deadline). */
export function sleepProgress(s: InstanceMachineState, fx: InstanceEffect[], now: number, cfg: InstanceMachineConfig): void {
  const z = s.sleep;
  if (z?.phase !== 'to-sleep') return;
  if (s.lifecycle !== 'sleeping') s.sleep = undefined;
  else if (!s.queue.length && !s.running.size) {
    s.sleep = { ...z, phase: 'falling' };
    fx.push({ kind: 'engine_sleep', level: z.level });
  } else if (now >= z.giveUpAtMs) {
    s.sleep = undefined;
    changeLifecycle(s, fx, 'ready', `sleep gave up: ${s.queue.length + s.running.size} requests still held`, now, cfg);
  }
}

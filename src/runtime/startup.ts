/**
 * Where an actor process's start-up time goes. Each step of the start marks the process's performance timeline
 * (`performance.mark`, ms since the process began): `boot` (Node up and the CLI entry's static imports loaded: this
 * module is the entry's first import), the actor command `cli` (the CLI and its imports loaded, arguments parsed), `config` (the config file
 * read), `module` (the kind's module imported), `create` (the config validated, the actor built); the Actor adds
 * its own `connect` (NATS connected) and `running` (its onStart done: KV buckets, leases, first status). The
 * `actor running` log line of a process the actor command started carries them as `startup` (each step's
 * duration, ms), `startupMs` (spawn to running) and `startupCpuMs` (the CPU time it took); `test/bench/startup.bench.ts`
 * reads them there.
 */
const PREFIX = 'dynamollm:';

// imported first by the CLI's entry (src/cli/main.ts): `boot` is Node up and the entry's static imports loaded
if (!performance.getEntriesByName(`${PREFIX}boot`, 'mark').length) performance.mark(`${PREFIX}boot`);

/** The steps in their order; a step a process did not mark (e.g. `boot` under tsx) is left out. */
export const STARTUP_STEPS = ['boot', 'cli', 'config', 'module', 'create', 'connect', 'running'] as const;
export type StartupStep = (typeof STARTUP_STEPS)[number];

/** Marks a step of the process now (once: a later mark of the same step is ignored). */
export function markStartup(step: Exclude<StartupStep, 'connect' | 'running'>): void {
  if (performance.getEntriesByName(PREFIX + step, 'mark').length) return;
  performance.mark(PREFIX + step);
}

/** ms since the process began. */
export function sinceProcessStart(): number {
  return performance.now();
}

/**
 * Each step's duration, ms (from the previous step, the first from the process's start), the total: the time
 * from the process's start to its last step, and the CPU time (user + system, all threads) the process has used
 * so far: on a loaded machine the wall time is mostly waiting for a core, the CPU time is what the start costs. The steps are the marks of this process plus `own` (an actor's own
 * steps, ms since the process began: a process may run several actors). Undefined in a process the actor command
 * did not start (no `create` mark: a test running actors in its own process).
 */
export function startupPhases(own: Partial<Record<StartupStep, number>> = {}): { phases: Partial<Record<StartupStep, number>>; totalMs: number; cpuMs: number } | undefined {
  const at = (s: StartupStep) => own[s] ?? performance.getEntriesByName(PREFIX + s, 'mark')[0]?.startTime;
  if (at('create') === undefined) return undefined;
  const phases: Partial<Record<StartupStep, number>> = {};
  let prev = 0;
  for (const s of STARTUP_STEPS) {
    const t = at(s);
    if (t === undefined) continue;
    phases[s] = Math.round((t - prev) * 10) / 10;
    prev = t;
  }
  const cpu = process.cpuUsage();
  return { phases, totalMs: Math.round(prev * 10) / 10, cpuMs: Math.round((cpu.user + cpu.system) / 100) / 10 };
}

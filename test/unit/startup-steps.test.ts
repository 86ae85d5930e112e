/**
 * An actor process's start-up steps (src/runtime/startup.ts): the marks of the process and the actor's own steps
 * become each step's duration, in the steps' order, with the total from the process's start; a process the actor
 * command did not start (no `create` mark, e.g. a test running actors in its own process) reports none.
 */
import { describe, expect, it } from 'vitest';
import { markStartup, sinceProcessStart, startupPhases, STARTUP_STEPS } from '../../src/runtime/startup.ts';

describe('start-up steps', () => {
  it('none before the actor command created the actor; then each step once, in order, summing to the total', () => {
    expect(startupPhases({ connect: 1, running: 2 })).toBeUndefined();
    markStartup('cli');
    markStartup('config');
    markStartup('module');
    const firstCreate = sinceProcessStart();
    markStartup('create');
    // a later mark of a step is ignored: the first one counts
    markStartup('create');
    const connect = sinceProcessStart() + 5;
    const running = connect + 7.5;
    const s = startupPhases({ connect, running })!;
    expect(Object.keys(s.phases)).toEqual(STARTUP_STEPS.filter((x) => x in s.phases));
    expect(Object.keys(s.phases)).toEqual(expect.arrayContaining(['cli', 'config', 'module', 'create', 'connect', 'running']));
    expect(s.phases.running).toBeCloseTo(7.5, 0);
    expect(s.totalMs).toBeCloseTo(running, 0);
    const sum = Object.values(s.phases).reduce((a, b) => a + b, 0);
    expect(Math.abs(sum - s.totalMs)).toBeLessThan(0.5);
    const created = performance.getEntriesByName('dynamollm:create', 'mark');
    expect(created).toHaveLength(1);
    expect(created[0]!.startTime).toBeGreaterThanOrEqual(firstCreate);
    expect(s.cpuMs).toBeGreaterThan(0);
  });
});

/**
 * A supervisor's stop (src/runtime/supervisor.ts) with `stopTogether` (a node agent's instance managers): every child
 * gets its SIGTERM at once, so a stop takes the longest child's drain, not the sum of theirs; without it the children
 * stop one after another in reverse order of start (`up`'s actors, which depend on one another). The children here
 * drain for DRAIN_MS after their SIGTERM, then exit.
 */
import { describe, expect, it } from 'vitest';
import { Supervisor, silentLogger } from '../../src/runtime/index.ts';

const DRAIN_MS = 1500;
/** a child that says it is ready once its SIGTERM handler is installed, and exits DRAIN_MS after its SIGTERM */
const draining = (name: string) => ({
  name, command: process.execPath, output: 'ignore' as const, stopGraceMs: 20_000,
  args: ['-e', `process.on('SIGTERM', () => setTimeout(() => process.exit(0), ${DRAIN_MS})); require('node:fs').writeSync(Number(process.env.DYNAMOLLM_READY_FD), 'ready\\n'); setInterval(() => {}, 1e9);`],
});

/** ms the stop of three draining children takes, and the order they exited in. */
async function stopTime(stopTogether: boolean): Promise<{ ms: number; exits: string[] }> {
  const sup = new Supervisor({ children: ['a', 'b', 'c'].map(draining), log: silentLogger(), stopTogether });
  const ready = new Set<string>();
  const allReady = new Promise<void>((resolve) => sup.on('ready', ({ name }: { name: string }) => {
    ready.add(name);
    if (ready.size === 3) resolve();
  }));
  const exits: string[] = [];
  sup.on('exit', ({ name }: { name: string }) => exits.push(name));
  await sup.start();
  await allReady;
  const t0 = Date.now();
  await sup.stop();
  return { ms: Date.now() - t0, exits };
}

describe('Supervisor stop', () => {
  it('stopTogether: every child drains at once (one drain\'s time); otherwise one after another in reverse order', async () => {
    const together = await stopTime(true);
    expect(together.exits.sort()).toEqual(['a', 'b', 'c']);
    expect(together.ms).toBeGreaterThanOrEqual(DRAIN_MS);
    expect(together.ms).toBeLessThan(2 * DRAIN_MS);
    const inTurn = await stopTime(false);
    expect(inTurn.exits).toEqual(['c', 'b', 'a']);
    expect(inTurn.ms).toBeGreaterThanOrEqual(3 * DRAIN_MS);
    console.log(`three children draining ${DRAIN_MS} ms each: stopped together in ${together.ms} ms, in turn in ${inTurn.ms} ms`);
  }, 60_000);
});

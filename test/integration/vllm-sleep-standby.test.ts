/**
 * scaling.sleepStandby with vLLM engines: the config turns on vLLM's sleep mode (engine.enableSleep, on by default
 * with the standby), the instance manager's engine is spawned with --enable-sleep-mode and VLLM_SERVER_DEV_MODE=1
 * (a fake `vllm`, test/fixtures/fake-vllm, serves /sleep and /wake_up only with both), and the instance's
 * engine_sleep / engine_wake reach the engine.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { parseConfig } from '../../actors/common/config.ts';
import { engineConfigOf } from '../../actors/instance-manager/engine-config.ts';
import { LifecycleCommands } from '../../actors/instance-manager/sleep-mode.ts';
import { createEngine, type VllmEngine } from '../../src/engine/index.ts';
import type { InstanceEvent } from '../../src/policy/machines/instance.ts';

const FAKE = fileURLToPath(new URL('../fixtures/fake-vllm', import.meta.url));
const engines: VllmEngine[] = [];
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.stop(1_000)));
});
const instance = { tp: 2 as const, gpuIds: [0, 1], apiKey: 'k', profile: undefined };

describe('sleep-mode standby with vLLM engines', () => {
  it('the standby spawns vLLM in sleep mode and the instance puts it to sleep and wakes it', async () => {
    const c = parseConfig({ engine: { kind: 'vllm', command: FAKE, healthDeadlineMs: 10_000 }, scaling: { sleepStandby: true } });
    const e = createEngine(engineConfigOf(c, instance)) as VllmEngine;
    engines.push(e);
    expect(e.spec.args).toContain('--enable-sleep-mode');
    expect(e.spec.env.VLLM_SERVER_DEV_MODE).toBe('1');
    await e.start();
    const steps: InstanceEvent[] = [];
    let stepped: () => void = () => {};
    const lc = new LifecycleCommands({
      engine: e, log: pino({ level: 'silent' }), state: () => 'ready', queued: () => 0, running: () => 0, lifecycle: () => {},
      step: (ev) => {
        steps.push(ev);
        stepped();
      },
    });
    const next = () => new Promise<void>((r) => (stepped = r));
    let done = next();
    lc.engine({ kind: 'engine_sleep', level: 1 });
    await done;
    expect(steps.at(-1)).toEqual({ type: 'engine_slept', ok: true });
    expect(await e.isSleeping()).toBe(true);
    done = next();
    lc.engine({ kind: 'engine_wake' });
    await done;
    expect(steps.at(-1)).toEqual({ type: 'engine_woke', ok: true });
    expect(await e.isSleeping()).toBe(false);
  });

  it('engine.enableSleep is a config key; sleep mode follows it, the standby, or --enable-sleep-mode in engine.args', () => {
    const sleepOf = (raw: Record<string, unknown>) => engineConfigOf(parseConfig(raw), instance).enableSleep;
    expect(sleepOf({ engine: { kind: 'vllm', enableSleep: true } })).toBe(true);
    expect(sleepOf({ engine: { kind: 'vllm' } })).toBe(false);
    expect(sleepOf({ engine: { kind: 'vllm', args: ['--enable-sleep-mode'] } })).toBe(true);
    expect(sleepOf({ engine: { kind: 'vllm' }, scaling: { sleepStandby: true } })).toBe(true);
    expect(sleepOf({ engine: { kind: 'emulator' } })).toBe(true);
    // a standby whose engines cannot sleep is a contradiction, refused with the keys named
    expect(() => parseConfig({ engine: { kind: 'vllm', enableSleep: false }, scaling: { sleepStandby: true } })).toThrow(/scaling.sleepStandby.*engine.enableSleep/);
  });
});

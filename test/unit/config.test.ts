/**
 * The cluster config is validated at every depth: a nested unknown key is an error naming it (with the
 * closest known key), cross-field contradictions name their keys, an unknown model or GPU is refused, and a
 * profile that lacks a configured TP is refused when an actor starts (checkProfileCovers).
 */
import { describe, expect, it } from 'vitest';
import { parseConfig, checkProfileCovers, ConfigError, defaultConfig } from '../../actors/common/config.ts';
import { splitConfig } from '../../actors/gateway/config.ts';
import { getGpuSpec, getModelSpec } from '../../src/model/catalog.ts';

const err = (raw: unknown): string => {
  try {
    parseConfig(raw, 'config t.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('accepted');
};

describe('config validation', () => {
  it('the default config and the shipped configs pass', () => {
    expect(() => defaultConfig()).not.toThrow();
    expect(parseConfig({}).liveness.deadAfterMs).toBe(3000);
  });

  it('nested unknown keys are errors naming the full key and the closest known one', () => {
    expect(err({ engine: { timescale: 4 } })).toMatch(/engine\.timescale: unknown key \(did you mean 'timeScale'\?\)/);
    expect(err({ epochs: { clusterSec: 60 } })).toMatch(/epochs\.clusterSec: unknown key \(did you mean 'clusterS'\?\)/);
    expect(err({ slo: { ttftMs: { S: 1, M: 2, L: 3, XL: 4 } } })).toMatch(/slo\.ttftMs\.XL: unknown key/);
    expect(err({ servers: [{ id: 'a', gpus: 8, gpu: 'h100' }] })).toMatch(/servers\.0\.gpu: unknown key \(did you mean 'gpus'\?\)/);
    expect(err({ nats: { jetstreamReplica: 3 } })).toMatch(/nats\.jetstreamReplica: unknown key \(did you mean 'jetstreamReplicas'\?\)/);
    expect(err({ modle: 'llama2-70b' })).toMatch(/modle: unknown key \(did you mean 'model'\?\)/);
    // the gateway's own section too
    expect(() => splitConfig({ gateway: { prot: 8000 } })).toThrow(/gateway\.prot: unknown key \(did you mean 'port'\?\)/);
  });

  it('liveness contradictions are refused at parse time (they crashed the managers with a RangeError)', () => {
    const m = err({ liveness: { statusIntervalMs: 5000, deadAfterMs: 1000, leaseTtlMs: 100 } });
    expect(m).toMatch(/liveness\.deadAfterMs: 1000 ms must be at least 2 x liveness\.statusIntervalMs \(5000 ms\)/);
    expect(m).toMatch(/liveness\.leaseTtlMs: 100 ms is below 500 ms/);
    expect(() => parseConfig({ liveness: { statusIntervalMs: 250, instanceStatusIntervalMs: 100, deadAfterMs: 1000, leaseTtlMs: 500 } })).not.toThrow();
  });

  it('the instances\' status interval and the suspicion: too short or too long against each other is refused', () => {
    const m = err({ liveness: { instanceStatusIntervalMs: 2000, suspectAfterMs: 1000 } });
    expect(m).toMatch(/liveness\.deadAfterMs: 3000 ms must be at least 2 x the instances' status interval \(2000 ms\)/);
    expect(m).toMatch(/liveness\.suspectAfterMs: 1000 ms must be at least 2 x the instances' status interval \(2000 ms\)/);
    expect(err({ liveness: { instanceStatusIntervalMs: 20 } })).toMatch(/liveness\.instanceStatusIntervalMs: 20 ms is below 50 ms/);
    // the defaults: the instances every 250 ms (or statusIntervalMs where shorter), suspected after 3 of them
    expect(() => parseConfig({ liveness: { statusIntervalMs: 1000, deadAfterMs: 3000, instanceStatusIntervalMs: 250, suspectAfterMs: 750 } })).not.toThrow();
    expect(() => parseConfig({ liveness: { statusIntervalMs: 100, deadAfterMs: 900 } })).not.toThrow();
    // a suspicion as long as the death or longer: never suspected before dead, set or derived
    expect(err({ liveness: { suspectAfterMs: 3000 } })).toMatch(/liveness\.suspectAfterMs: 3000 ms \(set\) must be below liveness\.deadAfterMs \(3000 ms\)/);
    expect(err({ liveness: { suspectAfterMs: 5000 } })).toMatch(/liveness\.suspectAfterMs: 5000 ms \(set\) must be below liveness\.deadAfterMs \(3000 ms\)/);
    expect(err({ liveness: { statusIntervalMs: 100, deadAfterMs: 300 } })).toMatch(/liveness\.suspectAfterMs: 300 ms \(by default 3 x the instances' status interval of 100 ms: .*\) must be below liveness\.deadAfterMs \(300 ms\)/);
    expect(err({ liveness: { statusIntervalMs: 250, deadAfterMs: 500, leaseTtlMs: 500 } })).toMatch(/liveness\.suspectAfterMs: 750 ms .* must be below liveness\.deadAfterMs \(500 ms\)/);
    expect(() => parseConfig({ liveness: { suspectAfterMs: 2999 } })).not.toThrow();
  });

  it('other contradictions name their keys', () => {
    expect(err({ epochs: { poolS: 10, instanceS: 20 } })).toMatch(/epochs\.instanceS \(20 s\) must not exceed epochs\.poolS \(10 s\)/);
    expect(err({ thresholds: { input: { S: 300, M: 200, L: 8192 } } })).toMatch(/thresholds\.input: S < M < L/);
    expect(err({ servers: [{ id: 'a', gpus: 4 }], engine: { initialTp: 8 } })).toMatch(/engine\.initialTp: 8 exceeds the largest server \(4 GPUs/);
    expect(err({ gpuBackend: 'nvml' })).toMatch(/gpuBackend: 'nvml' controls real GPUs, but engine\.kind is 'emulator'/);
    expect(err({ scaling: { epochFloorS: 3600 } })).toMatch(/scaling\.epochFloorS \(3600 s\) must not exceed epochs\.clusterS \(1800 s\)/);
    expect(parseConfig({ scaling: { epochFloorS: 300 } }).scaling.epochFloorS).toBe(300);
  });

  it('an unknown model or GPU is refused, with a suggestion', () => {
    expect(err({ model: 'gpt-99' })).toMatch(/model: unknown model 'gpt-99'.*known: .*llama2-70b/);
    expect(err({ model: 'lama2-70b' })).toMatch(/did you mean 'llama2-70b'\?/);
    expect(err({ gpu: 'h300' })).toMatch(/gpu: unknown gpu 'h300'/);
    // names of the catalogs' inherited members are not models or GPUs
    expect(err({ model: 'toString' })).toMatch(/model: unknown model 'toString'/);
    expect(err({ model: '__proto__' })).toMatch(/model: unknown model '__proto__'/);
    expect(err({ gpu: 'constructor' })).toMatch(/gpu: unknown gpu 'constructor'/);
    expect(() => getModelSpec('hasOwnProperty')).toThrow(/unknown model 'hasOwnProperty'/);
    expect(() => getGpuSpec('valueOf')).toThrow(/unknown gpu 'valueOf'/);
  });

  it('duplicate server ids, a type in two pools, a type in none', () => {
    expect(err({ servers: [{ id: 'a' }, { id: 'b' }, { id: 'a' }] })).toMatch(/servers\.2\.id: duplicate server id 'a'/);
    const all = ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'];
    expect(err({ pools: [{ id: 'p1', types: all }, { id: 'p2', types: ['SS'] }] })).toMatch(/pools\.1\.types: request type SS is served by two pools \(p1 and p2\)/);
    expect(err({ pools: [{ id: 'p1', types: all.slice(1) }] })).toMatch(/pools: no pool serves SS/);
    expect(() => parseConfig({ pools: [{ id: 'short', types: all.slice(0, 4) }, { id: 'long', types: all.slice(4) }] })).not.toThrow();
  });

  it('a profile that does not cover a configured TP is refused', () => {
    const c = parseConfig({});
    const p = { tpDegrees: [2, 4], model: 'llama2-70b', gpu: 'h100' };
    expect(() => checkProfileCovers(p, [c.engine.initialTp], 'profiles/x.json', c)).toThrow(/profile profiles\/x\.json covers TP 2, 4 but not TP 8/);
    expect(() => checkProfileCovers(p, [4], 'profiles/x.json', c)).not.toThrow();
    expect(() => checkProfileCovers({ ...p, model: 'llama3.1-8b' }, [4], 'profiles/x.json', c)).toThrow(/is for llama3\.1-8b on h100, the config says model llama2-70b/);
  });
});

describe('where an instance\'s engine listens (the URL a direct request is granted)', () => {
  it('its server\'s address, else DYNAMOLLM_ENGINE_HOST, else 127.0.0.1; a bad address is refused', async () => {
    const { engineHost } = await import('../../actors/instance-manager/main.ts');
    const c = parseConfig({ servers: [{ id: 'a', gpus: 8, address: '10.0.0.7' }, { id: 'b', gpus: 8 }] });
    expect(engineHost(c, 'a', {})).toBe('10.0.0.7');
    expect(engineHost(c, 'a', { DYNAMOLLM_ENGINE_HOST: '10.9.9.9' })).toBe('10.0.0.7');
    expect(engineHost(c, 'b', { DYNAMOLLM_ENGINE_HOST: '10.9.9.9' })).toBe('10.9.9.9');
    expect(engineHost(c, 'b', {})).toBe('127.0.0.1');
    expect(() => parseConfig({ servers: [{ id: 'a', gpus: 8, address: 'http://x/' }] })).toThrow(/address/);
  });
});

/**
 * The simulator's requests get the SLOs and classes of the cluster config it is given (`simulate --config`: its
 * `slo:` and `thresholds:`), through the same src/policy functions the live actors call: each simulated request's
 * type, TTFT SLO and TTFT deadline are those the live cluster on that config gives the same request
 * (classifyForRecord and withSlo with the ClusterConfig, as the instance manager and the intake call them).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { simulate } from '../../src/sim/index.ts';
import type { SimOptions } from '../../src/sim/types.ts';
import { sloSettingsOf } from '../../src/cli/commands/simulate.ts';
import { loadConfig } from '../../actors/common/config.ts';
import { classified, classifyForRecord } from '../../src/policy/classify.ts';
import { DEFAULT_SLO_SETTINGS, TBT_SLO_MS, TTFT_SLO_MS, withSlo } from '../../src/policy/slo.ts';
import type { InferenceRequest, RequestType } from '../../protocols/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'sim-slo-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
// four requests a second apart (ms timestamps), each on an idle instance: [time, prompt, output]; the last prompt is
// past 8,192 tokens (a long-context model: an L-input request whose TTFT SLO grows with its prompt)
const ROWS = [[0, 90, 20], [1000, 400, 30], [2000, 1200, 40], [3000, 10_000, 50]] as const;
const trace = join(dir, 'spaced.jsonl');
writeFileSync(trace, ROWS.map(([t, i, o]) => JSON.stringify({ timestamp: t, input_length: i, output_length: o })).join('\n') + '\n');
// a cluster config with SLOs and thresholds other than Table IV's
const configPath = join(dir, 'cluster.yaml');
writeFileSync(configPath, [
  'model: llama3.1-8b', 'gpu: h100',
  'slo: { ttftMs: { S: 150, M: 600, L: 3000 }, tbtMs: 1 }',
  'thresholds: { input: { S: 64, M: 512, L: 4096 }, output: { S: 16, M: 64 } }',
].join('\n') + '\n');

/** two TP1 instances behind the pool machine's dispatch (the twin check's shape). */
const opts = (extra: Partial<SimOptions> = {}): SimOptions => ({
  policy: 'dynamollm', fidelity: 'step', model: 'llama3.1-8b', gpu: 'h100', rateScale: 1,
  profilePath: 'profiles/llama3.1-8b.h100.tp1.json', servers: 1, gpusPerServer: 2, instanceTp: 1,
  knobs: { pools: 'single', dynamicInstances: false, dynamicShards: false, dynamicClock: true, emergency: true },
  dispatch: 'policy', trace: { kind: 'file', path: trace, timeUnit: 'ms' }, instanceEpochPhaseMs: [5000, 5000],
  ...extra,
});

/** the run, with each request's true type (in arrival order) and each admission's TTFT SLO and deadline. */
async function run(o: SimOptions) {
  const types: { arrivalMs: number; type: RequestType }[] = [];
  const admits: { arrivalMs: number; sloMs: number; deadlineMs: number }[] = [];
  const r = await simulate(o, undefined, {
    onRequest: (q) => types.push({ arrivalMs: q.arrivalMs, type: q.type }),
    onInstanceStep: (_i, _c, ev) => {
      if (ev.type === 'admit') admits.push({ arrivalMs: ev.req.arrivalMs, sloMs: ev.req.ttftSloMs, deadlineMs: ev.req.ttftDeadlineMs });
    },
  });
  types.sort((a, b) => a.arrivalMs - b.arrivalMs);
  admits.sort((a, b) => a.arrivalMs - b.arrivalMs);
  return { r, types: types.map((t) => t.type), admits };
}

/** The request as the live gateway sends it (replay: max_tokens the trace's output). */
const wire = ([t, i, o]: readonly [number, number, number]): InferenceRequest => ({
  v: 1, id: `r${t}`, model: 'llama3.1-8b', kind: 'completion', inputTokens: i, maxTokens: o, arrivalMs: t, giveUpAtMs: t + 600_000, streamSubject: 's',
});

describe('simulate --config: the requests get the config slo: and thresholds:', () => {
  it('simulate passes the config sections; without a config, none (Table IV, the config defaults)', () => {
    const c = loadConfig(configPath);
    expect(sloSettingsOf({ config: configPath })).toEqual({ slo: c.slo, thresholds: c.thresholds });
    expect(sloSettingsOf({})).toEqual({});
    // the simulator's default (no config) is a config's without the sections: Table IV
    const bare = join(dir, 'bare.yaml');
    writeFileSync(bare, 'model: llama3.1-8b\ngpu: h100\n');
    const d = loadConfig(bare);
    expect({ slo: d.slo, thresholds: d.thresholds }).toEqual(DEFAULT_SLO_SETTINGS);
    expect(DEFAULT_SLO_SETTINGS.slo).toEqual({ ttftMs: TTFT_SLO_MS, tbtMs: TBT_SLO_MS });
  });

  it("each simulated request's type, TTFT SLO and deadline follow the config, and are the live cluster's", async () => {
    const cfg = loadConfig(configPath);
    const sim = await run(opts(sloSettingsOf({ config: configPath })));
    // input S < 64 <= M < 512 <= L; output S < 16 <= M < 64: Table IV would have SS, MS, LS, LS
    expect(sim.types).toEqual(['MM', 'MM', 'LM', 'LM']);
    // TTFT SLO by input class 150/600/3000 ms (Table IV: 250/400/2000), the 10,000-token prompt's scaled past 8,192
    expect(sim.admits.map((a) => a.deadlineMs - a.arrivalMs)).toEqual([600, 600, 3000, (3000 * 10_000) / 8192]);
    // the live cluster on this config: the instance manager's classification of a request admitted directly
    // (classified: classifyForRecord, then withSlo) and the intake's withSlo on that type
    ROWS.forEach((row, k) => {
      const live = classified(wire(row), cfg);
      expect(live.type, `row ${k}`).toBe(sim.types[k]);
      expect(classifyForRecord(wire(row), cfg)).toBe(sim.types[k]);
      expect(live.ttftDeadlineMs).toBe(sim.admits[k]!.deadlineMs);
      expect(live.slo.ttftMs).toBe(sim.admits[k]!.sloMs);
      expect(withSlo(wire(row), live.type, cfg).ttftDeadlineMs).toBe(sim.admits[k]!.deadlineMs);
    });
    // TBT SLO 1 ms: no request meets it (every type's attainment 0); Table IV's 100 ms: every one does
    for (const t of ['MM', 'LM'] as const) expect(sim.r.sloAttainment[t], t).toBe(0);
    const table = await run(opts());
    expect(table.types).toEqual(['SS', 'MS', 'LS', 'LS']);
    expect(table.admits.map((a) => a.deadlineMs - a.arrivalMs)).toEqual([250, 400, 2000, (2000 * 10_000) / 8192]);
    for (const t of ['SS', 'MS', 'LS'] as const) expect(table.r.sloAttainment[t], t).toBe(1);
  }, 120_000);

  it('sloScale multiplies the config SLOs', async () => {
    const sim = await run(opts({ ...sloSettingsOf({ config: configPath }), sloScale: 2 }));
    expect(sim.admits.map((a) => a.deadlineMs - a.arrivalMs)).toEqual([1200, 1200, 6000, (6000 * 10_000) / 8192]);
  }, 120_000);

  it('fluid fidelity judges attainment against the config SLOs', async () => {
    const fluid = (extra: Partial<SimOptions>) => simulate({
      policy: 'single-pool', fidelity: 'fluid', model: 'llama3.1-8b', gpu: 'h100', rateScale: 1, servers: 1,
      trace: { kind: 'file', path: trace, timeUnit: 'ms' }, ...extra,
    });
    const cfg = await fluid(sloSettingsOf({ config: configPath }));
    expect(Object.keys(cfg.sloAttainment).sort()).toEqual(['LM', 'MM']);
    for (const v of Object.values(cfg.sloAttainment)) expect(v).toBe(0);
    const table = await fluid({});
    expect(Object.keys(table.sloAttainment).sort()).toEqual(['LS', 'MS', 'SS']);
    for (const v of Object.values(table.sloAttainment)) expect(v).toBeGreaterThan(0);
  }, 120_000);
});

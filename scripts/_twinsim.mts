import { simulate } from '../src/sim/index.ts';
for (const [servers, gps, tp] of [[1, 4, 1], [1, 4, 2], [1,8,2]] as const) {
const sim = await simulate({
    policy: 'dynamollm', fidelity: 'step', model: 'llama3.1-8b', gpu: 'h100', profilePath: 'profiles/llama3.1-8b.h100.tp1.json',
    servers, gpusPerServer: gps, instanceTp: tp, rateScale: 1, epochs: { clusterS: 3600, poolS: 20, instanceS: 5 },
    knobs: { pools: 'single', dynamicInstances: false, dynamicShards: true, dynamicClock: true, emergency: true },
    dispatch: 'policy',
    trace: { kind: 'file', path: 'data/traces/AzureLLMInferenceTrace_conv.csv', durationMs: 120 * 1000 },
  } as any);
console.log(servers, gps, tp, sim.durationS, Math.round(sim.energyKWh*3.6e6), Math.round(sim.avgPowerW), JSON.stringify(sim.reconfigurations), JSON.stringify(sim.series.gpusByPool), sim.p99WithinSlo);
}

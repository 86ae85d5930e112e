import { simulate } from './src/sim/index.ts';
for (const policy of ['scale-freq'] as const) {
  const r = await simulate({ model: 'llama2-70b', gpu: 'h100', servers: 40, policy, fidelity: 'fluid', rateScale: 'auto', trace: { kind: 'synth', shape: 'conversation', durationS: 3600, meanRps: 5, seed: 1, lengthsFromFile: 'data/traces/AzureLLMInferenceTrace_conv.csv' } });
  console.log(policy, r.energyKWh, r.reconfigurations);
}

/** src/policy: the decisions of DynamoLLM as pure functions, shared by the live actors and the simulator. */
export * from './types.ts';
export * from './slo.ts';
export * from './classify.ts';
export * from './predictor.ts';
export * from './forecast.ts';
export * from './energy.ts';
export * from './cluster.ts';
export * from './sharding.ts';
export * from './reshard-matching.ts';
export * from './hungarian.ts';
export * from './frequency.ts';
export * from './arrival-rate.ts';
export * from './dispatch.ts';
export * from './emergency.ts';
export * from './milp.ts';
export * from './prefix.ts';

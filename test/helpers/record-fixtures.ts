/**
 * What the records tests (pool-records, cluster-records) play of the cluster around the manager under test: the
 * pool's one instance's status, a request as the intake or the gateway sends it, and its `ok` record.
 */
import type { Bus } from '../../src/runtime/bus.ts';
import { InstanceStatus, controlSubjects, subjects, type InferenceRequest, type RequestRecord } from '../../protocols/index.ts';

/** A `ready`, idle status of instance `inst` of `pool`, as it publishes one every status interval. */
export function publishReadyStatus(bus: Bus, pool: string, inst: string, seq: number, startedMs: number): void {
  bus.publish(controlSubjects.instanceStatus(pool, inst), InstanceStatus, {
    v: 1, id: inst, pool, node: 'n0', tp: 1, gpuIds: [0], state: 'ready', startedMs, seq, sentMs: Date.now(), clockMhz: 1980, maxClockMhz: 1980,
    queued: 0, running: 0, queuedIds: [], runningIds: [], loadByType: {},
  });
}

/** The `ok` record of request `id` served by `inst` of `pool`. */
export function okRecord(id: string, pool: string, inst: string, tokens: { prompt: number; completion: number }): RequestRecord {
  return { v: 1, id, type: 'SS', pool, instance: inst, outcome: 'ok', promptTokens: tokens.prompt, completionTokens: tokens.completion, energyJ: 12.5, energySource: 'modelled', sloMet: true, finishedMs: Date.now() };
}

/** A 10-token completion request of `model`, 120 s to live (`type`: as classified). */
export function shortRequest(id: string, model: string, type?: InferenceRequest['type']): InferenceRequest {
  const now = Date.now();
  return { v: 1, id, model, kind: 'completion', prompt: 'hello', inputTokens: 10, maxTokens: 20, arrivalMs: now, giveUpAtMs: now + 120_000, streamSubject: subjects.stream(id), ...(type ? { type } : {}) };
}

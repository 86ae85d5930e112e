/**
 * The real InstanceManager on an in-memory bus (what it serves: the leg subject's publication handler; what it
 * publishes: each message encoded by its codec and kept decoded by subject), an engine and a GPU that answer at once,
 * and the direct path's credited short legs as the gateway reports them (a credited report that carries the leg's
 * first token and end). Used by test/unit/instance-credited-legs.test.ts and scripts/instance-cost.ts.
 */
import { parseConfig } from '../../actors/common/config.ts';
import { InstanceManager } from '../../actors/instance-manager/instance-manager.ts';
import { RequestRecord, subjects, type Codec, type InferenceRequest, type LegReport } from '../../protocols/index.ts';
import { classified } from '../../src/policy/classify.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { systemClock, type Clock } from '../../src/runtime/clock.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import type { Engine } from '../../src/engine/engine.ts';
import type { GpuControl } from '../../src/gpu/index.ts';

export const MODEL = 'llama3.1-8b';
export const INSTANCE = 'i0';
export const POOL = 'pool-all';

export interface InMemoryInstance {
  im: InstanceManager;
  /** hands the instance one message of its leg subject (a LegReport or a LegReportBatch), as its NATS callback does. */
  leg(m: unknown): void;
  /** the records it published, decoded (RequestRecord.decode: the readers' validation). */
  records: RequestRecord[];
  /** messages published on other subjects, counted. */
  other: { n: number };
  /** bytes of the records published. */
  recordBytes: { n: number };
  config: ReturnType<typeof parseConfig>;
}

/** `keepRecords` false: the records are encoded and counted, not decoded and kept (the cost script). */
export async function inMemoryInstance(o: { clock?: Clock; keepRecords?: boolean } = {}): Promise<InMemoryInstance> {
  const config = parseConfig({
    model: MODEL, gpu: 'h100', servers: [{ id: 'n0', gpus: 1 }], pools: [{ id: POOL, types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
    engine: { kind: 'emulator', initialTp: 1, maxInEngine: 64, maxQueued: 1024 },
  });
  let publication: ((m: unknown, subject: string) => void) | undefined;
  const records: RequestRecord[] = [];
  const other = { n: 0 }, recordBytes = { n: 0 };
  const recordSubject = subjects.telRequest(POOL);
  const bus = {
    closed: false,
    nc: { info: undefined },
    serve(subject: string, _q: unknown, _r: unknown, _h: unknown, opts: { publication?: (m: unknown, s: string) => void }) {
      if (subject === subjects.instanceLeg(INSTANCE)) publication = opts.publication;
      return { unsubscribe() {} };
    },
    subscribe: () => ({ unsubscribe() {} }),
    // the connection's status events (a disconnect, a reconnect): none here
    on() {},
    off() {},
    publish<T>(subject: string, codec: Codec<T>, msg: T) {
      const b = codec.encode(msg);
      if (subject !== recordSubject) other.n++;
      else {
        recordBytes.n += b.length;
        if (o.keepRecords !== false) records.push(RequestRecord.decode(b, subject));
      }
    },
    request: () => Promise.reject(new Error('no peers here')),
  } as unknown as Bus;
  const engine = {
    baseUrl: 'http://127.0.0.1:1', state: 'ready', on() {}, start: async () => {}, stop: async () => {},
    prefixCache: async () => undefined, probeHealth: async () => true,
  } as unknown as Engine;
  let mj = 0;
  const gpu = {
    kind: 'emulated', gpuIds: [0], supportedClocksMhz: async () => [1005, 1410, 1980], lockClocks: async (_a: number, b: number) => ({ minMhz: b, maxMhz: b }),
    resetClocks: async () => {}, readPowerMw: async () => [300_000], readEnergyMj: async () => [(mj += 1000)], readClocksMhz: async () => [], close: async () => {},
  } as unknown as GpuControl;
  const im = new InstanceManager({ id: INSTANCE, pool: POOL, tp: 1, gpuIds: [0], config, bus, log: silentLogger(), engine, engineApiKey: 'k', openGpu: async () => gpu, clock: o.clock ?? systemClock });
  await im.start();
  if (!publication) throw new Error('the instance serves no leg subject');
  const p = publication;
  return { im, leg: (m) => p(m, subjects.instanceLeg(INSTANCE)), records, other, recordBytes, config };
}

/**
 * A credited short leg's one report (credited, its first token and its end), as the gateway joins them: `request` as
 * the gateway routed it (classified, without its prompt), `firstTokenMs` `ttftMs` after its arrival.
 */
export function creditedShortLeg(config: InMemoryInstance['config'], id: string, now: number, o: { ttftMs?: number; tbtMeanMs?: number; energyJ?: number; outcome?: LegReport['outcome'] } = {}): LegReport {
  const { prompt: _p, ...req } = classified({
    v: 1, id, model: MODEL, kind: 'completion', prompt: [1, 2, 3, 4, 5, 6, 7, 8], inputTokens: 8, maxTokens: 4, ignoreEos: true,
    arrivalMs: now, giveUpAtMs: now + 600_000, streamSubject: subjects.stream(id), direct: true,
  } as InferenceRequest, config);
  const tbt = o.tbtMeanMs ?? 0.1;
  return {
    v: 1, id, phase: 'credited', request: { ...req, promptForm: 'ids' } as InferenceRequest, credit: { gateway: 'gw-0', epoch: 0 }, gateway: { id: 'gw-0', startedMs: now - 60_000 },
    outcome: o.outcome ?? 'ok', firstTokenMs: now + (o.ttftMs ?? 1), tbtSumMs: 3 * tbt, tbtMaxMs: 2 * tbt, tbtN: 3, completionTokens: 4, promptTokens: 8, engineEnergyJ: o.energyJ ?? 0.5,
  };
}

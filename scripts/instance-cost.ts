/**
 * The instance manager's JavaScript per credited short request, in one process: the real InstanceManager over an
 * in-memory bus (what it serves and publishes: the leg subject's publication handler, packed records counted), an
 * engine and a GPU that answer at once, fed the direct path's leg reports as the gateway sends them (batches of 3
 * credited reports that carry their first token and end, from the msgpack bytes: decode and validation included).
 * Its CPU (process.cpuUsage) per request over N requests after WARM: no socket, no other process, so no wake-ups and
 * no kernel: what the quiet host's saturated instance manager spends per request in its own code.
 *   npx tsx scripts/instance-cost.ts   (env: N 60000, WARM 30000, ROUNDS 3)
 */
import { parseConfig } from '../actors/common/config.ts';
import { InstanceManager } from '../actors/instance-manager/instance-manager.ts';
import { LegReportBatch, subjects, type Codec, type InferenceRequest, type LegReport } from '../protocols/index.ts';
import { classified } from '../src/policy/classify.ts';
import { silentLogger } from '../src/runtime/logger.ts';
import type { Bus } from '../src/runtime/bus.ts';
import type { Engine } from '../src/engine/engine.ts';
import type { GpuControl } from '../src/gpu/index.ts';

const N = Number(process.env.N ?? 60_000);
const WARM = Number(process.env.WARM ?? 30_000);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const MODEL = 'llama3.1-8b';

const config = parseConfig({
  model: MODEL, gpu: 'h100', servers: [{ id: 'n0', gpus: 1 }], pools: [{ id: 'pool-all', types: ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] }],
  engine: { kind: 'emulator', initialTp: 1, maxInEngine: 64, maxQueued: 1024 },
});

let publication: ((m: unknown, subject: string) => void) | undefined;
const published = { records: 0, bytes: 0, other: 0 };
const recordSubject = subjects.telRequest('pool-all');
const bus = {
  closed: false,
  nc: { info: undefined },
  serve(subject: string, _q: unknown, _r: unknown, _h: unknown, opts: { publication?: (m: unknown, s: string) => void }) {
    if (subject === subjects.instanceLeg('i0')) publication = opts.publication;
    return { unsubscribe() {} };
  },
  subscribe: () => ({ unsubscribe() {} }),
  publish<T>(subject: string, codec: Codec<T>, msg: T) {
    const b = codec.encode(msg);
    if (subject === recordSubject) {
      published.records++;
      published.bytes += b.length;
    } else published.other++;
  },
  request: () => Promise.reject(new Error('no peers here')),
} as unknown as Bus;
const engine = {
  baseUrl: 'http://127.0.0.1:1', state: 'ready', on() {}, start: async () => {}, stop: async () => {},
  prefixCache: async () => undefined, probeHealth: async () => true,
} as unknown as Engine;
let mj = 0;
const gpu: GpuControl = {
  kind: 'emulated', gpuIds: [0], supportedClocksMhz: async () => [1005, 1410, 1980], lockClocks: async (_a: number, b: number) => ({ minMhz: b, maxMhz: b }),
  resetClocks: async () => {}, readPowerMw: async () => [300_000], readEnergyMj: async () => [(mj += 1000)], readClocksMhz: async () => [], close: async () => {},
} as unknown as GpuControl;
const im = new InstanceManager({ id: 'i0', pool: 'pool-all', tp: 1, gpuIds: [0], config, bus, log: silentLogger(), engine, engineApiKey: 'k', openGpu: async () => gpu });
await im.start();
if (!publication) throw new Error('the instance serves no leg subject');

let next = 0;
const gateway = { id: 'gw-0', startedMs: Date.now() };
function report(): LegReport {
  const id = `r${(next++).toString(36).padStart(16, '0')}`;
  const now = Date.now();
  const { prompt: _p, ...req } = classified({
    v: 1, id, model: MODEL, kind: 'completion', prompt: [1, 2, 3, 4, 5, 6, 7, 8], inputTokens: 8, maxTokens: 4, ignoreEos: true,
    arrivalMs: now, giveUpAtMs: now + 600_000, streamSubject: subjects.stream(id), direct: true,
  } as InferenceRequest, config);
  return {
    v: 1, id, phase: 'credited', request: { ...req, promptForm: 'ids' } as InferenceRequest, credit: { gateway: gateway.id, epoch: 0 }, gateway,
    outcome: 'ok', firstTokenMs: now, tbtSumMs: 0.3, tbtMaxMs: 0.1, tbtN: 3, completionTokens: 4, promptTokens: 8, engineEnergyJ: 0.5,
  };
}
/** `n` requests in batches of 3, each from its bytes; returns CPU us per request. */
async function drive(n: number): Promise<number> {
  const batches: Uint8Array[] = [];
  for (let i = 0; i < n; i += 3) batches.push(LegReportBatch.encode({ v: 1, reports: [report(), report(), report()] }));
  const legs = subjects.instanceLeg('i0');
  const { LegMessage } = await import('../protocols/index.ts');
  const c0 = process.cpuUsage();
  for (let i = 0; i < batches.length; i++) {
    publication!(LegMessage.decode(batches[i]!, legs), legs);
    if (i % 64 === 63) await new Promise((r) => setImmediate(r));
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / (batches.length * 3);
}

await drive(WARM);
const out: number[] = [];
for (let r = 0; r < ROUNDS; r++) out.push(await drive(N));
if (im.running !== 0) throw new Error(`${im.running} requests still running`);
console.log(JSON.stringify({ at: new Date().toISOString(), usPerRequest: out.map((x) => +x.toFixed(2)), records: published.records, recordBytes: +(published.bytes / published.records).toFixed(1), other: published.other }));
await im.stop(0);
process.exit(0);

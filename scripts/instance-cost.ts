/**
 * The instance manager's JavaScript per credited short request, in one process: the real InstanceManager on an
 * in-memory bus (test/helpers/instance-in-memory.ts: its leg subject's publication handler, its records encoded), fed
 * the direct path's credited short legs as the gateway reports them (batches of 3 credited reports that carry their
 * first token and end, decoded and validated from their msgpack bytes as its NATS callback does). Its CPU
 * (process.cpuUsage, V8's helper threads included) per request over N requests after WARM: no socket, no other
 * process, so no wake-up and no kernel: what the instance manager spends per request in its own code once it is busy.
 *   nice -n 10 npx tsx scripts/instance-cost.ts   (env: N 60000, WARM 30000, ROUNDS 3)
 */
import { LegMessage, LegReportBatch, subjects } from '../protocols/index.ts';
import { creditedShortLeg, inMemoryInstance, INSTANCE } from '../test/helpers/instance-in-memory.ts';

const N = Number(process.env.N ?? 60_000);
const WARM = Number(process.env.WARM ?? 30_000);
const ROUNDS = Number(process.env.ROUNDS ?? 3);

const inst = await inMemoryInstance({ keepRecords: false });
let next = 0;
const leg = () => creditedShortLeg(inst.config, `r${(next++).toString(36).padStart(16, '0')}`, Date.now());
const subject = subjects.instanceLeg(INSTANCE);

/** `n` requests in batches of 3, each batch from its bytes; CPU us per request. */
async function drive(n: number): Promise<number> {
  const batches: Uint8Array[] = [];
  for (let i = 0; i < n; i += 3) batches.push(LegReportBatch.encode({ v: 1, reports: [leg(), leg(), leg()] }));
  const c0 = process.cpuUsage();
  for (let i = 0; i < batches.length; i++) {
    inst.leg(LegMessage.decode(batches[i]!, subject));
    // the timers and microtasks of the instance run between messages, as between socket reads
    if (i % 64 === 63) await new Promise((r) => setImmediate(r));
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / (batches.length * 3);
}

await drive(WARM);
const us: number[] = [];
for (let r = 0; r < ROUNDS; r++) us.push(await drive(N));
if (inst.im.running !== 0) throw new Error(`${inst.im.running} requests still running`);
console.log(JSON.stringify({ at: new Date().toISOString(), usPerRequest: us.map((x) => +x.toFixed(2)), recordBytes: +(inst.recordBytes.n / next).toFixed(1), otherMessages: inst.other.n }));
await inst.im.stop(0);
process.exit(0);

// The first-token trace's segments (DYN_TRACE_FIRST_TOKEN lines, src/runtime/first-token-trace.ts) of a closed loop:
// the records in the 1-s windows whose request rate is at least half the busiest window's, each segment's percentiles
// in ms, and how many routed over 1 ms (an admission round trip or a queue wait at the instance).
//   node --import tsx test/bench/device/trace-segments.ts <trace.jsonl>
import { readFileSync } from 'node:fs';
import { SEGMENTS as names } from '../../../src/runtime/first-token-trace.ts';

interface Rec { pid: number; headMonoMs: number; marks: (number | null)[]; gapMs: number }
const recs = readFileSync(process.argv[2]!, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Rec).filter((r): r is Rec & { marks: number[] } => r.marks.every((m) => m !== null));
const sec = (r: Rec): number => Math.floor(r.headMonoMs / 1000);
const per = new Map<number, number>();
for (const r of recs) per.set(sec(r), (per.get(sec(r)) ?? 0) + 1);
const busiest = Math.max(...per.values());
const busy = recs.filter((r) => (per.get(sec(r)) ?? 0) >= busiest / 2);
const q = (xs: number[], p: number): number => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;
const f = (x: number): string => x.toFixed(3);
console.log(`${recs.length} records, ${busy.length} in ${[...per.values()].filter((n) => n >= busiest / 2).length} windows of >= ${busiest / 2} req/s (busiest ${busiest}), ${new Set(busy.map((r) => r.pid)).size} gateway processes`);
for (let i = 1; i < names.length; i++) {
  const d = busy.map((r) => r.marks[i]! - r.marks[i - 1]!).sort((a, b) => a - b);
  console.log(`${names[i - 1]} -> ${names[i]}: p10 ${f(q(d, 0.1))} p50 ${f(q(d, 0.5))} p90 ${f(q(d, 0.9))} p99 ${f(q(d, 0.99))} mean ${f(d.reduce((a, b) => a + b, 0) / d.length)} ms`);
}
const tot = busy.map((r) => r.marks[7]!).sort((a, b) => a - b);
console.log(`head -> firstWrite: p50 ${f(q(tot, 0.5))} p90 ${f(q(tot, 0.9))} p99 ${f(q(tot, 0.99))} mean ${f(tot.reduce((a, b) => a + b, 0) / tot.length)} ms`);
const routed = busy.map((r) => r.marks[3]! - r.marks[2]!);
const slow = routed.filter((x) => x > 1);
console.log(`routed over 1 ms: ${slow.length} of ${routed.length} (${((100 * slow.length) / routed.length).toFixed(1)}%), their mean ${f(slow.reduce((a, b) => a + b, 0) / Math.max(1, slow.length))} ms`);
const hist = new Map<number, number>();
for (const x of slow) { const b = x < 10 ? Math.floor(x) : x < 100 ? 10 * Math.floor(x / 10) : 100; hist.set(b, (hist.get(b) ?? 0) + 1); }
console.log(`their histogram (ms floor: count): ${[...hist].sort((a, b) => a[0] - b[0]).map(([b, n]) => `${b}:${n}`).join(' ')}`);
const gap = busy.map((r) => r.gapMs).sort((a, b) => a - b);
console.log(`gap since the previous stream's end at that process: p50 ${f(q(gap, 0.5))} p90 ${f(q(gap, 0.9))} ms`);

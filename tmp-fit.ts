import { steadyState } from './tmp-gen.ts';
import { createPerfModel } from './src/model/perf.ts';
import { DEFAULT_REQUEST_TYPES } from './src/model/request-types.ts';
import { PROTO, CUR } from './tmp-common.ts';
const pm = createPerfModel('llama2-70b', 'h100', { engine: 'vllm-2023' });
const stat = (process.argv[2] ?? 'p50') as 'p50' | 'p99';
for (const ic of ['S', 'M', 'L']) {
  const pts = PROTO.filter((p) => p.type === ic + 'S' && p.f === 1980 && p.load === 0.5);
  let best = [Infinity, 0];
  const cand: number[] = [];
  for (let I = 32; I <= 12000; I = Math.ceil(I * 1.03)) cand.push(I);
  for (const I of cand) {
    let e = 0;
    for (const p of pts) {
      const t = { ...DEFAULT_REQUEST_TYPES.find((x) => x.type === p.type)!, inputTokens: I };
      const s = steadyState(pm, t, p.tp, 1980, 0.5);
      const v = (stat === 'p50' ? s.ttftP50Ms : s.ttftP99Ms) / 1000;
      e += Math.log(v / p.ttft) ** 2;
    }
    if (e < best[0]) best = [e, I];
  }
  const I = best[1];
  const det = pts.map((p) => {
    const t = { ...DEFAULT_REQUEST_TYPES.find((x) => x.type === p.type)!, inputTokens: I };
    const s = steadyState(pm, t, p.tp, 1980, 0.5);
    return `${p.type}/TP${p.tp} csv ${p.ttft.toFixed(3)} ours ${((stat === 'p50' ? s.ttftP50Ms : s.ttftP99Ms) / 1000).toFixed(3)}`;
  });
  console.log(ic, 'best I', I, 'rmsle', Math.sqrt(best[0] / pts.length).toFixed(3));
  console.log('  ' + det.join('\n  '));
}
// upper bounds
for (const I of [256, 1024, 8192]) for (const tp of [2, 4, 8]) console.log('I', I, 'TP', tp, 'ttft alone ms', pm.ttftMs(I, tp, 1980).toFixed(0));

import { evalSetup, CUR, mkLens, withInputs } from './tmp-common.ts';
export const SETS: Record<string, Record<string, [number, number]>> = {
  a_cur: CUR,
  b_inUB: mkLens({ S: 256, M: 1024, L: 8192 }, {}),
  c_UB700: mkLens({ S: 256, M: 1024, L: 8192 }, { S: 100, M: 350, L: 700 }),
  c_UB1000: mkLens({ S: 256, M: 1024, L: 8192 }, { S: 100, M: 350, L: 1000 }),
  d_mid: mkLens({ S: 128, M: 640, L: 4608 }, { S: 50, M: 225, L: 675 }),
  e_fit: withInputs({ S: 770, M: 1493, L: 5364 }),
  e_fitUB: withInputs({ S: 770, M: 1493, L: 5364 }, { S: 100, M: 350, L: 700 }),
};
if (process.argv[2] !== 'lib') {
  const only = process.argv[2];
  for (const [n, lens] of Object.entries(SETS)) {
    if (only && !n.startsWith(only)) continue;
    for (const conv of ['io', 'o', 'i'] as const) for (const rule of ['tok', 'req'] as const) {
      const t0 = Date.now();
      const r = evalSetup(lens, conv, rule);
      console.log(`${n.padEnd(9)} ${conv.padEnd(2)} ${rule}  tableI ${r.t1}/9 tableII ${r.t2}/3 feas ${r.feas}/144  (${Date.now() - t0} ms)`);
      if (process.env.ROWS) console.log(r.rows.join('\n'));
    }
  }
}

import { evalSetup, CUR } from './tmp-common.ts';
const t0 = Date.now();
const r = evalSetup(CUR, 'io', 'tok');
console.log(r.t1, r.t2, r.feas, Date.now() - t0, 'ms');
console.log(r.rows.join('\n'));

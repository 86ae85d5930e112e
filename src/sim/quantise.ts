/**
 * Load estimates on a +-5% geometric grid, so that recurring states share one decision (the oracle's and fluid's
 * clock memo).
 */

/**
 * dispatch load estimates are rounded to a geometric grid (steps of LOAD_STEP, i.e. +-5%) and loads under
 * LOAD_FLOOR req/s (a fifth of one request's contribution) are dropped, so decisions on them memoise.
 */
const LOAD_STEP = Math.log(1.1);
export const LOAD_FLOOR = 0.02;
const quantiseSlow = (j: number) => Number(Math.exp(j * LOAD_STEP).toPrecision(6));
/** quantiseLoad's values (and their key strings) by grid step j, tabulated for j in [-Q_OFF, Q_LEN - Q_OFF): toPrecision was ~20% of a fluid week's instance epochs. */
const Q_OFF = 64, Q_LEN = 1024;
const Q_VAL = Array.from({ length: Q_LEN }, (_, i) => quantiseSlow(i - Q_OFF));
/** grid slot (j + Q_OFF) of quantiseLoad(x); -1: x under the floor (quantiseLoad 0); -2: off the table (NaN, or beyond ~1e39). */
export const quantSlot = (x: number) => {
  if (x < LOAD_FLOOR) return -1;
  const i = Math.round(Math.log(x) / LOAD_STEP) + Q_OFF;
  return i >= 0 && i < Q_LEN ? i : -2;
};
export const quantiseLoad = (x: number) => {
  const i = quantSlot(x);
  return i >= 0 ? Q_VAL[i]! : i === -1 ? 0 : quantiseSlow(Math.round(Math.log(x) / LOAD_STEP));
};

/**
 * Maximum-weight bipartite assignment (Hungarian / Kuhn-Munkres, O(n^3), potentials on a square matrix).
 * Rectangular inputs are padded with zero-weight dummies. Deterministic: ties resolve to the lowest index.
 */

/** Returns, for each row, the column it is assigned to (or -1 when it got a padding column). */
export function maxWeightAssignment(w: number[][]): { assignment: number[]; total: number } {
  const rows = w.length;
  const cols = rows ? Math.max(...w.map((r) => r.length)) : 0;
  const n = Math.max(rows, cols);
  if (n === 0) return { assignment: [], total: 0 };
  let maxW = 0;
  for (const r of w) for (const x of r) if (x > maxW) maxW = x;
  // minimise cost = maxW - weight on the padded square matrix (1-indexed arrays, classic formulation)
  const cost = (i: number, j: number) => maxW - (i < rows && j < (w[i]?.length ?? 0) ? w[i]![j]! : 0);
  const INF = Number.POSITIVE_INFINITY;
  const u = new Float64Array(n + 1), v = new Float64Array(n + 1);
  const p = new Int32Array(n + 1), way = new Int32Array(n + 1);
  for (let i = 1; i <= n; i++) {
    p[0] = i;
    let j0 = 0;
    const minv = new Float64Array(n + 1).fill(INF);
    const used = new Uint8Array(n + 1);
    do {
      used[j0] = 1;
      const i0 = p[0 + j0]!;
      let delta = INF, j1 = 0;
      for (let j = 1; j <= n; j++) {
        if (used[j]) continue;
        const cur = cost(i0 - 1, j - 1) - u[i0]! - v[j]!;
        if (cur < minv[j]!) { minv[j] = cur; way[j] = j0; }
        if (minv[j]! < delta) { delta = minv[j]!; j1 = j; }
      }
      for (let j = 0; j <= n; j++) {
        if (used[j]) { u[p[j]!] += delta; v[j] -= delta; } else minv[j] -= delta;
      }
      j0 = j1;
    } while (p[j0] !== 0);
    do {
      const j1 = way[j0]!;
      p[j0] = p[j1]!;
      j0 = j1;
    } while (j0);
  }
  const assignment = new Array<number>(rows).fill(-1);
  let total = 0;
  for (let j = 1; j <= n; j++) {
    const i = p[j]! - 1;
    if (i < rows && j - 1 < (w[i]?.length ?? 0)) {
      assignment[i] = j - 1;
      total += w[i]![j - 1]!;
    }
  }
  return { assignment, total };
}

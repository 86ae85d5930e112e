/**
 * Text rendering of a ClusterStatus (the cluster leader's answer on subjects.clusterStatus) for
 * `dynamollm status` and `dynamollm top`.
 */
import type { ClusterStatus } from '../../protocols/messages.ts';

const fmtJ = (j: number) => (j >= 3.6e6 ? `${(j / 3.6e6).toFixed(3)} kWh` : j >= 1e4 ? `${(j / 1000).toFixed(1)} kJ` : `${j.toFixed(0)} J`);

export function renderStatus(s: ClusterStatus, opts: { energySource?: string } = {}): string {
  const out: string[] = [];
  for (const w of s.warnings ?? []) out.push(`WARNING: ${w}`);
  const insts = s.pools.flatMap((p) => p.instances);
  out.push(
    `cluster leader ${s.leader} at ${new Date(s.atMs).toISOString()}   power ${s.powerW.toFixed(0)} W${s.stalePowerW !== undefined ? ` (${s.stalePowerW.toFixed(0)} W of it stale)` : ''}   energy so far ${fmtJ(s.energyJ)}` +
      `${opts.energySource ? ` (${opts.energySource})` : ''}   instances ${insts.length}   free GPUs ${s.freeGpus}`,
  );
  out.push('');
  out.push('pool           types                        GPUs  leader');
  for (const p of s.pools) out.push(`${p.id.padEnd(14)} ${p.types.join(',').padEnd(28)} ${String(p.gpus).padStart(4)}  ${p.leader ?? '-'}`);
  out.push('');
  out.push('instance                       pool           TP  GPUs          node      clock MHz  power W  queue  running  state');
  for (const p of s.pools) {
    for (const i of p.instances) {
      out.push(
        `${i.id.padEnd(30)} ${p.id.padEnd(14)} ${String(i.tp).padStart(2)}  ${i.gpus.join(',').padEnd(13)} ${(i.node ?? '-').padEnd(9)} ` +
          `${i.clockMhz.toFixed(0).padStart(9)}  ${i.powerW.toFixed(0).padStart(7)}  ${String(i.queued).padStart(5)}  ${String(i.running).padStart(7)}  ${i.state}` +
          (i.gpuStaleMs !== undefined ? `  (GPU read failed: power ${(i.gpuStaleMs / 1000).toFixed(0)} s old)` : ''),
      );
    }
  }
  if (!insts.length) out.push('(no instances yet)');
  return out.join('\n');
}

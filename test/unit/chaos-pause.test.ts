import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Pauses, pauseOptions, victimSignal } from '../../src/cli/chaos-pause.ts';

describe('chaos --pause', () => {
  it('parses the share and the resume delay', () => {
    expect(pauseOptions(undefined, undefined)).toEqual({ share: 0 });
    expect(pauseOptions('0.5', '20')).toEqual({ share: 0.5, contAfterMs: 20_000 });
    expect(() => pauseOptions('1.5', undefined)).toThrow(/--pause/);
    expect(() => pauseOptions('0.5', '-1')).toThrow(/--cont-after/);
  });

  it('pauses a share of the victims, and draws nothing when none is paused (a seed keeps its kill schedule)', () => {
    let draws = 0;
    const r = (x: number) => () => (draws++, x);
    expect(victimSignal({ share: 0 }, r(0))).toBe('SIGKILL');
    expect(draws).toBe(0);
    expect(victimSignal({ share: 0.3 }, r(0.2))).toBe('SIGSTOP');
    expect(victimSignal({ share: 0.3 }, r(0.5))).toBe('SIGKILL');
    expect(victimSignal({ share: 1 }, r(0.99))).toBe('SIGSTOP');
  });

  it('sees a paused process end (replaced), resumes one still there after contAfter, and one left at the end', async () => {
    const start = () => spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    const [a, b, c] = [start(), start(), start()];
    await Promise.all([a, b, c].map((p) => new Promise((r) => p.once('spawn', r))));
    const pauses = new Pauses({ share: 1, contAfterMs: 600 });
    const now = Date.now();
    for (const [p, kind] of [[a, 'gateway'], [b, 'pool']] as const) {
      process.kill(p.pid!, 'SIGSTOP');
      pauses.add({ kind, id: String(p.pid), pid: p.pid!, atMs: now });
    }
    // a: its supervisor kills it
    a.kill('SIGKILL');
    await new Promise((r) => a.once('exit', r));
    await new Promise((r) => setTimeout(r, 1000));
    // c: added late, still paused at the end
    process.kill(c.pid!, 'SIGSTOP');
    pauses.add({ kind: 'pool', id: String(c.pid), pid: c.pid!, atMs: Date.now() });
    const r = pauses.finish();
    expect(r).toMatchObject({ total: 3, byKind: { gateway: 1, pool: 2 }, replaced: 1, resumedByHarness: 1, stillPausedAtEnd: 1 });
    expect(r.log[1]!.resumedMs).toBeGreaterThanOrEqual(600);
    // b and c were resumed: they run (state not T)
    for (const p of [b, c]) {
      const stat = readFileSync(`/proc/${p.pid}/stat`, 'utf8');
      expect(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)).not.toBe('T');
      p.kill('SIGKILL');
    }
  });
});

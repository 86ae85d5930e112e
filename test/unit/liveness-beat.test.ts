/**
 * The child's side of the liveness watchdog (src/runtime/liveness-beat.ts): the beat file is opened once and each
 * beat overwrites it in place, so a beat costs one write (no open, truncate and close every 500 ms in every process)
 * and the supervisor's read never finds it empty or holding a rest of an earlier beat.
 */
import { mkdtempSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LIVENESS_BEAT_ENV, LIVENESS_FILE_ENV, startLivenessBeat } from '../../src/runtime/liveness-beat.ts';

/** the paths this process holds open (Linux /proc). */
function openPaths(): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      out.push(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

describe.runIf(process.platform === 'linux')('liveness beat', () => {
  it('keeps its file open and overwrites it in place, each beat the whole content', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'dyn-beat-')), 'beat');
    const env: NodeJS.ProcessEnv = { [LIVENESS_FILE_ENV]: file, [LIVENESS_BEAT_ENV]: '50' };
    expect(startLivenessBeat(env)).toBe(true);
    expect(env[LIVENESS_FILE_ENV]).toBeUndefined();
    const seen = new Set<string>();
    for (const until = Date.now() + 3000; seen.size < 12 && Date.now() < until; await new Promise((r) => setTimeout(r, 5))) {
      const beat = readFileSync(file, 'utf8');
      // never empty, never a rest of a longer earlier beat: exactly "<pid> <n>\n"
      expect(beat).toMatch(new RegExp(`^${process.pid} \\d+\\n$`));
      seen.add(beat);
    }
    expect(seen.size).toBeGreaterThanOrEqual(12); // beats 1..12 at least: the count passed 9 -> 10 (one digit longer)
    // one descriptor of the file for all those beats
    expect(openPaths().filter((p) => p === file)).toHaveLength(1);
  });
});

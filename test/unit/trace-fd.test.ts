/**
 * readTrace stopping early (a malformed row, a limit) closes its file: found by `npm run fuzz` (the trace
 * surface ran out of file descriptors after some 36,000 malformed traces).
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTrace, TraceFormatError } from '../../src/sim/trace.ts';

const openFds = () => readdirSync('/proc/self/fd').length;

describe.skipIf(process.platform !== 'linux')('trace reader and file descriptors', () => {
  it('a trace that fails on a bad row, or stops at a limit, leaves no file open', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dyn-trace-fd-'));
    const bad = join(dir, 'bad.csv');
    writeFileSync(bad, `TIMESTAMP,ContextTokens,GeneratedTokens\n${'0,10,10\n'.repeat(2000)}x,y,z\n`);
    const long = join(dir, 'long.csv');
    writeFileSync(long, `TIMESTAMP,ContextTokens,GeneratedTokens\n${'0,10,10\n'.repeat(5000)}`);
    await expect(loadTrace(bad)).rejects.toBeInstanceOf(TraceFormatError);
    const before = openFds();
    for (let i = 0; i < 50; i++) {
      await expect(loadTrace(bad)).rejects.toBeInstanceOf(TraceFormatError);
      expect(await loadTrace(long, { limit: 3 })).toHaveLength(3);
    }
    // let destroyed streams finish closing
    await new Promise((r) => setTimeout(r, 100));
    expect(openFds() - before).toBeLessThan(5);
  });
});

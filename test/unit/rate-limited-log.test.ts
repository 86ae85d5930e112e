import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { createLogger, RateLimitedLog } from '../../src/runtime/logger.ts';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, log: createLogger({ destination, pretty: false, level: 'info' }) };
}

describe('RateLimitedLog', () => {
  it('writes one entry per key and interval, then says how many it suppressed', () => {
    const { lines, log } = capture();
    let now = 0;
    const rl = new RateLimitedLog(log, 1000, { now: () => now });
    for (let i = 0; i < 500; i++) rl.warn('a', { i }, 'bad payload');
    expect(rl.error('b', {}, 'other key')).toBe(true);
    now = 999;
    expect(rl.warn('a', {}, 'bad payload')).toBe(false);
    now = 1000;
    expect(rl.warn('a', { i: 'last' }, 'bad payload')).toBe(true);
    const a = lines.filter((l) => l.msg === 'bad payload');
    expect(a).toHaveLength(2);
    expect(a[0]!.suppressedSinceLast).toBe(0);
    expect(a[1]!.suppressedSinceLast).toBe(500);
    expect(lines.find((l) => l.msg === 'other key')!.level).toBe(50);
  });

  it('a flood of distinct keys keeps the map bounded and the output bounded per interval', () => {
    const { lines, log } = capture();
    const rl = new RateLimitedLog(log, 60_000, { maxKeys: 16, now: () => 0 });
    for (let i = 0; i < 10_000; i++) rl.warn(`k${i % 16}`, {}, 'x');
    expect(lines).toHaveLength(16);
  });
});

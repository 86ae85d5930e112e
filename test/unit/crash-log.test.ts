/**
 * test/helpers/crash-log.ts: a crashed nats-server's message keeps the cause of its Go panic or fatal error (printed
 * first, then a stack of every goroutine longer than the tail kept) as well as its last lines.
 */
import { describe, expect, it } from 'vitest';
import { CrashLog } from '../helpers/crash-log.ts';

/** a Go runtime crash as nats-server prints it: the cause, a blank line, then `goroutines` stacks. */
function goCrash(cause: string[], goroutines: number): string {
  const frames = Array.from({ length: goroutines }, (_, i) =>
    `goroutine ${i + 1} [select]:\ngithub.com/nats-io/nats-server/v2/server.(*raft).runAsFollower(0xc000${i})\n\t/home/runner/work/nats-server/server/raft.go:1750 +0x1d2\n`);
  return `[1] 2026/12/06 03:00:00.000000 [INF] Starting nats-server\n${cause.join('\n')}\n\n${frames.join('\n')}`;
}

/** `text` pushed in chunks of `size` characters (lines cut anywhere). */
function pushed(text: string, size: number): CrashLog {
  const log = new CrashLog();
  for (let i = 0; i < text.length; i += size) log.push(text.slice(i, i + size));
  return log;
}

describe('CrashLog', () => {
  it('a panic whose goroutine stacks outgrow the tail: the summary has the panic line, its signal line and the last lines', () => {
    const text = goCrash(['panic: runtime error: invalid memory address or nil pointer dereference', '[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x8c1a2e]'], 200);
    expect(text.length).toBeGreaterThan(4000 * 4);
    for (const size of [1, 7, 4096]) {
      const log = pushed(text, size);
      expect(log.tail()).not.toMatch(/panic:/);
      const s = log.summary(5);
      expect(s.startsWith('panic: runtime error: invalid memory address or nil pointer dereference | [signal SIGSEGV'), s).toBe(true);
      expect(s.endsWith(text.trim().split('\n').at(-1)!), s).toBe(true);
      expect(s.split(' | ')).toHaveLength(2 + 1 + 5);
    }
  });

  it('a fatal error: its line kept, and only the first cause when another follows', () => {
    const log = pushed(goCrash(['fatal error: concurrent map writes'], 100) + '\npanic: a later one\n', 64);
    expect(log.cause()).toEqual(['fatal error: concurrent map writes']);
    expect(log.summary(3)).toMatch(/^fatal error: concurrent map writes \| … \| /);
  });

  it('a chain of panics up to its blank line, at most causeLines lines', () => {
    const chain = ['panic: first [recovered]', '\tpanic: second', '\tpanic: third'];
    expect(pushed(goCrash(chain, 10), 5).cause()).toEqual(chain);
    const short = new CrashLog(4000, 2);
    short.push(goCrash(chain, 10));
    expect(short.cause()).toEqual(chain.slice(0, 2));
  });

  it('a cause in a last line without its newline; an [FTL] line; no cause: the tail alone', () => {
    const cut = new CrashLog();
    cut.push('[INF] starting\npanic: cut short');
    expect(cut.summary(5)).toBe('[INF] starting | panic: cut short');
    expect(cut.cause()).toEqual(['panic: cut short']);
    const ftl = pushed(`[1] [FTL] Error listening on port: 127.0.0.1:4222, "listen tcp: address already in use"\n${'[INF] x\n'.repeat(600)}`, 100);
    expect(ftl.summary(2)).toMatch(/^\[1\] \[FTL\] Error listening on port.*address already in use" \| … \| \[INF\] x \| \[INF\] x$/);
    const quiet = pushed('[INF] a\n[INF] b\n[INF] c\n', 3);
    expect(quiet.cause()).toEqual([]);
    expect(quiet.summary(2)).toBe('[INF] b | [INF] c');
    expect(new CrashLog().summary()).toBe('');
  });
});

/**
 * native/relay.c's system calls per engine event: test/fixtures/native/relay-reads.c compiles the relay in with its
 * read() counted and streams one text event per engine chunk, one at a time, as a real-time engine sends them. Each
 * event costs one read of the engine's socket (a short read is all the socket held; the level-triggered epoll set
 * reports the next bytes), none that returns EAGAIN, and the client gets every event's frame: on Unix socket pairs and
 * on loopback TCP connections. The thread formats no number with snprintf per event (its hex chunk sizes and usage
 * counts written digit by digit: the same bytes, without printf's parse of a format), and finds each event's end with
 * one memchr for its newline, no memmem for "\n\n" (glibc's two-byte needle loop steps byte by byte). A span costs the caller's
 * thread (the gateway's JavaScript thread) no write: taking an ended stream back does not wake the native thread.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';

let dir = '';
let bin = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'relay-reads-'));
  bin = join(dir, 'relay-reads');
  execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-pthread', '-I', 'native', '-o', bin, 'test/fixtures/native/relay-reads.c']);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('reads the engine once per event, with no read that finds the socket empty', () => {
  const r = JSON.parse(execFileSync(bin, ['20'], { encoding: 'utf8' })) as { events: number; reads: number; eagain: number; ok: boolean; formats: number };
  expect(r.ok).toBe(true);
  expect(r.eagain).toBe(0);
  // one read per event, and the read that finds the engine's end
  expect(r.reads).toBe(r.events + 1);
});

it("writes each client chunk's size line without printf (its digits written directly), the bytes the same", () => {
  const r = JSON.parse(execFileSync(bin, ['20'], { encoding: 'utf8' })) as { ok: boolean; formats: number };
  // ok: every client chunk, its hex size line included, is what the harness's own snprintf("%x") expects
  expect(r.ok).toBe(true);
  expect(r.formats).toBe(0);
});

it("finds each event's end with memchr, no memmem per event, the bytes the same", () => {
  const r = JSON.parse(execFileSync(bin, ['20'], { encoding: 'utf8' })) as { ok: boolean; scans: number };
  // ok: every client chunk is the event's frame, and the span ended at the engine's end with its 20 events
  expect(r.ok).toBe(true);
  expect(r.scans).toBe(0);
});

it('on loopback TCP connections (the gateway\'s engine and client sockets) too: one read per event, none that finds the socket empty', () => {
  const r = JSON.parse(execFileSync(bin, ['20', '3000', 'tcp'], { encoding: 'utf8' })) as { events: number; reads: number; eagain: number; ok: boolean; tcp: boolean };
  expect(r.tcp).toBe(true);
  expect(r.ok).toBe(true);
  expect(r.eagain).toBe(0);
  expect(r.reads).toBe(r.events + 1);
});

it("costs the caller's thread, from the hand-off to the span taken back, its two epoll adds and dups, no write (no wake-up of the native thread)", () => {
  const r = JSON.parse(execFileSync(bin, ['20'], { encoding: 'utf8' })) as { ok: boolean; caller: { write: number; close: number; fcntl: number; epoll_ctl: number } };
  expect(r.ok).toBe(true);
  // dp_add: the engine's and the client's fds dup'ed and added to the thread's epoll set; dp_copy: the dups closed
  expect(r.caller).toEqual({ write: 0, close: 2, fcntl: 2, epoll_ctl: 2 });
});

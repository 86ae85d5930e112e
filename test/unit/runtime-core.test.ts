import { describe, it, expect } from 'vitest';
import { ManualClock, Mailbox, MailboxFullError, LivenessTracker, type LivenessEvent, Heartbeater, Supervisor, silentLogger } from '../../src/runtime/index.ts';
import type { Bus } from '../../src/runtime/index.ts';
import type { Heartbeat } from '../../protocols/index.ts';

describe('ManualClock', () => {
  it('fires due timers in time order, intervals repeatedly, and not before due', () => {
    const c = new ManualClock(0);
    const seen: string[] = [];
    c.setTimeout(() => seen.push(`b@${c.now()}`), 20);
    c.setTimeout(() => seen.push(`a@${c.now()}`), 10);
    const iv = c.setInterval(() => seen.push(`i@${c.now()}`), 15);
    c.advance(9);
    expect(seen).toEqual([]);
    c.advance(21);
    expect(seen).toEqual(['a@10', 'i@15', 'b@20', 'i@30']);
    c.clearInterval(iv);
    c.advance(100);
    expect(seen.length).toBe(4);
    expect(c.now()).toBe(130);
    expect(c.pending).toBe(0);
  });

  it('sleep resolves on advance and rejects on abort', async () => {
    const c = new ManualClock(0);
    let done = false;
    const p = c.sleep(50).then(() => (done = true));
    c.advance(49);
    await Promise.resolve();
    expect(done).toBe(false);
    c.advance(1);
    await p;
    expect(done).toBe(true);
    const ac = new AbortController();
    const q = c.sleep(50, ac.signal);
    ac.abort(new Error('stop'));
    await expect(q).rejects.toThrow('stop');
    expect(c.pending).toBe(0);
  });
});

describe('Mailbox', () => {
  it('bounds waiting items, refuses with a typed retryable error and loses nothing it accepted', async () => {
    const release: (() => void)[] = [];
    const handled: number[] = [];
    const mb = new Mailbox<number>({
      capacity: 2,
      concurrency: 1,
      handler: (n) =>
        new Promise<void>((r) =>
          release.push(() => {
            handled.push(n);
            r();
          }),
        ),
    });
    mb.offer(1); // runs
    mb.offer(2); // waits
    mb.offer(3); // waits
    expect(mb.inFlight).toBe(1);
    expect(mb.size).toBe(2);
    let err: unknown;
    try {
      mb.offer(4);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MailboxFullError);
    expect((err as MailboxFullError).code).toBe('mailbox_full');
    expect((err as MailboxFullError).retryable).toBe(true);
    expect(mb.overflows).toBe(1);
    while (handled.length < 3) {
      release.shift()?.();
      await new Promise((r) => setImmediate(r));
    }
    await mb.idle();
    expect(handled).toEqual([1, 2, 3]);
  });

  it('runs up to `concurrency` at once and survives handler errors', async () => {
    let running = 0;
    let peak = 0;
    const errors: unknown[] = [];
    const mb = new Mailbox<number>({
      capacity: 100,
      concurrency: 3,
      handler: async (n) => {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 2));
        running--;
        if (n % 5 === 0) throw new Error(`bad ${n}`);
      },
      onError: (e) => errors.push(e),
    });
    for (let i = 1; i <= 20; i++) mb.offer(i);
    await mb.idle();
    expect(peak).toBe(3);
    expect(errors.length).toBe(4);
    expect(mb.handled).toBe(20);
  });

  it('takes a handler that returns no promise as done when it returns, one at a time, its throw to onError', async () => {
    const seen: string[] = [];
    const errors: [unknown, number][] = [];
    let running = 0;
    const mb = new Mailbox<number>({
      capacity: 100,
      concurrency: 1,
      handler: (n) => {
        if (n % 2 === 0) {
          // an async one among them: the next waits for its end
          running++;
          return new Promise<void>((r) => setTimeout(() => {
            seen.push(`async ${n} alone ${running === 1}`);
            running--;
            r();
          }, 2));
        }
        seen.push(`sync ${n} alone ${running === 0}`);
        if (n === 5) throw new Error('bad 5');
      },
      onError: (e, item) => errors.push([e, item]),
    });
    for (let i = 1; i <= 7; i++) mb.offer(i);
    expect(mb.inFlight).toBe(1);
    await mb.idle();
    expect(seen).toEqual(['sync 1 alone true', 'async 2 alone true', 'sync 3 alone true', 'async 4 alone true', 'sync 5 alone true', 'async 6 alone true', 'sync 7 alone true']);
    expect(errors).toHaveLength(1);
    expect((errors[0]![0] as Error).message).toBe('bad 5');
    expect(errors[0]![1]).toBe(5);
    expect(mb.handled).toBe(7);
    expect(mb.inFlight).toBe(0);
  });
});

function hb(id: string, seq: number, startedMs: number, state: Heartbeat['state'] = 'running'): Heartbeat {
  return { v: 1, kind: 'instance', id, seq, startedMs, sentMs: 0, state, load: { queued: 0, running: 0 } };
}

describe('LivenessTracker', () => {
  it('declares a peer dead after `missed` silent periods, alive again on a new beat, and sees restarts', () => {
    const clock = new ManualClock(0);
    const t = new LivenessTracker({ bus: { subscribe: () => ({ unsubscribe() {} }) } as unknown as Bus, periodMs: 1000, missed: 3, clock });
    const events: string[] = [];
    for (const e of ['alive', 'dead', 'restarted'] as const) t.on(e, (x: LivenessEvent) => events.push(`${e}:${x.id}@${clock.now()}`));
    t.start();
    t.observe(hb('a', 0, 100));
    clock.advance(1000);
    t.observe(hb('a', 1, 100));
    clock.advance(2999);
    expect(t.isAlive('instance', 'a')).toBe(true);
    clock.advance(300);
    expect(t.isAlive('instance', 'a')).toBe(false);
    expect(events).toEqual(['alive:a@0', 'dead:a@4250']);
    // a new process under the same id
    t.observe(hb('a', 0, 5000));
    expect(events.slice(2)).toEqual(['restarted:a@4299', 'alive:a@4299']);
    // a reordered beat of the old process is ignored
    t.observe(hb('a', 7, 100));
    expect(t.lastHeartbeat('instance', 'a')?.startedMs).toBe(5000);
    // announcing 'stopped' is an immediate death
    t.observe(hb('a', 1, 5000, 'stopped'));
    expect(events.at(-1)).toBe('dead:a@4299');
    t.stop();
    expect(clock.pending).toBe(0);
  });

  it('filters kinds', () => {
    const clock = new ManualClock(0);
    const t = new LivenessTracker({ bus: {} as unknown as Bus, clock, kinds: ['pool'] });
    t.observe(hb('x', 0, 1));
    expect(t.peers()).toEqual([]);
  });
});

describe('Heartbeater', () => {
  it('publishes on the actor heartbeat subject every period with load and state', () => {
    const clock = new ManualClock(1000);
    const sent: { subject: string; msg: Heartbeat }[] = [];
    const bus = { closed: false, log: silentLogger(), publish: (subject: string, _c: unknown, msg: Heartbeat) => sent.push({ subject, msg }) };
    const h = new Heartbeater({ bus: bus as unknown as Bus, kind: 'pool', id: 'p1', periodMs: 500, clock, load: () => ({ queued: 2.4, running: 1 }), state: () => 'running' });
    h.start();
    clock.advance(1000);
    h.stop();
    clock.advance(5000);
    expect(sent.map((s) => s.msg.seq)).toEqual([0, 1, 2]);
    expect(sent[0].subject).toBe('dyn.v1.hb.pool.p1');
    expect(sent[2].msg).toMatchObject({ kind: 'pool', id: 'p1', state: 'running', load: { queued: 2, running: 1 }, sentMs: 2000, startedMs: 1000 });
  });
});

describe('Supervisor backoff, never giving up', () => {
  it('restarts a crashing child with exponential backoff up to the cap, then keeps restarting it at the cap', async () => {
    const clock = new ManualClock(0);
    const sup = new Supervisor({
      children: [{ name: 'crash', command: process.execPath, args: ['-e', 'process.exit(3)'], output: 'ignore' }],
      log: silentLogger(),
      backoff: { initialMs: 100, maxMs: 1000, factor: 2 },
      flapping: { maxRestarts: 3, windowMs: 60_000 },
      clock,
    });
    const delays: number[] = [];
    const flapping: unknown[] = [];
    sup.on('flapping', (e) => flapping.push(e));
    let exits = 0;
    const eighth = new Promise<void>((resolve) => {
      sup.on('exit', () => {
        exits++;
        if (exits === 8) resolve();
        // let the backoff timer fire on the manual clock (a little less than the cap: the clock is read at exit)
        else setImmediate(() => clock.advance(1000));
      });
    });
    sup.on('restart', (e: { delayMs: number }) => delays.push(e.delayMs));
    await sup.start();
    await eighth;
    // 100, 200, 400, then past 3 restarts in the window: the cap, again and again (no give-up)
    expect(delays).toEqual([100, 200, 400, 1000, 1000, 1000, 1000, 1000]);
    expect(flapping).toHaveLength(1);
    expect(sup.children()[0]).toMatchObject({ name: 'crash', restarts: 7, state: 'backoff' });
    await sup.stop();
    expect(sup.children()[0]!.state).toBe('stopped');
  });
});

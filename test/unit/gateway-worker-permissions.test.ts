/**
 * A gateway's worker processes (gateway.workers) share its NATS user, each under its own id: the user's rights
 * (protocols/permissions.ts, rendered into `up`'s per-actor users) cover every worker's inbox, heartbeat and
 * service subjects and no other gateway's.
 */
import { describe, expect, it } from 'vitest';
import { inboxPrefix, permissionsOf, workerId } from '../../protocols/permissions.ts';
import { subjects } from '../../protocols/subjects.ts';

describe('gateway worker permissions', () => {
  it('a gateway user with 2 workers may use both workers\' inboxes and heartbeats, not another gateway\'s', () => {
    const p = permissionsOf({ role: 'gateway', id: 'gw-0', workers: 2 });
    for (const i of [0, 1]) {
      expect(p.subscribe).toContain(`${inboxPrefix('gateway', workerId('gw-0', i))}.>`);
      expect(p.publish).toContain(subjects.heartbeat('gateway', workerId('gw-0', i)));
    }
    expect(p.subscribe).not.toContain(`${inboxPrefix('gateway', workerId('gw-0', 2))}.>`);
    expect(p.subscribe).not.toContain(`${inboxPrefix('gateway', 'gw-1')}.>`);
  });

  it('without workers the rights are the single replica\'s', () => {
    const p = permissionsOf({ role: 'gateway', id: 'gw-0' });
    expect(p.subscribe).toContain(`${inboxPrefix('gateway', 'gw-0')}.>`);
    expect(p.subscribe).not.toContain(`${inboxPrefix('gateway', workerId('gw-0', 0))}.>`);
  });
});

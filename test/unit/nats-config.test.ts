import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { committedConfigs, possibleInstances } from '../../src/runtime/nats-server-config.ts';
import { permissionsOf } from '../../protocols/permissions.ts';
import { REPO_ROOT } from '../helpers/nats.ts';

describe('NATS server configs come from the one table of rights', () => {
  it('the committed nats.conf, deploy/nats/cluster.conf and deploy/k8s/nats.conf equal their generated form', () => {
    for (const [path, text] of Object.entries(committedConfigs())) {
      expect(readFileSync(join(REPO_ROOT, path), 'utf8'), `${path}: run npm run gen:nats-config`).toBe(text);
    }
  });
  it('no committed config holds a password or lets anyone in anonymously', () => {
    for (const text of Object.values(committedConfigs())) {
      for (const m of text.matchAll(/password:\s*(\S+)/g)) expect(m[1]).toMatch(/^\$DYN_[A-Z]+_PASS$/);
      expect(text).not.toMatch(/no_auth_user/);
    }
  });
  it('the deployment configs hold no user of their own: per-actor users from the generated include only', () => {
    const c = committedConfigs();
    for (const path of ['deploy/nats/cluster.conf', 'deploy/k8s/nats.conf']) {
      expect(c[path], path).toContain('include "auth/users.conf"');
      expect(c[path], path).not.toMatch(/users:|password|user:/);
    }
  });
  it('least privilege: per-role inboxes, owners write their keys, control roles write events, instance reads its own admit', () => {
    const roles = ['gateway', 'cluster', 'pool', 'instance', 'node', 'observer'] as const;
    for (const role of roles) {
      const p = permissionsOf({ role });
      expect(p.subscribe).not.toContain('_INBOX.>');
      expect(p.subscribe.filter((s) => s.startsWith('_INBOX.'))).toEqual([`_INBOX.${role}.*.>`]);
      expect(p.publish).not.toContain('>');
      // events stream written only by control roles
      expect(p.publish.some((s) => s.startsWith('dyn.v1.evt.'))).toBe(role !== 'gateway' && role !== 'observer');
    }
    const inst = permissionsOf({ role: 'instance', id: 'p1-n0-g0x1', pool: 'p1' });
    expect(inst.subscribe).toContain('dyn.v1.inst.p1-n0-g0x1.admit');
    expect(inst.subscribe.filter((s) => s.includes('.admit'))).toEqual(['dyn.v1.inst.p1-n0-g0x1.admit']);
    expect(inst.publish).toContain('dyn.v1.ctl.istat.p1.p1-n0-g0x1');
    expect(inst.publish.some((s) => s.startsWith('$KV.') || s.startsWith('$JS.'))).toBe(false);
    // KV writes
    expect(permissionsOf({ role: 'node' }).publish.filter((s) => s.startsWith('$KV.'))).toEqual(['$KV.dyn_v1_inventory.node.*']);
    expect(permissionsOf({ role: 'node', id: 'n3' }).publish.filter((s) => s.startsWith('$KV.'))).toEqual(['$KV.dyn_v1_inventory.node.n3']);
    expect(permissionsOf({ role: 'pool' }).publish.filter((s) => s.startsWith('$KV.'))).toEqual(['$KV.dyn_v1_leases.pool.*', '$KV.dyn_v1_dispatched.*.>']);
    expect(permissionsOf({ role: 'pool', pools: ['p1'] }).publish.filter((s) => s.startsWith('$KV.'))).toEqual(['$KV.dyn_v1_leases.pool.p1', '$KV.dyn_v1_dispatched.p1.>']);
    expect(permissionsOf({ role: 'cluster' }).publish.filter((s) => s.startsWith('$KV.'))).toEqual(['$KV.dyn_v1_leases.cluster.planner', '$KV.dyn_v1_inventory.pool.*', '$KV.dyn_v1_inventory.energy.cluster']);
    // the gateway cannot command anything nor touch JetStream
    const gw = permissionsOf({ role: 'gateway' });
    expect(gw.publish.some((s) => /\.ctl$|\.admit$|\.dispatch$|^\$KV|^\$JS/.test(s))).toBe(false);
    // the observer changes nothing: no command, intake, KV write or stream write
    const ob = permissionsOf({ role: 'observer' });
    expect(ob.publish.some((s) => /intake|\.ctl$|\.admit$|dispatch|^\$KV|dyn\.v1\.(evt|stream|tel)/.test(s))).toBe(false);
    expect(ob.publish).toContain('$SRV.PING');
  });
  it('enumerates every instance id a pool leader may start (aligned TP groups)', () => {
    const ids = possibleInstances({ clusterId: 'c', clusterManagers: [], poolManagers: [], gateways: [], nodes: [{ id: 'n0', gpus: 8 }], pools: ['p'] }).map((i) => i.id);
    expect(ids).toHaveLength(15);
    expect(ids).toContain('p-n0-g4x4');
    expect(ids).not.toContain('p-n0-g2x4');
  });
});

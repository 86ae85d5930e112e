/**
 * The deployment configs (deploy/k8s/nats.conf, deploy/nats/cluster.conf) with the per-actor users
 * `npm run gen:nats-auth` makes for deploy/k8s/cluster.yaml, on a real nats-server: every actor connects with
 * its own nkey and gets only its own rights. Each right the issue found too wide is refused here, next to
 * the allowed action it must not be confused with (so every check can fail). The server runs the committed
 * k8s config as one server: its route block, monitor port and listen address are the only lines changed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startNatsServer, type TestNats } from '../helpers/nats.ts';
import { deploymentAuth, type DeploymentAuth } from '../../src/runtime/nats-server-config.ts';
import { deploymentActors } from '../../src/cli/gen-nats-auth.ts';
import { connectionOptions } from '../../src/runtime/nats-settings.ts';
import { checkAuthorization } from '../../src/runtime/nats-launcher.ts';
import { inboxPrefix, inventoryKeys, jetstream, leaseKeys, subjects } from '../../protocols/index.ts';

let nats: TestNats;
let auth: DeploymentAuth;
const open: NatsConnection[] = [];
// instance ids as the pool leaders name them: <pool>-<node>-g<first gpu>x<tp>
const INST = 'pool-LL-gpu-node-0-g0x8';
const OTHER = 'pool-LL-gpu-node-1-g0x8';

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dyn-deploy-auth-'));
  auth = deploymentAuth(deploymentActors(readFileSync('deploy/k8s/cluster.yaml', 'utf8'), {}), join(dir, 'out'));
  const committed = readFileSync('deploy/k8s/nats.conf', 'utf8');
  expect(committed).toContain('include "auth/users.conf"');
  // nats-server resolves includes relative to the config's directory: the helper's copy sits in a directory
  // of its own, so the include names the generated file relative to there
  const conf = committed
    .replace(/^cluster \{[\s\S]*?^\}\n/m, '')
    .replace(/^http: .*\n/m, '');
  const path = join(dir, 'nats.conf');
  writeFileSync(path, conf);
  nats = await startNatsServer({ conf: path, env: { POD_NAME: 'nats-0', DYN_NATS_LEASE_TAG: 'dyn-lease-0' }, files: { 'auth/users.conf': readFileSync(auth.usersFile, 'utf8') } });
}, 30_000);

afterAll(async () => {
  for (const nc of open) await nc.close().catch(() => {});
  await nats?.stop();
});

/** A connection with an actor's own seed (`role/id`), collecting the server's permission errors. */
async function as(key: string): Promise<{ nc: NatsConnection; denied: string[] }> {
  const c = auth.creds.get(key);
  if (!c) throw new Error(`no credential ${key}`);
  const [kind, id] = key.split('/') as [string, string];
  const nc = await connect({ ...connectionOptions({ servers: [nats.url], nkey: c.nkeyFile }), inboxPrefix: kind === 'admin' ? '_INBOX' : inboxPrefix(kind as 'pool', id || 'x') });
  open.push(nc);
  const denied: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === 'error') denied.push((s.error as { subject?: string }).subject ?? s.error?.message ?? '');
  })();
  return { nc, denied };
}

const settle = () => new Promise((r) => setTimeout(r, 250));

/** `who` publishes on `subject`; did an admin subscriber get it, did the server refuse it? */
async function tryPublish(who: string, subject: string) {
  const admin = await as('admin/');
  let got = 0;
  admin.nc.subscribe(subject, { callback: (err) => {
    if (!err) got++;
  } });
  await admin.nc.flush();
  const p = await as(who);
  p.nc.publish(subject, new Uint8Array([1]));
  await p.nc.flush();
  await settle();
  return { delivered: got > 0, denied: p.denied.some((d) => d.includes(subject)) };
}

/** `who` subscribes to `subject`; an admin publishes on `sendTo`: received, refused? */
async function trySubscribe(who: string, subject: string, sendTo = subject) {
  const p = await as(who);
  let got = 0;
  p.nc.subscribe(subject, { callback: (err) => {
    if (!err) got++;
  } });
  await p.nc.flush();
  await settle();
  const admin = await as('admin/');
  admin.nc.publish(sendTo, new Uint8Array([1]));
  await admin.nc.flush();
  await settle();
  return { received: got > 0, denied: p.denied.some((d) => d.includes(subject)) };
}

describe('deployment configs: one nkey user per actor, its own rights only (real nats-server)', () => {
  it('nobody gets in anonymously or with a role password', async () => {
    expect((await checkAuthorization([nats.url])).verdict).toBe('enforced');
    await expect(connect({ servers: nats.url, user: 'gateway', pass: 'change-me-gateway', reconnect: false })).rejects.toThrow(/Authorization/i);
  });

  it('a node agent cannot write pool assignments nor another node\'s inventory key; it writes its own', async () => {
    const kv = (k: string) => `$KV.${jetstream.inventoryBucket}.${k}`;
    expect(await tryPublish('node/gpu-node-0', kv(inventoryKeys.pool('pool-LL')))).toEqual({ delivered: false, denied: true });
    expect(await tryPublish('node/gpu-node-0', kv(inventoryKeys.node('gpu-node-1')))).toEqual({ delivered: false, denied: true });
    expect(await tryPublish('node/gpu-node-0', kv(inventoryKeys.node('gpu-node-0')))).toEqual({ delivered: true, denied: false });
  });

  it('a pool manager cannot write the cluster planner lease; it writes the pool leases', async () => {
    const lease = (k: string) => `$KV.${jetstream.leasesBucket}.${k}`;
    expect(await tryPublish('pool/pool-manager-0', lease(leaseKeys.clusterPlanner()))).toEqual({ delivered: false, denied: true });
    expect((await tryPublish('pool/pool-manager-0', lease(leaseKeys.poolLeader('pool-LL')))).delivered).toBe(true);
    expect((await tryPublish('cluster/cluster-manager-1', lease(leaseKeys.clusterPlanner()))).delivered).toBe(true);
  });

  it("an instance reads only its own admit subject (another instance's prompts are refused, also by wildcard)", async () => {
    expect(await trySubscribe(`instance/${INST}`, subjects.instanceAdmit(OTHER))).toEqual({ received: false, denied: true });
    expect(await trySubscribe(`instance/${INST}`, 'dyn.v1.inst.*.admit', subjects.instanceAdmit(OTHER))).toEqual({ received: false, denied: true });
    expect(await trySubscribe(`instance/${INST}`, subjects.instanceAdmit(INST))).toEqual({ received: true, denied: false });
  });

  it("no actor reads _INBOX.> (other clients' replies), nor another actor's inbox", async () => {
    for (const who of ['gateway/gateway-0', 'cluster/cluster-manager-0', 'pool/pool-manager-0', 'node/gpu-node-0', `instance/${INST}`, 'observer/']) {
      expect((await trySubscribe(who, '_INBOX.>')).denied, who).toBe(true);
    }
    expect((await trySubscribe('gateway/gateway-1', `${inboxPrefix('gateway', 'gateway-0')}.x`)).denied).toBe(true);
    expect((await trySubscribe('gateway/gateway-0', `${inboxPrefix('gateway', 'gateway-0')}.x`)).received).toBe(true);
  });

  it('only the gateways (which check API keys) submit requests to the cluster intake', async () => {
    for (const who of ['observer/', `instance/${INST}`, 'node/gpu-node-0', 'pool/pool-manager-0']) {
      expect(await tryPublish(who, subjects.clusterIntake()), who).toEqual({ delivered: false, denied: true });
    }
    expect((await tryPublish('gateway/gateway-0', subjects.clusterIntake())).delivered).toBe(true);
  });

  it('an actor speaks only as itself: heartbeats and events under its own id', async () => {
    expect(await tryPublish('node/gpu-node-0', subjects.heartbeat('node', 'gpu-node-1'))).toEqual({ delivered: false, denied: true });
    expect((await tryPublish('node/gpu-node-0', subjects.heartbeat('node', 'gpu-node-0'))).delivered).toBe(true);
    expect(await tryPublish('gateway/gateway-0', subjects.event('scale', 'gateway-0'))).toEqual({ delivered: false, denied: true });
    expect(await tryPublish('gateway/gateway-0', subjects.instanceControl(INST))).toEqual({ delivered: false, denied: true });
  });
});

import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { NATS_SERVER_LIVENESS, committedConfigs, deploymentAuth, possibleInstances, renderServerConfig, rolePasswordEnv } from '../../src/runtime/nats-server-config.ts';
import { committedNodeAgents } from '../../src/cli/k8s-node-agents-file.ts';
import { nodeAgentManifests, NodeNameError } from '../../src/runtime/k8s-node-agents.ts';
import { deploymentActors, routeUrls } from '../../src/cli/gen-nats-auth.ts';
import { statSync } from 'node:fs';
import { ANSWERS, ROLES, permissionsOf, type Role } from '../../protocols/permissions.ts';
import { CATALOG } from '../../protocols/catalog.ts';
import { REPO_ROOT } from '../helpers/nats.ts';

describe('deployment seeds: a GPU node holds its own seeds and no other node\'s', () => {
  it('the committed deploy/k8s/60-node-agent.yaml equals its generated form (one agent per node of cluster.yaml)', () => {
    for (const [path, text] of Object.entries(committedNodeAgents(REPO_ROOT))) {
      expect(readFileSync(join(REPO_ROOT, path), 'utf8'), `${path}: run npm run gen:nats-config`).toBe(text);
    }
  });
  it('gen:nats-auth puts each node\'s seed with exactly the instances it may start, apart from every other node', () => {
    // deploy/k8s's cluster, with 2 of its pools (each pool adds 15 instance ids per node and a key pair each)
    const full = deploymentActors(readFileSync(join(REPO_ROOT, 'deploy/k8s/cluster.yaml'), 'utf8'), {});
    const a = { ...full, pools: full.pools.slice(0, 2) };
    expect(a.nodes.length).toBeGreaterThan(1);
    const out = mkdtempSync(join(tmpdir(), 'dyn-seeds-'));
    deploymentAuth(a, out);
    const dirs = readdirSync(out).filter((d) => d.startsWith('keys-node-')).sort();
    expect(dirs).toEqual(a.nodes.map((n) => `keys-node-${n.id}`).sort());
    for (const n of a.nodes) {
      const files = readdirSync(join(out, `keys-node-${n.id}`)).sort();
      const want = [`node-${n.id}.nk`, ...possibleInstances(a).filter((i) => i.node === n.id).map((i) => `${i.id}.nk`)].sort();
      expect(files).toEqual(want);
    }
    // no seed of a node or an instance anywhere else
    for (const d of readdirSync(out).filter((x) => x.startsWith('keys-') && !x.startsWith('keys-node-'))) {
      expect(readdirSync(join(out, d)).filter((f) => /^node-|-g\d+x\d+\.nk$/.test(f)), d).toEqual([]);
    }
  });
  it('gen:nats-auth grants a gateway user its workers\' identities when the config runs gateway.workers', () => {
    const text = readFileSync(join(REPO_ROOT, 'deploy/k8s/cluster.yaml'), 'utf8').replace(/^gateway:\n/m, 'gateway:\n  workers: 3\n');
    const a = deploymentActors(text, { gateways: 'gateway-0' });
    expect(a.gatewayWorkers).toBe(3);
    const out = mkdtempSync(join(tmpdir(), 'dyn-seeds-'));
    const auth = deploymentAuth({ ...a, pools: a.pools.slice(0, 1) }, out);
    const users = readFileSync(auth.usersFile, 'utf8');
    // worker 2 of gateway-0 speaks as gateway-0-w2: its inbox and heartbeat are in the replica's user
    for (const w of ['gateway-0-w0', 'gateway-0-w1', 'gateway-0-w2']) {
      expect(users).toContain(`_INBOX.gateway.${w}.>`);
    }
    expect(users).not.toContain('gateway-0-w3');
    // without workers in the config, no worker identity is granted
    const plain = deploymentAuth({ ...deploymentActors(readFileSync(join(REPO_ROOT, 'deploy/k8s/cluster.yaml'), 'utf8'), { gateways: 'gateway-0' }), pools: a.pools.slice(0, 1) }, mkdtempSync(join(tmpdir(), 'dyn-seeds-')));
    expect(readFileSync(plain.usersFile, 'utf8')).not.toContain('gateway-0-w');
  });
  it('the node-agent generator refuses a node id Kubernetes cannot name, a repeated one, and an empty list', () => {
    const t = 'kind: DaemonSet\nmetadata: { name: a-__NODE__ }\n---\nkind: PodDisruptionBudget\n';
    expect(nodeAgentManifests(t, ['n0', 'n1'], [])).toBe('kind: DaemonSet\nmetadata: { name: a-n0 }\n---\nkind: DaemonSet\nmetadata: { name: a-n1 }\n---\nkind: PodDisruptionBudget\n');
    expect(() => nodeAgentManifests(t, ['GPU_0'], [])).toThrow(NodeNameError);
    expect(() => nodeAgentManifests(t, ['n'.repeat(64)], [])).toThrow(/at most 63/);
    expect(() => nodeAgentManifests(t, ['n0', 'n0'], [])).toThrow(/repeat/);
    expect(() => nodeAgentManifests(t, [], [])).toThrow(/no GPU node/);
  });
});

describe('NATS server configs come from the one table of rights', () => {
  it('the committed nats.conf, deploy/nats/cluster.conf and deploy/k8s/nats.conf equal their generated form', () => {
    for (const [path, text] of Object.entries(committedConfigs())) {
      expect(readFileSync(join(REPO_ROOT, path), 'utf8'), `${path}: run npm run gen:nats-config`).toBe(text);
    }
  });
  it('every committed config, and the one `up` writes, closes a silent route or client within seconds (accepted by the nats-server here)', () => {
    const l = NATS_SERVER_LIVENESS;
    // nats-server's defaults (ping every 2 min, 2 outstanding, 10 s write deadline) keep a route to a cut-off node for 20 s or more
    expect(l.pingIntervalS * (l.pingMax + 1)).toBeLessThanOrEqual(5);
    const upConf = renderServerConfig({ header: ['up'], listen: '127.0.0.1:4222', serverName: 'up-0', storeDir: '/tmp/x', accounts: [{ name: 'dynamollm', users: [] }],
      cluster: { name: 'c', listen: '127.0.0.1:6222', routes: ['nats-route://127.0.0.1:6223'] } });
    for (const [path, text] of Object.entries({ ...committedConfigs(), up: upConf })) {
      expect(text, path).toContain(`\nping_interval: "${l.pingIntervalS}s"\nping_max: ${l.pingMax}\nwrite_deadline: "${l.writeDeadlineS}s"\n`);
    }
    // nats-server 2.9 takes them at the top level only (its cluster block has no ping or write deadline of its own)
    const dir = mkdtempSync(join(tmpdir(), 'dyn-natsconf-'));
    const env = { ...process.env, ...Object.fromEntries(ROLES.map((r) => [rolePasswordEnv(r), 'x'])) };
    for (const [name, text] of [['local.conf', committedConfigs()['nats.conf']!], ['up.conf', upConf]] as const) {
      writeFileSync(join(dir, name), text);
      const t = spawnSync(process.env.NATS_SERVER_BIN ?? 'nats-server', ['-c', join(dir, name), '-t'], { env, encoding: 'utf8' });
      expect(`${t.stdout}${t.stderr}`, name).toMatch(/configuration file .* is valid/);
    }
  });
  it('no committed config holds a password or lets anyone in anonymously', () => {
    for (const text of Object.values(committedConfigs())) {
      for (const m of text.matchAll(/password:\s*(\S+)/g)) expect(m[1]).toMatch(/^\$DYN_[A-Z]+_PASS$/);
      expect(text).not.toMatch(/no_auth_user/);
    }
  });
  it('the system account has no user and gives the cluster\'s account its own disconnect advisories only', () => {
    for (const [path, text] of Object.entries(committedConfigs())) {
      expect(text, path).toMatch(/^system_account: SYS$/m);
      const sys = /^ {2}SYS: \{\n([\s\S]*?)\n {2}\}$/m.exec(text)?.[1] ?? '';
      expect(sys, path).not.toMatch(/users|include|password|nkey/);
      expect(sys.match(/stream:/g), path).toHaveLength(1);
      expect(sys, path).toContain('{ stream: "$SYS.ACCOUNT.dynamollm.DISCONNECT", accounts: [dynamollm] }');
      expect(text, path).toContain('imports: [ { stream: { account: SYS, subject: "$SYS.ACCOUNT.dynamollm.DISCONNECT" }, to: "dyn.v1.ctl.connend" } ]');
    }
  });
  it('the host cluster config serves its unauthenticated monitoring port on the loopback interface only; the Kubernetes one on the pod IP for the kubelet\'s probes, no pod admitted (25-network-policies.yaml)', () => {
    const c = committedConfigs();
    expect(c['deploy/nats/cluster.conf']!.match(/^http: .*$/gm)).toEqual(['http: 127.0.0.1:8222']);
    expect(readFileSync(join(REPO_ROOT, 'deploy/nats/cluster.conf'), 'utf8').match(/^http: .*$/gm)).toEqual(['http: 127.0.0.1:8222']);
    expect(c['deploy/k8s/nats.conf']!.match(/^http: .*$/gm)).toEqual(['http: 0.0.0.0:8222']);
  });
  it('the deployment configs hold no user of their own: per-actor users from the generated include only', () => {
    const c = committedConfigs();
    for (const path of ['deploy/nats/cluster.conf', 'deploy/k8s/nats.conf']) {
      expect(c[path], path).toContain('include "auth/users.conf"');
      expect(c[path], path).not.toMatch(/users:|password|user:/);
    }
  });
  it('the deployment configs require route authorization: gen:nats-auth writes a fresh route password and routes carrying it (nats-server accepts them)', () => {
    const c = committedConfigs();
    for (const path of ['deploy/nats/cluster.conf', 'deploy/k8s/nats.conf']) {
      const cluster = /^cluster \{\n([\s\S]*?)\n\}$/m.exec(c[path]!)?.[1] ?? '';
      expect(cluster, path).toContain('include "auth/routes.conf"');
      // no route without credentials in the committed file: the routes come with the password from the include
      expect(cluster, path).not.toMatch(/routes:|nats(-route)?:\/\//);
    }
    const full = deploymentActors(readFileSync(join(REPO_ROOT, 'deploy/k8s/cluster.yaml'), 'utf8'), {});
    const a = { ...full, pools: full.pools.slice(0, 1) };
    const passwords: string[] = [];
    for (const [which, hosts] of [['k8s', ['nats-0.nats.dynamollm.svc', 'nats-1.nats.dynamollm.svc', 'nats-2.nats.dynamollm.svc']], ['hosts', ['nats-0', 'nats-1', 'nats-2']]] as const) {
      const out = mkdtempSync(join(tmpdir(), 'dyn-routes-'));
      const auth = deploymentAuth(a, out, routeUrls(which));
      const text = readFileSync(auth.routesFile, 'utf8');
      expect(statSync(auth.routesFile).mode & 0o777).toBe(0o600);
      const pw = /^authorization \{ user: route, password: "([0-9a-f]+)", timeout: 2 \}$/m.exec(text)?.[1];
      expect(pw, which).toMatch(/^[0-9a-f]{48}$/);
      passwords.push(pw!);
      const scheme = which === 'k8s' ? 'nats' : 'nats-route';
      expect(text.match(/^ {2}nats\S*$/gm)).toEqual(hosts.map((h) => `  ${scheme}://route:${pw}@${h}:6222`));
      if (which === 'k8s') {
        // the Kubernetes config with the generated files beside it, as the StatefulSet mounts them
        const dir = mkdtempSync(join(tmpdir(), 'dyn-k8sconf-'));
        writeFileSync(join(dir, 'nats.conf'), c['deploy/k8s/nats.conf']!);
        spawnSync('cp', ['-r', join(out, 'nats-auth'), join(dir, 'auth')]);
        const t = spawnSync(process.env.NATS_SERVER_BIN ?? 'nats-server', ['-c', join(dir, 'nats.conf'), '-t'], { env: { ...process.env, POD_NAME: 'nats-0', DYN_NATS_LEASE_TAG: 'dyn-lease-0' }, encoding: 'utf8' });
        expect(`${t.stdout}${t.stderr}`).toMatch(/configuration file .* is valid/);
      }
    }
    // each run its own password
    expect(new Set(passwords).size).toBe(2);
    expect(() => routeUrls('nats://user:pw@h:6222')).toThrow(RangeError);
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
    // the leases: the one bucket (one NATS server) and the one-replica buckets of a NATS cluster (leaseBuckets)
    const leaseBuckets = ['dyn_v1_leases', 'dyn_v1_leases_0', 'dyn_v1_leases_1', 'dyn_v1_leases_2', 'dyn_v1_leases_3', 'dyn_v1_leases_4'];
    expect(permissionsOf({ role: 'pool' }).publish.filter((s) => s.startsWith('$KV.'))).toEqual([...leaseBuckets.map((b) => `$KV.${b}.pool.*`), '$KV.dyn_v1_dispatched.*.>']);
    expect(permissionsOf({ role: 'pool', pools: ['p1'] }).publish.filter((s) => s.startsWith('$KV.'))).toEqual([...leaseBuckets.map((b) => `$KV.${b}.pool.p1`), '$KV.dyn_v1_dispatched.p1.>']);
    expect(permissionsOf({ role: 'cluster' }).publish.filter((s) => s.startsWith('$KV.'))).toEqual([...leaseBuckets.map((b) => `$KV.${b}.cluster.planner`), '$KV.dyn_v1_inventory.pool.*', '$KV.dyn_v1_inventory.energy.cluster']);
    // no other role touches a lease bucket
    for (const role of ['gateway', 'instance', 'node'] as const) expect(permissionsOf({ role }).publish.some((s) => s.includes('dyn_v1_leases')), role).toBe(false);
    // the gateway cannot command anything nor touch JetStream but to read its resume journal back (that one stream's
    // direct get, and its leader's message get when replicated); it submits requests to intake or, routing them itself, to an instance's admission, and reads the
    // routing table, the instances' status and the server's disconnect advisories (its routing view)
    const gw = permissionsOf({ role: 'gateway' });
    expect(gw.publish.some((s) => /\.ctl$|\.dispatch$|^\$KV/.test(s))).toBe(false);
    expect(gw.publish.filter((s) => s.startsWith('$JS'))).toEqual(['$JS.API.DIRECT.GET.DYN_V1_RESUME', '$JS.API.STREAM.MSG.GET.DYN_V1_RESUME']);
    expect(gw.publish.filter((s) => s.includes('.resume.'))).toEqual(['dyn.v1.resume.*']);
    expect(gw.publish.filter((s) => s.endsWith('.admit'))).toEqual(['dyn.v1.inst.*.admit']);
    expect(gw.subscribe).toEqual(expect.arrayContaining(['dyn.v1.ctl.route', 'dyn.v1.ctl.istat.*.*']));
    expect(gw.subscribe.some((s) => s.includes('.ctl.') && !['dyn.v1.ctl.route', 'dyn.v1.ctl.istat.*.*', 'dyn.v1.ctl.connend'].includes(s))).toBe(false);
    // the disconnect advisories: read by those with a dispatch view, written by no actor (only the server imports them)
    for (const role of ROLES) {
      const p = permissionsOf({ role });
      if (role !== 'admin') expect(p.publish.some((s) => s.includes('connend') || s === 'dyn.v1.ctl.>' || s.startsWith('$SYS')), role).toBe(false);
      expect(p.subscribe.includes('dyn.v1.ctl.connend'), role).toBe(['cluster', 'pool', 'gateway'].includes(role));
    }
    // the observer changes nothing: no command, intake, KV write or stream write
    const ob = permissionsOf({ role: 'observer' });
    expect(ob.publish.some((s) => /intake|\.ctl$|\.admit$|dispatch|^\$KV|dyn\.v1\.(evt|stream|tel)/.test(s))).toBe(false);
    expect(ob.publish).toContain('$SRV.PING');
    // it reads the lease records (the stream's info, a get, its own watch: dynamollm chaos) and no other bucket; creates no stream
    expect(ob.publish.filter((s) => s.includes('KV_'))).toEqual(leaseBuckets.flatMap((b) => [
      `$JS.API.STREAM.INFO.KV_${b}`, `$JS.API.STREAM.MSG.GET.KV_${b}`, `$JS.API.DIRECT.GET.KV_${b}`, `$JS.API.DIRECT.GET.KV_${b}.>`,
      `$JS.API.CONSUMER.CREATE.KV_${b}.*.$KV.${b}.>`, `$JS.API.CONSUMER.INFO.KV_${b}.*`, `$JS.API.CONSUMER.DELETE.KV_${b}.*`, `$JS.FC.KV_${b}.>`,
    ]));
    expect(ob.publish.some((s) => s.includes('STREAM.CREATE') || s.includes('STREAM.UPDATE') || s.includes('STREAM.PURGE') || s.includes('MSG.DELETE'))).toBe(false);
  });
  it("a responder publishes into the inboxes of exactly the roles whose requests it serves (ANSWERS, derived from the catalog's request subjects and the rights)", () => {
    // two NATS subject patterns match a common subject
    const meet = (a: string, b: string): boolean => {
      const x = a.split('.'), y = b.split('.');
      for (let i = 0; i < Math.max(x.length, y.length); i++) {
        if (x[i] === '>' || y[i] === '>') return x[i] !== undefined && y[i] !== undefined;
        if (x[i] === undefined || y[i] === undefined) return false;
        if (x[i] !== '*' && y[i] !== '*' && x[i] !== y[i]) return false;
      }
      return true;
    };
    const actors = ROLES.filter((r) => r !== 'admin');
    const derived = Object.fromEntries(actors.map((r) => [r, new Set<Role>()])) as Record<Role, Set<Role>>;
    for (const e of CATALOG.filter((c) => c.pattern === 'req' && !c.wildcard.startsWith('$SRV'))) {
      const callers = actors.filter((r) => permissionsOf({ role: r }).publish.some((s) => meet(s, e.wildcard)));
      const servers = actors.filter((r) => permissionsOf({ role: r }).subscribe.some((s) => meet(s, e.wildcard)));
      expect(callers.length, e.subject).toBeGreaterThan(0);
      expect(servers.length, e.subject).toBeGreaterThan(0);
      for (const r of servers) for (const c of callers) if (c !== r) derived[r].add(c);
    }
    for (const r of actors) {
      expect([...ANSWERS[r]].sort(), r).toEqual([...derived[r]].sort());
      const p = permissionsOf({ role: r, id: `${r}-0` });
      expect(p.publish.filter((s) => s.startsWith('_INBOX.')).sort(), r).toEqual(ANSWERS[r].map((c) => `_INBOX.${c}.*.>`).sort());
    }
    expect(ANSWERS.pool).toContain('cluster');
    expect(ANSWERS.cluster).toContain('gateway');
    // no actor may publish into every inbox
    for (const r of actors) expect(permissionsOf({ role: r }).publish.filter((s) => meet(s, '_INBOX.x.y') && !ANSWERS[r].some((c) => s.startsWith(`_INBOX.${c}.`)))).toEqual([]);
  });
  it('enumerates every instance id a pool leader may start (aligned TP groups)', () => {
    const ids = possibleInstances({ clusterId: 'c', clusterManagers: [], poolManagers: [], gateways: [], nodes: [{ id: 'n0', gpus: 8 }], pools: ['p'] }).map((i) => i.id);
    expect(ids).toHaveLength(15);
    expect(ids).toContain('p-n0-g4x4');
    expect(ids).not.toContain('p-n0-g2x4');
  });
});

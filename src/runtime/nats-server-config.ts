/**
 * nats-server configs generated from the one table of rights (protocols/permissions.ts):
 * - the committed ones: `nats.conf` (one local server), `deploy/nats/cluster.conf` (3 servers with routes)
 *   and `deploy/k8s/nats.conf` (the kustomize configMapGenerator `nats-config`, key `nats.conf`). They
 *   hold one user per role whose password comes from the server's environment ($DYN_<ROLE>_PASS;
 *   nats-server refuses to start when one is missing): no secret is committed. Regenerate them with
 *   `npm run gen:nats-config`; test/unit/nats-config.test.ts fails when they differ.
 * - the per-actor one `dynamollm up` writes into its state directory (localClusterAuth): one nkey user per
 *   actor, each with only its own rights, seeds in files of that directory (mode 0600).
 *
 * A cluster is one NATS account named by its cluster id: subjects, KV buckets and streams of two
 * clusters on one server never meet (NATS accounts are separate subject spaces with their own JetStream).
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { nkeys } from '@nats-io/transport-node';
import { permissionsOf, type ActorIdentity, type Permissions, type Role } from '../../protocols/permissions.ts';
import { token } from '../../protocols/subjects.ts';
import { controlSubjects } from '../../protocols/control.ts';
import { natsSystemSubjects } from '../../protocols/nats-advisory.ts';

export interface UserEntry {
  /** comment line above the user. */
  comment?: string;
  user?: string;
  /** literal password, or `$NAME` (expanded by nats-server from its environment). */
  password?: string;
  /** nkey public key (U...): the client proves it holds the seed. */
  nkey?: string;
  permissions: Permissions;
}

export interface AccountSpec {
  /** the cluster id. */
  name: string;
  users: UserEntry[];
  /**
   * a file (relative to the config's directory: nats-server resolves every include there, even one
   * starting with /) holding the account's `users: [...]`, generated per
   * deployment (renderUsersFile, `npm run gen:nats-auth`); given, `users` is not written inline.
   */
  include?: string;
}

export interface ServerSpec {
  header: string[];
  listen: string;
  http?: string;
  serverName: string;
  storeDir: string;
  maxFileStore?: string;
  /**
   * the route listener; `routes` inline (a local cluster), or `include`: a generated file (renderRoutesFile) holding
   * the route authorization and the routes with their credentials, relative to the config's directory.
   */
  cluster?: { name: string; listen: string; routes?: string[]; include?: string };
  /**
   * the server's `server_tags` (literal tags, or one `$NAME` expanded from the server's environment): in a cluster
   * each server holds one leasePlacementTag, on which the lease bucket of that index is placed (src/runtime/lease.ts).
   */
  serverTags?: string[];
  accounts: AccountSpec[];
}

/**
 * The server's system account, named in the configs: it has no user (nobody logs in to it) and exports to each
 * cluster's account only that account's disconnect advisories, which the account imports as
 * controlSubjects.connectionEnded (its managers take an instance whose connection ended out of dispatch at once).
 * No cluster id may take this name.
 */
export const SYSTEM_ACCOUNT = 'SYS';

/** Largest NATS message; the gateway's body limit sits below it (actors/gateway/config.ts). */
export const NATS_MAX_PAYLOAD_BYTES = 1024 * 1024;
export const DEFAULT_CLUSTER_ID = 'dynamollm';

const q = (s: string): string => JSON.stringify(s);
const list = (xs: string[], indent: string): string => {
  if (xs.length <= 4) return `[${xs.map(q).join(', ')}]`;
  return `[\n${xs.map((x) => `${indent}  ${q(x)}`).join('\n')}\n${indent}]`;
};

function renderUser(u: UserEntry, ind: string): string {
  const lines: string[] = [];
  if (u.comment) lines.push(`${ind}# ${u.comment}`);
  lines.push(`${ind}{`);
  if (u.nkey) lines.push(`${ind}  nkey: ${u.nkey}`);
  if (u.user !== undefined) lines.push(`${ind}  user: ${q(u.user)}`);
  if (u.password !== undefined) lines.push(`${ind}  password: ${u.password.startsWith('$') ? u.password : q(u.password)}`);
  const p = u.permissions;
  lines.push(`${ind}  permissions: {`);
  lines.push(`${ind}    publish: { allow: ${list(p.publish, `${ind}    `)} }`);
  lines.push(`${ind}    subscribe: { allow: ${list(p.subscribe, `${ind}    `)} }`);
  if (p.allowResponses) lines.push(`${ind}    allow_responses: true`);
  lines.push(`${ind}  }`);
  lines.push(`${ind}}`);
  return lines.join('\n');
}

/**
 * How fast a server gives up on a silent peer, route or client (nats-server 2.9 has these only at the top level:
 * they apply to routes and clients alike; its `cluster {}` block takes no ping or write-deadline of its own).
 * - pingIntervalS (s, default 1): a server pings a route or client that sent it nothing for this long;
 * - pingMax (default 3): the pings left unanswered after which it closes the connection ("Stale Connection");
 * - writeDeadlineS (s, default 2): a write blocked this long closes the connection ("Slow Consumer").
 * A route to a cut-off or stopped node (no TCP reset) closes within pingIntervalS x (pingMax + 1) of its last word;
 * until it closes, the other nodes keep sending that node its share of queue-group traffic (intake, tokenize, admits,
 * cancels), which is lost there. nats-server's defaults (2 min, 2, 10 s) keep it for 20 s or more. A client stalled
 * longer than that bound (a stopped or frozen process) is dropped and leaves its queue groups; it reconnects when it
 * runs again. The bound sits far above the event-loop stalls of actors on a loaded host, so a busy host's routes and
 * clients do not flap. nats-server 2.9.10 pings no connection it keeps sending on (its issue #4014): that side of a
 * cut route, or a stopped client that receives broadcasts, closes only on the write deadline once the socket buffers
 * fill (README "Running against real vLLM and GPUs", item 4; scripts/nats-route-cut.sh measures it).
 */
export const NATS_SERVER_LIVENESS = { pingIntervalS: 1, pingMax: 3, writeDeadlineS: 2 } as const;

export function renderServerConfig(s: ServerSpec): string {
  const out: string[] = [...s.header.map((h) => (h ? `# ${h}` : '#')), ''];
  out.push(`listen: ${s.listen}`);
  if (s.http) out.push(`http: ${s.http}`);
  out.push(`server_name: ${s.serverName}`, '');
  if (s.serverTags?.length) {
    out.push('# the lease bucket placed on this server (one per server of the cluster: src/runtime/lease.ts)');
    out.push(`server_tags: [${s.serverTags.map((t) => (t.startsWith('$') ? t : q(t))).join(', ')}]`, '');
  }
  out.push('# payloads are small msgpack messages; 1 MiB bounds a bad client (the gateway refuses larger bodies first).');
  out.push('max_payload: 1MB', '');
  out.push('jetstream {', `  store_dir: ${q(s.storeDir)}`, '  max_memory_store: 256MB', `  max_file_store: ${s.maxFileStore ?? '2GB'}`, '}', '');
  const l = NATS_SERVER_LIVENESS;
  out.push(
    `# a silent route or client (a cut-off host, a stopped process) is closed within ${l.pingIntervalS * (l.pingMax + 1)} s: ping after ${l.pingIntervalS} s`,
    `# of silence, close after ${l.pingMax} unanswered; a write blocked ${l.writeDeadlineS} s closes too (src/runtime/nats-server-config.ts).`,
    `ping_interval: "${l.pingIntervalS}s"`, `ping_max: ${l.pingMax}`, `write_deadline: "${l.writeDeadlineS}s"`, '',
  );
  if (s.cluster) {
    out.push('cluster {', `  name: ${s.cluster.name}`, `  listen: ${s.cluster.listen}`);
    if (s.cluster.routes) out.push('  routes: [', ...s.cluster.routes.map((r) => `    ${r}`), '  ]');
    if (s.cluster.include !== undefined) {
      out.push('  # route authorization (a server joins only with the generated route secret) and the routes, their URLs', '  # carrying it: `npm run gen:nats-auth` writes this file');
      out.push(`  include ${q(s.cluster.include)}`);
    }
    out.push('}', '');
  }
  out.push('# One account per cluster id: its subjects, KV buckets and streams are its own. No anonymous access.');
  out.push('accounts {');
  for (const a of s.accounts) if (a.name === SYSTEM_ACCOUNT) throw new RangeError(`cluster id '${a.name}' is the system account's name`);
  out.push(`  # the system account: no user; each cluster's account gets its own clients' disconnect advisories, nothing else`);
  out.push(`  ${SYSTEM_ACCOUNT}: {`, '    exports: [');
  for (const a of s.accounts) out.push(`      { stream: ${q(natsSystemSubjects.accountDisconnect(a.name))}, accounts: [${token(a.name, 'cluster id')}] }`);
  out.push('    ]', '  }');
  for (const a of s.accounts) {
    out.push(`  ${token(a.name, 'cluster id')}: {`, '    jetstream: enabled');
    out.push('    # its clients\' disconnects, as the servers see them (protocols/nats-advisory.ts); only cluster and pool managers and gateways may read them');
    out.push(`    imports: [ { stream: { account: ${SYSTEM_ACCOUNT}, subject: ${q(natsSystemSubjects.accountDisconnect(a.name))} }, to: ${q(controlSubjects.connectionEnded())} } ]`);
    if (a.include !== undefined) {
      out.push('    # one nkey user per actor, each with only its own rights: `npm run gen:nats-auth` writes this file');
      out.push(`    include ${q(a.include)}`);
    } else {
      out.push('    users: [');
      out.push(a.users.map((u) => renderUser(u, '      ')).join('\n'));
      out.push('    ]');
    }
    out.push('  }');
  }
  out.push('}', `system_account: ${SYSTEM_ACCOUNT}`, '');
  return out.join('\n');
}

const ROLE_COMMENT: Record<Role, string> = {
  gateway: 'gateway: submits to the cluster intake, reads token streams, cancels; reads telemetry/events/heartbeats (dashboard)',
  cluster: 'cluster manager: intake (queue group) and status; dispatches to and commands pools; planner lease; pool assignments; events stream',
  pool: 'pool manager: serves dispatch/ctl/move; admits to and commands instances; starts/stops them on node agents; pool leases',
  instance: 'instance manager: its admit/ctl; token streams; its own status and telemetry; asks its pool to move requests',
  node: 'node agent: its node ctl; its own node status and inventory key',
  observer: 'observer (read-only): telemetry, events (live or through its own consumer), heartbeats, cluster status, $SRV requests',
  admin: 'admin: everything (operators and tests; never given to an actor)',
};

/** Env variable holding a deployed server's lease placement tag (leasePlacementTag of its index) in the committed cluster configs. */
export const LEASE_TAG_ENV = 'DYN_NATS_LEASE_TAG';

/** Env variable holding a role's password in the committed configs. */
export const rolePasswordEnv = (role: Role): string => `DYN_${role.toUpperCase()}_PASS`;

/** One user per role, password from the environment: the committed configs. */
export function roleUsers(): UserEntry[] {
  return (['gateway', 'cluster', 'pool', 'instance', 'node', 'observer', 'admin'] as const).map((role) => ({
    comment: ROLE_COMMENT[role],
    user: role,
    password: `$${rolePasswordEnv(role)}`,
    permissions: permissionsOf({ role }),
  }));
}

const ROLES_DOC = [
  'Rights per role: protocols/permissions.ts (the one source). Passwords come from the server\'s environment:',
  `  ${(['gateway', 'cluster', 'pool', 'instance', 'node', 'observer', 'admin'] as const).map(rolePasswordEnv).join(' ')}`,
  '(nats-server refuses to start when one is missing). Clients give theirs as NATS_USER/NATS_PASSWORD.',
  'One user per role: an actor is bound to its role, not to its id (an instance user may read any instance\'s',
  'admit subject). For one machine and the tests; deployments use per-actor users (deploy/nats, deploy/k8s) and',
  '`dynamollm up` writes a per-actor config of its own.',
];

const DEPLOY_DOC = [
  'Per-actor identity: the account\'s users are the file auth/users.conf beside this one (not committed), one',
  'nkey user per actor with only its own rights (protocols/permissions.ts: an instance reads only its own admit',
  'subject, a node agent writes only its own inventory key, ...). Generate it and the actors\' seed files with',
  '  npm run gen:nats-auth -- --config cluster.yaml --out DIR',
  'then give DIR/nats-auth/users.conf and routes.conf to the servers and each actor its own seed (NATS_NKEY); docs/SECURITY.md.',
  'Rotate: run it again, replace the files, `nats-server --signal reload`, restart the actors.',
];

/** The account of the deployment configs: its users come from the generated include file. */
export const DEPLOY_USERS_INCLUDE = 'auth/users.conf';

/** The deployment configs' route authorization and routes: generated per deployment (renderRoutesFile). */
export const DEPLOY_ROUTES_INCLUDE = 'auth/routes.conf';

/** The route URLs (without credentials) of the committed deployments, by `gen:nats-auth --routes` name. */
export const DEPLOY_ROUTES = {
  k8s: ['nats://nats-0.nats.dynamollm.svc:6222', 'nats://nats-1.nats.dynamollm.svc:6222', 'nats://nats-2.nats.dynamollm.svc:6222'],
  hosts: ['nats-route://nats-0:6222', 'nats-route://nats-1:6222', 'nats-route://nats-2:6222'],
} as const;

/** The user name of the route authorization (one shared user: nats-server's cluster authorization takes one). */
export const ROUTE_USER = 'route';

/**
 * The cluster block's generated include: the route authorization (user ROUTE_USER, `password`) every server requires
 * of a connecting route, and the explicit routes with the same credentials in their URLs (nats-server does not send
 * its cluster authorization on an explicitly listed route: the URL must carry it).
 */
export function renderRoutesFile(routes: readonly string[], password: string, header: string[]): string {
  if (!/^[0-9a-f]{32,}$/.test(password)) throw new RangeError('route password: at least 32 hex digits');
  const withCreds = routes.map((r) => {
    const u = new URL(r);
    if (u.username || u.password) throw new RangeError(`route ${r}: give it without credentials`);
    u.username = ROUTE_USER;
    u.password = password;
    return u.href.replace(/\/$/, '');
  });
  return [...header.map((h) => (h ? `# ${h}` : '#')),
    `authorization { user: ${ROUTE_USER}, password: ${q(password)}, timeout: 2 }`, 'routes: [', ...withCreds.map((r) => `  ${r}`), ']', ''].join('\n');
}

/** The three committed configs, by repository path. */
export function committedConfigs(): Record<string, string> {
  const gen = 'GENERATED by `npm run gen:nats-config` from protocols/permissions.ts; do not edit by hand.';
  const account: AccountSpec = { name: DEFAULT_CLUSTER_ID, users: roleUsers() };
  const deployAccount: AccountSpec = { name: DEFAULT_CLUSTER_ID, users: [], include: DEPLOY_USERS_INCLUDE };
  return {
    'nats.conf': renderServerConfig({
      header: ['dynamollm NATS server config for one machine and the tests (nats-server >= 2.9).', gen, '', ...ROLES_DOC, '',
        'Start: DYN_GATEWAY_PASS=... (all of them) nats-server -c nats.conf. `dynamollm up` does not use this file:',
        'it starts its own server from a per-actor config in its state directory.'],
      listen: '127.0.0.1:4222',
      serverName: 'dynamollm-local',
      storeDir: './.nats-data',
      accounts: [account],
    }),
    'deploy/nats/cluster.conf': renderServerConfig({
      header: ['dynamollm NATS cluster config: 3 servers, JetStream replicated.', gen, '', ...DEPLOY_DOC, '',
        'Each server: DYN_NATS_NAME=nats-0 DYN_NATS_LEASE_TAG=dyn-lease-0 nats-server -c cluster.conf (nats-1 with',
        'dyn-lease-1, nats-2 with dyn-lease-2: each server its own tag; the leader leases keep one bucket on each), with',
        'auth/users.conf and auth/routes.conf (`npm run gen:nats-auth -- ... --routes hosts`) beside it. Put TLS in front',
        'when the network is not trusted; keep the route port (6222) on a private network. The monitoring port (8222:',
        'unauthenticated /varz, /connz, /routez, ...) listens on the loopback interface only; to scrape it from another',
        'host (prometheus-nats-exporter), bind it to a private address and firewall it to the scraper.'],
      listen: '0.0.0.0:4222',
      http: '127.0.0.1:8222',
      serverName: '$DYN_NATS_NAME',
      serverTags: [`$${LEASE_TAG_ENV}`],
      storeDir: '/var/lib/nats/jetstream',
      cluster: { name: 'dynamollm', listen: '0.0.0.0:6222', include: DEPLOY_ROUTES_INCLUDE },
      accounts: [deployAccount],
    }),
    'deploy/k8s/nats.conf': renderServerConfig({
      header: ['dynamollm NATS config for Kubernetes (kustomize configMapGenerator nats-config, key nats.conf).', gen, '', ...DEPLOY_DOC, '',
        'The StatefulSet projects the Secret dynamollm-nats-auth (users.conf, routes.conf) to /etc/nats/auth and POD_NAME',
        'from the pod; NetworkPolicies (25-network-policies.yaml) admit routes from the NATS pods only;',
        `its start sets ${LEASE_TAG_ENV}=dyn-lease-<the pod's ordinal> (each server its own leader-lease bucket).`],
      listen: '0.0.0.0:4222',
      http: '0.0.0.0:8222',
      serverName: '$POD_NAME',
      serverTags: [`$${LEASE_TAG_ENV}`],
      storeDir: '/data/jetstream',
      maxFileStore: '10GB',
      cluster: { name: 'dynamollm', listen: '0.0.0.0:6222', include: DEPLOY_ROUTES_INCLUDE },
      accounts: [deployAccount],
    }),
  };
}

/** The actors of a cluster config, with what their rights depend on. */
export interface ClusterActors {
  clusterId: string;
  clusterManagers: string[];
  poolManagers: string[];
  gateways: string[];
  /** worker processes per gateway (gateway.workers), which share its user; default 1. */
  gatewayWorkers?: number;
  nodes: { id: string; gpus: number }[];
  pools: string[];
}

/**
 * Every instance id a pool leader may start (actors/pool-manager: `<pool>-<node>-g<first gpu>x<tp>`, TP
 * groups aligned to their size), so each instance gets its own user before it exists.
 */
export function possibleInstances(a: ClusterActors): { id: string; pool: string; node: string }[] {
  const out: { id: string; pool: string; node: string }[] = [];
  for (const pool of a.pools)
    for (const n of a.nodes)
      for (const tp of [1, 2, 4, 8])
        for (let g = 0; g + tp <= n.gpus; g += tp) out.push({ id: `${pool}-${n.id}-g${g}x${tp}`, pool, node: n.id });
  return out;
}

export interface ActorCredential {
  identity: ActorIdentity;
  /** nkey seed file (NATS_NKEY). */
  nkeyFile: string;
  publicKey: string;
}

export interface LocalAuth {
  account: AccountSpec;
  /** `${role}/${id}` -> credential */
  creds: Map<string, ActorCredential>;
  /** directory of the instances' seed files, `<instance id>.nk` (the node agents hand them to instances). */
  instanceKeysDir: string;
}

/** Where an actor's seed file goes (a function of its identity). */
export type SeedPlace = (identity: ActorIdentity) => string;

/**
 * One nkey user per actor of `a` (cluster and pool managers, node agents, gateways, every possible instance,
 * one observer and one admin): a fresh key pair each, the seed written to `place(identity)` (mode 0600, its
 * directory 0700), the public key with the actor's own rights (permissionsOf) in the returned users.
 */
export function actorUsers(a: ClusterActors, place: SeedPlace): { users: UserEntry[]; creds: Map<string, ActorCredential> } {
  const creds = new Map<string, ActorCredential>();
  const users: UserEntry[] = [];
  const add = (identity: ActorIdentity) => {
    const kp = nkeys.createUser();
    const file = place(identity);
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, new TextDecoder().decode(kp.getSeed()) + '\n', { mode: 0o600 });
    chmodSync(file, 0o600);
    const publicKey = kp.getPublicKey();
    creds.set(`${identity.role}/${identity.id ?? ''}`, { identity, nkeyFile: file, publicKey });
    users.push({ comment: `${identity.role} ${identity.id ?? ''}${identity.pool ? ` (pool ${identity.pool})` : ''}`, nkey: publicKey, permissions: permissionsOf(identity) });
  };
  for (const id of a.clusterManagers) add({ role: 'cluster', id });
  for (const id of a.poolManagers) add({ role: 'pool', id, pools: a.pools });
  for (const n of a.nodes) add({ role: 'node', id: n.id });
  for (const id of a.gateways) add({ role: 'gateway', id, workers: a.gatewayWorkers });
  for (const i of possibleInstances(a)) add({ role: 'instance', id: i.id, pool: i.pool });
  add({ role: 'observer' });
  add({ role: 'admin' });
  return { users, creds };
}

/**
 * Per-actor nkey users for a local cluster: writes one seed file per actor under `dir` (0600) and returns
 * the account to put in the server config. Observer and admin get one key each ('observer/', 'admin/'):
 * `up` waits for readiness as the observer and prints the observer's key for status/top; admin is for
 * the operator.
 */
export function localClusterAuth(a: ClusterActors, dir: string): LocalAuth {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const instDir = join(dir, 'instances');
  mkdirSync(instDir, { recursive: true, mode: 0o700 });
  const { users, creds } = actorUsers(a, (i) => {
    if (i.role === 'instance') return join(instDir, `${i.id}.nk`);
    if (i.id === undefined) return join(dir, `${i.role}.nk`);
    return join(dir, `${i.role}-${i.id}.nk`);
  });
  return { account: { name: a.clusterId, users }, creds, instanceKeysDir: instDir };
}

/** The text of an account's generated users file (the deployment configs include it). */
export function renderUsersFile(users: UserEntry[], header: string[]): string {
  return [...header.map((h) => (h ? `# ${h}` : '#')), 'users: [', users.map((u) => renderUser(u, '  ')).join('\n'), ']', ''].join('\n');
}

/**
 * Directory (Secret) of a deployment seed: `keys-<role>` for the managers, gateways, observer and admin (a pod
 * mounts only its own role's); `keys-node-<node>` for a node agent and every instance it may start, so that a
 * GPU host holds its own node's seeds and no other node's.
 */
export const deploySeedDir = (role: Role, node?: string): string => (node === undefined ? `keys-${role}` : `keys-node-${node}`);

export interface DeploymentAuth {
  /** DIR/nats-auth/users.conf: the servers' users (public keys and rights only; not secret). */
  usersFile: string;
  /** DIR/nats-auth/routes.conf (0600): the route authorization and the routes with its password (secret). */
  routesFile: string;
  creds: Map<string, ActorCredential>;
}

/**
 * Credentials of a deployment (deploy/k8s, deploy/nats): `outDir/nats-auth/users.conf` for the NATS servers
 * (the committed configs include it as auth/users.conf), and the seeds `outDir/keys-<role>/<role>-<id>.nk`
 * (observer and admin: `keys-<role>/<role>.nk`); a GPU node's own seed and those of the instances it may start
 * together in `outDir/keys-node-<node>/` (`node-<node>.nk`, `<instance id>.nk`: the node agent's
 * instanceKeysDir). New keys every call: re-running it rotates every credential.
 */
export function deploymentAuth(a: ClusterActors, outDir: string, routes: readonly string[] = DEPLOY_ROUTES.k8s): DeploymentAuth {
  const instanceNode = new Map(possibleInstances(a).map((i) => [i.id, i.node]));
  const { users, creds } = actorUsers(a, (i) => {
    const node = i.role === 'node' ? i.id : i.role === 'instance' ? instanceNode.get(i.id ?? '') : undefined;
    const dir = join(outDir, deploySeedDir(i.role, node));
    if (i.role === 'instance') return join(dir, `${i.id}.nk`);
    return join(dir, i.id === undefined ? `${i.role}.nk` : `${i.role}-${i.id}.nk`);
  });
  const usersFile = join(outDir, 'nats-auth', 'users.conf');
  mkdirSync(dirname(usersFile), { recursive: true, mode: 0o700 });
  writeFileSync(
    usersFile,
    renderUsersFile(users, [
      `dynamollm NATS users of cluster ${a.clusterId}: one nkey user per actor (npm run gen:nats-auth).`,
      'Public keys and rights only: the seeds are in the keys-<role> and keys-node-<node> directories beside this one.',
      `Actors: cluster ${a.clusterManagers.join(',')}; pool ${a.poolManagers.join(',')}; gateway ${a.gateways.join(',')}; node ${a.nodes.map((n) => n.id).join(',')}.`,
    ]),
  );
  const routesFile = join(outDir, 'nats-auth', 'routes.conf');
  writeFileSync(
    routesFile,
    renderRoutesFile(routes, randomBytes(24).toString('hex'), [
      `dynamollm NATS route credentials of cluster ${a.clusterId} (npm run gen:nats-auth): secret, for the NATS servers only.`,
      'A server joins the cluster only with this password; every server of the cluster needs the same file.',
    ]),
    { mode: 0o600 },
  );
  chmodSync(routesFile, 0o600);
  return { usersFile, routesFile, creds };
}

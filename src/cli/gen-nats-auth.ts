/**
 * `npm run gen:nats-auth -- --config FILE --out DIR [--cluster-managers ID,..] [--pool-managers ID,..]
 * [--gateways ID,..] [--routes k8s|hosts|URL,..]`: the per-actor NATS credentials of a deployment (deploy/k8s, deploy/nats), from the one
 * table of rights (protocols/permissions.ts) and the cluster config (its cluster id, servers = node agent
 * ids, pools):
 *   DIR/nats-auth/users.conf     the servers' users (include "auth/users.conf" in the committed configs)
 *   DIR/nats-auth/routes.conf    the route authorization (a fresh random password) and the routes carrying it
 *                                (include "auth/routes.conf"): deploy/k8s's StatefulSet (k8s, the default),
 *                                deploy/nats's hosts nats-0..2 (hosts), or the route URLs given
 *   DIR/keys-<role>/...          each actor's nkey seed (NATS_NKEY), one directory per role
 * The default replica ids are the pod names of deploy/k8s's StatefulSets (cluster-manager-0, -1, ...).
 * With the k8s routes (the default) it exits 1 when users.conf and routes.conf together exceed what one Kubernetes
 * Secret holds (1 MiB; deploy/k8s/nats-secrets.sh puts both in dynamollm-nats-auth): fewer pools or nodes, or serve
 * users.conf from a volume (docs/SECURITY.md "Limits").
 * Every run makes new keys: running it again and rolling the servers and actors rotates every credential.
 */
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { splitConfig } from '../../actors/gateway/config.ts';
import { poolsOf } from '../../actors/common/config.ts';
import { DEPLOY_ROUTES, deploymentAuth, type ClusterActors } from '../runtime/nats-server-config.ts';

const USAGE =
  'usage: npm run gen:nats-auth -- --config cluster.yaml --out DIR [--cluster-managers cluster-manager-0,cluster-manager-1] ' +
  '[--pool-managers pool-manager-0,pool-manager-1] [--gateways gateway-0,gateway-1] [--routes k8s|hosts|nats-route://h0:6222,...]';

/** The route URLs of `--routes`: a committed deployment's name, or a comma-separated list of URLs. */
export function routeUrls(v: string | undefined): string[] {
  if (v === undefined || v === 'k8s') return [...DEPLOY_ROUTES.k8s];
  if (v === 'hosts') return [...DEPLOY_ROUTES.hosts];
  const urls = v.split(',').map((s) => s.trim()).filter(Boolean);
  for (const u of urls) if (!/^nats(-route)?:\/\/[^\s@/]+:\d+$/.test(u)) throw new RangeError(`--routes: '${u}' is not nats://host:port or nats-route://host:port`);
  if (urls.length === 0) throw new RangeError('--routes: no route');
  return urls;
}

/** The most data one Kubernetes Secret holds (the API server refuses a larger one). */
export const SECRET_MAX_BYTES = 1024 * 1024;

/** Why the Secret dynamollm-nats-auth cannot hold `files` (their sizes together above SECRET_MAX_BYTES), or undefined. */
export function secretTooLarge(files: string[]): string | undefined {
  const bytes = files.reduce((n, f) => n + statSync(f).size, 0);
  if (bytes <= SECRET_MAX_BYTES) return undefined;
  return `${files.join(' + ')}: ${bytes} bytes, above the ${SECRET_MAX_BYTES} bytes one Kubernetes Secret holds ` +
    '(dynamollm-nats-auth, deploy/k8s/nats-secrets.sh): configure fewer pools or nodes, or serve users.conf from a volume (docs/SECURITY.md "Limits")';
}

const ids = (v: string | undefined, prefix: string): string[] => (v ?? `${prefix}-0,${prefix}-1`).split(',').map((s) => s.trim()).filter(Boolean);

/** The actors of a deployment: replica ids as given (or the StatefulSet pod names), nodes and pools from the config. */
export function deploymentActors(configText: string, o: { clusterManagers?: string; poolManagers?: string; gateways?: string }, where = 'config'): ClusterActors {
  const { cluster, gateway } = splitConfig(parseYaml(configText) ?? {}, where);
  return {
    clusterId: cluster.clusterId,
    clusterManagers: ids(o.clusterManagers, 'cluster-manager'),
    poolManagers: ids(o.poolManagers, 'pool-manager'),
    gateways: ids(o.gateways, 'gateway'),
    // each worker of a gateway replica (gateway.workers) speaks as `<id>-w<i>` with the replica's credentials
    gatewayWorkers: gateway.workers,
    nodes: cluster.servers,
    pools: poolsOf(cluster).map((p) => p.id),
  };
}

function main(): number {
  const { values } = parseArgs({
    options: {
      config: { type: 'string' }, out: { type: 'string' }, 'cluster-managers': { type: 'string' }, 'pool-managers': { type: 'string' },
      gateways: { type: 'string' }, routes: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || !values.config || !values.out) {
    process.stderr.write(USAGE + '\n');
    return values.help ? 0 : 2;
  }
  const a = deploymentActors(readFileSync(values.config, 'utf8'), { clusterManagers: values['cluster-managers'], poolManagers: values['pool-managers'], gateways: values.gateways }, `config ${values.config}`);
  const out = resolve(values.out);
  const auth = deploymentAuth(a, out, routeUrls(values.routes));
  const byRole = new Map<string, number>();
  for (const c of auth.creds.values()) byRole.set(c.identity.role, (byRole.get(c.identity.role) ?? 0) + 1);
  process.stdout.write(
    `cluster ${a.clusterId}: ${auth.creds.size} nkey users (${[...byRole].map(([r, n]) => `${n} ${r}`).join(', ')})\n` +
      `  servers: ${auth.usersFile} (as auth/users.conf beside nats.conf)\n` +
      `           ${auth.routesFile} (as auth/routes.conf: route password, secret)\n` +
      `  actors:  ${out}/keys-<role>/ (seed files, mode 0600; NATS_NKEY)\n`,
  );
  const tooLarge = secretTooLarge([auth.usersFile, auth.routesFile]);
  if (tooLarge && (values.routes ?? 'k8s') === 'k8s') {
    process.stderr.write(`gen:nats-auth: ${tooLarge}\n`);
    return 1;
  }
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exit(main());

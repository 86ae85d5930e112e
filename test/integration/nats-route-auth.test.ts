/**
 * The shipped cluster config (deploy/nats/cluster.conf, the same cluster block as deploy/k8s/nats.conf) on real
 * nats-servers, with the files `npm run gen:nats-auth` writes beside it: two servers holding the generated route
 * password form a cluster; a server whose route carries no credentials, or another password, is refused and never
 * becomes a route (so it reads no subject of the cluster).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { deploymentAuth, renderRoutesFile } from '../../src/runtime/nats-server-config.ts';
import { deploymentActors } from '../../src/cli/gen-nats-auth.ts';
import { REPO_ROOT, startNatsServer, type TestNats } from '../helpers/nats.ts';
import { freePort } from '../helpers/net.ts';

const started: TestNats[] = [];
afterAll(async () => {
  await Promise.all(started.map((s) => s.stop()));
});

/** deploy/nats/cluster.conf with its listeners on loopback ports (nothing else changed). */
const shipped = (routePort: number, httpPort: number): string => {
  const text = readFileSync(join(REPO_ROOT, 'deploy/nats/cluster.conf'), 'utf8');
  const out = text.replace(/^http: 127\.0\.0\.1:8222$/m, `http: 127.0.0.1:${httpPort}`).replace(/^ {2}listen: 0\.0\.0\.0:6222$/m, `  listen: 127.0.0.1:${routePort}`);
  expect(out).toContain(`listen: 127.0.0.1:${routePort}`);
  expect(out).toContain(`http: 127.0.0.1:${httpPort}`);
  return out;
};

async function routez(httpPort: number): Promise<{ num_routes: number; routes: { remote_id: string }[] }> {
  const r = await fetch(`http://127.0.0.1:${httpPort}/routez`, { signal: AbortSignal.timeout(2000) });
  return (await r.json()) as { num_routes: number; routes: { remote_id: string }[] };
}

async function until(what: string, ok: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('NATS route authorization (deploy/nats/cluster.conf with gen:nats-auth\'s routes.conf)', () => {
  it('servers with the generated route password form a cluster; a route without it, or with another, is refused', async () => {
    const [r0, r1, ri, rj, h0, h1, hi, hj] = await Promise.all(Array.from({ length: 8 }, () => freePort()));
    const full = deploymentActors(readFileSync(join(REPO_ROOT, 'deploy/k8s/cluster.yaml'), 'utf8'), {});
    const out = mkdtempSync(join(tmpdir(), 'dyn-route-auth-'));
    const auth = deploymentAuth({ ...full, pools: full.pools.slice(0, 1) }, out, [`nats-route://127.0.0.1:${r0}`, `nats-route://127.0.0.1:${r1}`]);
    const users = readFileSync(auth.usersFile, 'utf8');
    const routes = readFileSync(auth.routesFile, 'utf8');
    expect(routes).toMatch(/^authorization \{ user: route, password: "[0-9a-f]{48}", timeout: 2 \}$/m);

    const server = async (i: string, routePort: number, httpPort: number, routesConf: string) => {
      const dir = mkdtempSync(join(tmpdir(), 'dyn-route-conf-'));
      const conf = join(dir, 'cluster.conf');
      writeFileSync(conf, shipped(routePort, httpPort));
      const s = await startNatsServer({ conf, env: { DYN_NATS_NAME: `nats-${i}`, DYN_NATS_LEASE_TAG: `dyn-lease-${i}` }, files: { 'auth/users.conf': users, 'auth/routes.conf': routesConf } });
      started.push(s);
      return s;
    };
    await server('0', r0, h0, routes);
    await server('1', r1, h1, routes);
    await until('nats-0 and nats-1 routed to each other', async () => (await routez(h0)).num_routes === 1 && (await routez(h1)).num_routes === 1, 15_000);

    // a server that knows the route port but not the password: no credentials in its route URL, or its own password
    await server('x', ri, hi, `routes: [\n  nats-route://127.0.0.1:${r0}\n  nats-route://127.0.0.1:${r1}\n]\n`);
    await server('y', rj, hj, renderRoutesFile([`nats-route://127.0.0.1:${r0}`, `nats-route://127.0.0.1:${r1}`], randomBytes(24).toString('hex'), []));
    // nats-server retries an explicit route every second: give the intruders several tries
    await new Promise((r) => setTimeout(r, 4000));
    for (const h of [hi, hj]) expect((await routez(h)).num_routes, `intruder on ${h}`).toBe(0);
    for (const h of [h0, h1]) expect((await routez(h)).num_routes, `member on ${h}`).toBe(1);
  }, 40_000);
});

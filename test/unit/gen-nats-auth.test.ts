/**
 * `npm run gen:nats-auth` against the one-Secret limit of deploy/k8s: users.conf grows with the possible instance ids
 * (pools x nodes x TP groups), and deploy/k8s/nats-secrets.sh puts it with routes.conf in one Secret (1 MiB at most).
 * Past that the generator exits 1 with the k8s routes; with other routes (files on disk) it does not refuse.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SECRET_MAX_BYTES, secretTooLarge } from '../../src/cli/gen-nats-auth.ts';

const dir = mkdtempSync(join(tmpdir(), 'gen-nats-auth-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** deploy/k8s/cluster.yaml with `n` 8-GPU servers. */
function k8sConfig(n: number): string {
  const text = readFileSync('deploy/k8s/cluster.yaml', 'utf8');
  const servers = Array.from({ length: n }, (_, i) => `  - { id: gpu-node-${i}, gpus: 8 }\n`).join('');
  const out = text.replace(/(servers:[^\n]*\n)( {2}- \{[^\n]*\n)+/, (_, head: string) => head + servers);
  expect(out.match(/id: gpu-node-/g)).toHaveLength(n);
  const file = join(dir, `cluster-${n}.yaml`);
  writeFileSync(file, out);
  return file;
}

function gen(n: number, routes?: string) {
  const out = join(dir, `out-${n}-${routes ?? 'k8s'}`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', resolve('src/cli/gen-nats-auth.ts'), '--config', k8sConfig(n), '--out', out, ...(routes ? ['--routes', routes] : [])], { encoding: 'utf8', timeout: 240_000 });
  const size = (f: string) => statSync(join(out, 'nats-auth', f)).size;
  return { status: r.status, stderr: r.stderr, bytes: size('users.conf') + size('routes.conf') };
}

describe('gen:nats-auth and the 1 MiB Secret', () => {
  it('deploy/k8s with 5 GPU nodes fits; with 6 it exits 1 and says why (k8s routes); other routes do not refuse', () => {
    const five = gen(5);
    expect(five.bytes).toBeLessThanOrEqual(SECRET_MAX_BYTES);
    expect(five.status, five.stderr).toBe(0);
    const six = gen(6);
    expect(six.bytes).toBeGreaterThan(SECRET_MAX_BYTES);
    expect(six.status).toBe(1);
    expect(six.stderr).toMatch(new RegExp(`${six.bytes} bytes, above the 1048576 bytes one Kubernetes Secret holds`));
    expect(gen(6, 'hosts').status).toBe(0);
    // three runs of the CLI, each ~5 s of CPU (tsx's start and the nkeys of six nodes' users): 86 s at load 18 on 2 cores
  }, 600_000);

  it('secretTooLarge: the files together, refused above 1 MiB only', () => {
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    writeFileSync(a, Buffer.alloc(SECRET_MAX_BYTES - 10));
    writeFileSync(b, Buffer.alloc(10));
    expect(secretTooLarge([a, b])).toBeUndefined();
    writeFileSync(b, Buffer.alloc(11));
    expect(secretTooLarge([a, b])).toContain(`${SECRET_MAX_BYTES + 1} bytes`);
  });
});

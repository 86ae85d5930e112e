/**
 * deploy/k8s/nats-secrets.sh as an operator runs it, with the real `npm run gen:nats-auth` and the real kubectl
 * rendering each Secret (`create secret --dry-run=client -o yaml`, no cluster needed), every call that would reach
 * a cluster (apply, delete) recorded instead: the workloads' Secrets are applied, the admin and observer seeds go
 * to the operator's private directory only (never into an applied object) and their Secrets are deleted.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const tmp = mkdtempSync(join(tmpdir(), 'nats-secrets-sh-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function realKubectl(): string {
  for (const p of (process.env.PATH ?? '').split(':')) if (p && existsSync(join(p, 'kubectl'))) return join(p, 'kubectl');
  throw new Error('kubectl not found: install Debian kubernetes-client (.ci/run does)');
}

/** deploy/k8s/cluster.yaml with one GPU node (fewer keys to make: a faster run). */
function oneNodeConfig(): string {
  const text = readFileSync('deploy/k8s/cluster.yaml', 'utf8');
  const out = text.replace(/(servers:[^\n]*\n)( {2}- \{[^\n]*\n)+/, (_, head: string) => `${head}  - { id: gpu-node-0, gpus: 8 }\n`);
  expect(out.match(/id: gpu-node-/g)).toHaveLength(1);
  const file = join(tmp, 'cluster.yaml');
  writeFileSync(file, out);
  return file;
}

/** runs the script with a kubectl that renders for real and records the rest (args, then stdin for apply) in `log`. */
function run(keysDir: string) {
  const bin = join(tmp, 'bin');
  const log = join(tmp, `kubectl-${readdirSync(tmp).length}.log`);
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, 'kubectl'), [
    '#!/bin/sh',
    `case " $* " in *" --dry-run=client "*) exec "${realKubectl()}" "$@";; esac`,
    `echo "KUBECTL $*" >> "${log}"`,
    `case " $* " in *" apply "*) cat >> "${log}";; esac`,
    '',
  ].join('\n'));
  chmodSync(join(bin, 'kubectl'), 0o755);
  const r = spawnSync('sh', ['deploy/k8s/nats-secrets.sh', oneNodeConfig(), 'dyn-test'], {
    env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, KUBECONFIG: join(tmp, 'no-kubeconfig'), OPERATOR_KEYS_DIR: keysDir },
    encoding: 'utf8',
    timeout: 240_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, log: existsSync(log) ? readFileSync(log, 'utf8') : '' };
}

describe('deploy/k8s/nats-secrets.sh', () => {
  it('applies the workloads\' Secrets; the admin and observer seeds go to the operator\'s directory (0700, files 0600) only, their Secrets deleted', () => {
    const keys = join(tmp, 'operator', 'keys');
    const r = run(keys);
    expect(r.status, r.stderr).toBe(0);
    const applied = [...r.log.matchAll(/^kind: Secret\n(?:.*\n)*?metadata:\n(?: {2}.*\n)*? {2}name: (\S+)$/gm)].map((m) => m[1]).sort();
    expect(applied).toEqual(['dynamollm-nats-auth', 'dynamollm-nats-keys-cluster', 'dynamollm-nats-keys-gateway', 'dynamollm-nats-keys-node-gpu-node-0', 'dynamollm-nats-keys-pool']);
    expect(r.log).toMatch(/^KUBECTL -n dyn-test delete secret dynamollm-nats-keys-admin --ignore-not-found$/m);
    expect(r.log).toMatch(/^KUBECTL -n dyn-test delete secret dynamollm-nats-keys-observer --ignore-not-found$/m);
    expect(statSync(keys).mode & 0o777).toBe(0o700);
    expect(readdirSync(keys).sort()).toEqual(['admin.nk', 'observer.nk']);
    for (const f of ['admin.nk', 'observer.nk']) {
      const seed = readFileSync(join(keys, f), 'utf8');
      expect(seed, f).toMatch(/^SU[A-Z2-7]{56}\s*$/); // an nkey user seed
      expect(statSync(join(keys, f)).mode & 0o777, f).toBe(0o600);
      // nowhere in what went to the cluster, raw or as a Secret's base64
      expect(r.log).not.toContain(seed.trim());
      expect(r.log).not.toContain(Buffer.from(seed).toString('base64'));
    }
    // the workloads' seeds did go (the log is the applied objects, not empty)
    expect(r.log).toMatch(/^ {2}gateway-gateway-0\.nk: \S+$/m);
    expect(r.stdout).toContain(`they are in ${keys} (admin.nk, observer.nk; mode 0600)`);
  }, 300_000);

  it('refuses an operator directory that is a symbolic link, before making any key', () => {
    const target = join(tmp, 'elsewhere');
    mkdirSync(target);
    const link = join(tmp, 'link');
    symlinkSync(target, link);
    const r = run(link);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('is a symbolic link');
    expect(readdirSync(target)).toEqual([]);
    expect(r.log).toBe('');
  });
});

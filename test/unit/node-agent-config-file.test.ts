/**
 * The config a node agent gives its instance managers (with the NATS credentials): one file per node, at a stable
 * path in the node's adoption directory, mode 0600 in a 0700 directory, replaced atomically by each start of the
 * node agent, so restarts (a supervisor's, a chaos run's) leave no credentials file behind each.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createActor, writeNodeConfig } from '../../actors/node-agent/main.ts';

const clusterId = `cfgtest-${process.pid}-${Date.now()}`;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const dynNodeDirs = () => readdirSync(tmpdir()).filter((f) => f.startsWith('dyn-node-')).length;

function make(password: string) {
  return createActor({
    id: 'n0',
    config: { clusterId, servers: [{ id: 'n0', gpus: 8 }] },
    nats: { servers: ['nats://127.0.0.1:1'], user: 'node', pass: password },
    log: pino({ level: 'silent' }),
    extra: {},
  });
}

describe('node agent: its instance managers\' config file', () => {
  it('two starts of one node leave one file, mode 0600 in a 0700 directory, holding the latest credentials', () => {
    const before = dynNodeDirs();
    const a = make('first-secret');
    dirs.push(a.adoptDir);
    const b = make('second-secret');
    expect(b.configPath).toBe(a.configPath);
    expect(dirname(dirname(b.configPath))).toBe(b.adoptDir);
    expect(dynNodeDirs()).toBe(before);
    expect(readdirSync(dirname(b.configPath))).toEqual([b.configPath.split('/').pop()]);
    expect(statSync(b.configPath).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(b.configPath)).mode & 0o777).toBe(0o700);
    const cfg = JSON.parse(readFileSync(b.configPath, 'utf8')) as { clusterId: string; nats: { url: string[]; pass: string } };
    expect(cfg.clusterId).toBe(clusterId);
    expect(cfg.nats.url).toEqual(['nats://127.0.0.1:1']);
    expect(cfg.nats.pass).toBe('second-secret');
  });

  it('a temporary file of a writer that died is removed; the file is replaced whole', () => {
    const a = make('s');
    dirs.push(a.adoptDir);
    // pid 2^22+1 is above Linux's pid_max: no such process
    const stale = `${a.configPath}.4194305.tmp`;
    writeFileSync(stale, '{"half', { mode: 0o600 });
    writeNodeConfig(a.configPath, '{"v":2}');
    expect(existsSync(stale)).toBe(false);
    expect(readFileSync(a.configPath, 'utf8')).toBe('{"v":2}');
    expect(readdirSync(dirname(a.configPath))).toEqual(['node.json']);
  });
});

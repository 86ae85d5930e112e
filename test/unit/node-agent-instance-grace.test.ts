/**
 * A node agent's grace before it SIGKILLs an instance manager covers that instance manager's own shutdown bound (its
 * process built from the shipped config, deploy/k8s/cluster.yaml), and the node agent's stop hook waits that grace out.
 */
import { readFileSync } from 'node:fs';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { splitConfig } from '../../actors/gateway/config.ts';
import { createActor as createInstance } from '../../actors/instance-manager/main.ts';
import { INSTANCE_STOP_GRACE_MS, NODE_AGENT_STOP_HOOK_MS } from '../../actors/node-agent/main.ts';

describe('node agent: its instance managers\' grace', () => {
  it('is at least the shutdown limit of an instance manager made from the shipped config, and its stop hook covers it', () => {
    const { clusterRaw } = splitConfig(parse(readFileSync('deploy/k8s/cluster.yaml', 'utf8')), 'deploy/k8s/cluster.yaml');
    const inst = createInstance({
      id: 'grace-i0',
      config: clusterRaw,
      nats: { servers: ['nats://127.0.0.1:1'] },
      log: pino({ level: 'silent' }),
      extra: { pool: 'p0', tp: '2', gpus: '0,1' },
    });
    const limitMs = inst.shutdownLimitMs();
    expect(limitMs).toBeGreaterThan(0);
    expect(INSTANCE_STOP_GRACE_MS, `grace ${INSTANCE_STOP_GRACE_MS} ms vs the instance manager's shutdown limit ${limitMs} ms`).toBeGreaterThanOrEqual(limitMs);
    expect(NODE_AGENT_STOP_HOOK_MS).toBeGreaterThan(INSTANCE_STOP_GRACE_MS);
  });
});

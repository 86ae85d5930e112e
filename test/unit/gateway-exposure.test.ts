/**
 * The gateway is secure by default (actors/gateway/config.ts checkExposure): on a non-loopback address it refuses to
 * start without API keys unless gateway.allowUnauthenticated says so, and it refuses a template's placeholder key or
 * metrics token; `dynamollm actor gateway` exits 2 (a usage error, not retryable) with the reason before it connects.
 * The Kubernetes manifests ship no usable key: the Secret is a template outside the kustomization, and its values
 * are refused.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { parse } from 'yaml';
import pino from 'pino';
import { applyOverrides, gatewaySchema, isLoopback, splitConfig, unauthenticatedWarning } from '../../actors/gateway/config.ts';
import { createActor as createGateway } from '../../actors/gateway/main.ts';
import { runActor } from '../../src/cli/commands/actor.ts';
import { ACTOR_REGISTRY } from '../../src/cli/actor-registry.ts';

const KEY = 'sk-0123456789abcdef';
const k8sGateway = splitConfig(parse(readFileSync('deploy/k8s/cluster.yaml', 'utf8')), 'deploy/k8s/cluster.yaml').gateway;

describe('gateway exposure', () => {
  it('loopback hosts: 127.0.0.0/8, ::1, localhost; others are not', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) expect(isLoopback(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.5', 'gateway.example.com', '128.0.0.1']) expect(isLoopback(h), h).toBe(false);
  });

  it('refuses a non-loopback host without keys; keys (file or env) or allowUnauthenticated let it start', () => {
    const open = gatewaySchema.parse({ host: '0.0.0.0' });
    expect(() => applyOverrides(open, {}, {})).toThrow(/gateway\.host 0\.0\.0\.0 is not a loopback address and no API keys are set.*allowUnauthenticated: true/);
    expect(() => applyOverrides(gatewaySchema.parse({}), { host: '10.0.0.5' }, {})).toThrow(/not a loopback address/);
    // an empty env value is no key
    expect(() => applyOverrides(open, {}, { DYNAMOLLM_API_KEYS: '' })).toThrow(/no API keys are set/);
    expect(applyOverrides(open, {}, { DYNAMOLLM_API_KEYS: KEY }).apiKeys).toEqual([KEY]);
    expect(applyOverrides(gatewaySchema.parse({ host: '0.0.0.0', apiKeys: [KEY] }), {}, {}).host).toBe('0.0.0.0');
    expect(applyOverrides(gatewaySchema.parse({ host: '0.0.0.0', allowUnauthenticated: true }), {}, {}).apiKeys).toEqual([]);
    expect(applyOverrides(open, { allowUnauthenticated: 'true' }, {}).allowUnauthenticated).toBe(true);
    // loopback without keys: the local quickstart's default
    expect(applyOverrides(gatewaySchema.parse({}), {}, {}).host).toBe('127.0.0.1');
  });

  it('refuses a placeholder key or metrics token, from the file or the env', () => {
    const g = gatewaySchema.parse({ host: '0.0.0.0' });
    expect(() => applyOverrides(g, {}, { DYNAMOLLM_API_KEYS: 'sk-change-me-0001' })).toThrow(/'sk-change-me-0001' is a placeholder/);
    expect(() => applyOverrides(gatewaySchema.parse({ apiKeys: [KEY, 'REPLACE-ME-KEY'] }), {}, {})).toThrow(/placeholder/);
    expect(() => applyOverrides(g, {}, { DYNAMOLLM_API_KEYS: KEY, DYNAMOLLM_METRICS_TOKEN: 'REPLACE-ME-METRICS-TOKEN' })).toThrow(/metricsToken .* is a placeholder/);
    expect(applyOverrides(g, {}, { DYNAMOLLM_API_KEYS: KEY, DYNAMOLLM_METRICS_TOKEN: 'a1b2c3d4e5f60718293a' }).metricsToken).toBe('a1b2c3d4e5f60718293a');
  });

  it('the Kubernetes gateway (0.0.0.0) refuses the shipped Secret template and an empty key list', () => {
    expect(k8sGateway.host).toBe('0.0.0.0');
    const secret = parse(readFileSync('deploy/k8s/secrets.example.yaml', 'utf8')) as { stringData: Record<string, string> };
    expect(() => applyOverrides(k8sGateway, {}, { DYNAMOLLM_API_KEYS: secret.stringData.DYNAMOLLM_API_KEYS })).toThrow(/placeholder/);
    expect(() => applyOverrides(k8sGateway, {}, { DYNAMOLLM_API_KEYS: KEY, DYNAMOLLM_METRICS_TOKEN: secret.stringData.DYNAMOLLM_METRICS_TOKEN })).toThrow(/placeholder/);
    expect(() => applyOverrides(k8sGateway, {}, {})).toThrow(/no API keys are set/);
    expect(readFileSync('deploy/k8s/kustomization.yaml', 'utf8')).not.toMatch(/secrets\.example\.yaml\s*$/m);
  });

  it('a gateway started on a non-loopback address by allowUnauthenticated logs a warning naming its host and port', async () => {
    const lines: { level: number; msg: string; host?: string; port?: number }[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as (typeof lines)[number]) });
    const saved = process.env.DYNAMOLLM_API_KEYS;
    delete process.env.DYNAMOLLM_API_KEYS;
    // its start binds the port before it dials NATS (none answers here): the warning comes with the bind
    const gw = createGateway({ id: 'gw-open', config: { gateway: { host: '0.0.0.0', port: 0, allowUnauthenticated: true, dashboard: false } }, nats: { servers: ['nats://127.0.0.1:1'] }, log, extra: {} });
    const started = gw.start().catch(() => undefined);
    try {
      for (let t = 0; t < 5000 && !lines.some((l) => /gateway listening/.test(l.msg)); t += 10) await new Promise((r) => setTimeout(r, 10));
      const warn = lines.find((l) => l.level === 40 && /UNAUTHENTICATED/.test(l.msg));
      expect(warn, JSON.stringify(lines.map((l) => l.msg))).toBeDefined();
      expect(warn!.msg).toContain(`0.0.0.0:${gw.port}`);
      expect(warn!.msg).toContain('gateway.allowUnauthenticated: true');
    } finally {
      await gw.stop();
      await started;
      if (saved !== undefined) process.env.DYNAMOLLM_API_KEYS = saved;
    }
    // keys, or a loopback host: no warning
    expect(unauthenticatedWarning({ host: '0.0.0.0', apiKeys: [KEY], allowUnauthenticated: true }, 8080)).toBeUndefined();
    expect(unauthenticatedWarning({ host: '127.0.0.1', apiKeys: [], allowUnauthenticated: true }, 8080)).toBeUndefined();
    expect(unauthenticatedWarning({ host: '::', apiKeys: [], allowUnauthenticated: true }, 8080)).toMatch(/on \[::\]:8080/);
  });

  it('`dynamollm actor gateway` on 0.0.0.0 without keys exits 2 with the reason, before any connection', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gw-exposure-'));
    const file = join(dir, 'open.yaml');
    writeFileSync(file, 'gateway:\n  host: 0.0.0.0\n  port: 0\n');
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const saved = process.env.DYNAMOLLM_API_KEYS;
    delete process.env.DYNAMOLLM_API_KEYS;
    try {
      const code = await runActor(['gateway', '--id', 'gw-x', '--config', file, '--nats', 'nats://127.0.0.1:1'], ACTOR_REGISTRY);
      expect(code).toBe(2);
      expect(err.mock.calls.map((c) => String(c[0])).join('')).toMatch(/not a loopback address and no API keys are set/);
    } finally {
      err.mockRestore();
      if (saved !== undefined) process.env.DYNAMOLLM_API_KEYS = saved;
    }
  });
});

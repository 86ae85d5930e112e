/**
 * deploy/systemd: `systemd-analyze security --offline=true` rates every unit MEDIUM or better (exposure
 * < 7.0; the units reach OK), the units run the compiled CLI's `actor` command (no TypeScript at run time),
 * the node agent drains its engines before any gets a signal (KillMode=mixed: SIGTERM to the agent
 * alone, which drains its instance managers, each stopping its own engine), every actor serves its
 * health endpoints (the managers and the node agent with --health on loopback, the gateway on its HTTP port), and
 * a usage error's exit (2: a config the actor refuses) is not restarted, and every actor's TimeoutStopSec covers its process's shutdown bound by its deadlines (src/runtime/actor.ts).
 * Without systemd-analyze (it ships with systemd) the rating is skipped with a message; the directive checks
 * still run.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { shutdownLimitMs } from '../../src/runtime/actor.ts';
import { gatewaySchema } from '../../actors/gateway/config.ts';
import { NODE_AGENT_SHUTDOWN_LIMIT_MS } from '../../actors/node-agent/deadlines.ts';
import { gatewayShutdownLimitMs } from '../../actors/gateway/deadlines.ts';
import { EXIT_USAGE } from '../../src/cli/program.ts';

const DIR = join('deploy', 'systemd');
const units = readdirSync(DIR).filter((f) => f.endsWith('.service'));
const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));
const directives = (f: string) => {
  const m = new Map<string, string[]>();
  for (const l of readFileSync(join(DIR, f), 'utf8').split('\n')) {
    const r = /^([A-Za-z]+)=(.*)$/.exec(l.trim());
    if (r) m.set(r[1]!, [...(m.get(r[1]!) ?? []), r[2]!]);
  }
  return m;
};

describe('systemd units', () => {
  it.skipIf(!analyze)('systemd-analyze security rates every unit MEDIUM or better', () => {
    for (const u of units) {
      const out = execFileSync(analyze!, ['security', '--offline=true', '--no-pager', join(DIR, u)], { encoding: 'utf8' });
      const m = /Overall exposure level for \S+: ([\d.]+) (\w+)/.exec(out);
      expect(m, u).toBeTruthy();
      expect(Number(m![1]), `${u}: ${m![0]}`).toBeLessThan(7);
      expect(['SAFE', 'OK', 'MEDIUM'], u).toContain(m![2]);
    }
  });
  if (!analyze) console.warn('systemd-analyze not found: the security rating is not checked (install systemd)');

  it('hardening directives are present on every unit', () => {
    for (const u of units) {
      const d = directives(u);
      for (const k of ['NoNewPrivileges', 'ProtectSystem', 'ProtectHome', 'PrivateTmp', 'RestrictNamespaces', 'SystemCallFilter', 'CapabilityBoundingSet', 'UMask']) expect(d.has(k), `${u}: ${k}`).toBe(true);
      expect(d.get('ProtectSystem')![0], u).toBe('strict');
    }
  });

  it('the dynamollm units run the compiled CLI (`actor <kind>`), credentials from the environment', () => {
    for (const u of units.filter((x) => x !== 'dynamollm-nats.service')) {
      const d = directives(u);
      const exec = d.get('ExecStart')![0]!;
      expect(exec, u).toMatch(/\/usr\/bin\/node \/opt\/dynamollm\/bin\/dynamollm\.js actor (gateway|cluster|pool|node) /);
      expect(exec, u).not.toMatch(/tsx|\.ts\b/);
      // its own nkey seed (per-actor NATS user), never a role password
      expect(d.get('Environment')!.some((e) => /^NATS_NKEY(_DIR)?=\/etc\/dynamollm\/nats-keys/.test(e)), u).toBe(true);
      expect(d.get('Environment')!.some((e) => /^NATS_(USER|PASSWORD)=/.test(e)), u).toBe(false);
      expect(d.get('EnvironmentFile'), u).toBeTruthy();
      // a usage error (a config the actor refuses) is not restarted: the same start would fail again
      expect(d.get('RestartPreventExitStatus'), u).toEqual([String(EXIT_USAGE)]);
    }
  });

  it('every manager and agent unit serves /livez and /readyz (--health) on loopback, each on its own port', () => {
    const ports = new Map<string, string>();
    for (const u of units.filter((x) => x !== 'dynamollm-nats.service' && x !== 'dynamollm-gateway@.service')) {
      const exec = directives(u).get('ExecStart')![0]!;
      const m = /--health (\S+?):(\$\(\(\d+ \+ %i\)\)|\d+)'?$/.exec(exec);
      expect(m, `${u}: ${exec}`).toBeTruthy();
      expect(m![1], u).toBe('127.0.0.1');
      const base = /\d+/.exec(m![2]!)![0];
      expect([...ports.values()], `${u} shares port ${base}`).not.toContain(base);
      ports.set(u, base);
    }
    expect([...ports.keys()].sort()).toEqual(['dynamollm-cluster@.service', 'dynamollm-node-agent.service', 'dynamollm-pool@.service']);
    // the gateway serves them on its HTTP port
    expect(directives('dynamollm-gateway@.service').get('ExecStart')![0]).toMatch(/--set port=/);
  });

  it('the node agent drains its engines before they get a signal', () => {
    const d = directives('dynamollm-node-agent.service');
    expect(d.get('KillMode')).toEqual(['mixed']);
    expect(d.get('KillSignal')).toEqual(['SIGTERM']);
    expect(Number(d.get('TimeoutStopSec')![0])).toBeGreaterThanOrEqual(60);
  });

  it('each actor unit gives its process its shutdown bound before SIGKILL (the gateway with its default drain settings)', () => {
    const bound: Record<string, number> = {
      'dynamollm-gateway@.service': gatewayShutdownLimitMs(gatewaySchema.parse({})),
      'dynamollm-cluster@.service': shutdownLimitMs({}),
      'dynamollm-pool@.service': shutdownLimitMs({}),
      'dynamollm-node-agent.service': NODE_AGENT_SHUTDOWN_LIMIT_MS,
    };
    for (const [u, ms] of Object.entries(bound)) expect(Number(directives(u).get('TimeoutStopSec')![0]) * 1000, u).toBeGreaterThanOrEqual(ms);
  });
});

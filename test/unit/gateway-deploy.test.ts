/**
 * Every deploy manifest is valid YAML (k8s documents carry apiVersion/kind/metadata.name; kubectl's view of
 * them: test/unit/k8s-manifests.test.ts), the systemd
 * units have their sections, the Grafana dashboard is valid JSON querying only metric families the
 * gateway exports, and deploy/local.yaml is a valid cluster + gateway config.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse } from 'yaml';
import { splitConfig } from '../../actors/gateway/config.ts';
import { TelemetryMetrics } from '../../src/telemetry/metrics.ts';
import { poolManagerMetrics } from '../../actors/pool-manager/metrics.ts';

const walk = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));

describe('deploy files', () => {
  it('all YAML parses; k8s documents are well-formed', () => {
    const files = walk('deploy').filter((f) => /\.ya?ml$/.test(f));
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) {
      const docs = parseAllDocuments(readFileSync(f, 'utf8'));
      for (const d of docs) expect(d.errors, f).toEqual([]);
      // deploy/k8s/cluster.yaml is the actors' config (a configMapGenerator file), not a k8s object
      if (!f.startsWith(join('deploy', 'k8s')) || f.endsWith('cluster.yaml')) continue;
      for (const d of docs) {
        const o = d.toJSON() as { apiVersion?: string; kind?: string; metadata?: { name?: string } };
        expect(o.apiVersion, f).toBeTruthy();
        expect(o.kind, f).toBeTruthy();
        if (o.kind !== 'Kustomization') expect(o.metadata?.name, f).toBeTruthy();
      }
    }
  });

  it('systemd units have Unit/Service/Install and an ExecStart', () => {
    const units = walk(join('deploy', 'systemd')).filter((f) => f.endsWith('.service'));
    expect(units.length).toBeGreaterThanOrEqual(5);
    for (const u of units) {
      const t = readFileSync(u, 'utf8');
      for (const s of ['[Unit]', '[Service]', '[Install]']) expect(t, u).toContain(s);
      expect(t, u).toMatch(/^ExecStart=\S+/m);
    }
  });

  it('grafana dashboard queries only exported families (the gateway\'s and the pool managers\')', async () => {
    const d = JSON.parse(readFileSync(join('deploy', 'grafana', 'dynamollm.json'), 'utf8')) as { panels: { targets: { expr: string }[] }[] };
    const exported = new Set([
      ...(await new TelemetryMetrics({ processMetrics: false }).registry.getMetricsAsJSON()).map((m) => m.name),
      ...(await poolManagerMetrics('pm-0', () => []).registry.getMetricsAsJSON()).map((m) => m.name),
    ]);
    const names = d.panels.flatMap((p) => p.targets.flatMap((t) => t.expr.match(/dynamollm_[a-z_]+/g) ?? []));
    expect(names.length).toBeGreaterThan(10);
    for (const n of names) expect(exported.has(n.replace(/_bucket$/, '')), n).toBe(true);
  });

  it('deploy/local.yaml is a valid config with the documented defaults', () => {
    const { cluster, gateway } = splitConfig(parse(readFileSync(join('deploy', 'local.yaml'), 'utf8')));
    expect(cluster.servers).toHaveLength(4);
    expect(cluster.model).toBe('llama2-70b');
    expect(gateway.port).toBe(8000);
  });
});

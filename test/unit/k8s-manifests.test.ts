/**
 * deploy/k8s as kubectl sees it: rendered with `kubectl kustomize` (a strict YAML parser: an unquoted `?`
 * in a probe path breaks it, npm yaml does not), then every object validated against the Kubernetes OpenAPI
 * schemas twice: kubernetes-models' validators (the OpenAPI schema compiled: required fields, types, enums,
 * formats) and a TypeScript check of the objects as literals of kubernetes-models' API types (unknown or
 * misspelt fields anywhere, which the OpenAPI schema alone admits). Then what the deployment needs: probes
 * with liveness apart from readiness, PDBs, securityContext, resources, no API token, termination grace periods that
 * cover each actor's shutdown bound (the gateway's from the shipped config) and a gateway that serves on until its
 * readiness probe saw it leave, NATS x3 with JetStream R3 and its config from the nats-config ConfigMap, and the
 * images of deploy/docker.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { splitConfig } from '../../actors/gateway/config.ts';
import { leasePlacementTag } from '../../protocols/subjects.ts';
import { shutdownLimitMs } from '../../src/runtime/actor.ts';
import { NODE_AGENT_SHUTDOWN_LIMIT_MS } from '../../actors/node-agent/deadlines.ts';
import { gatewayShutdownLimitMs } from '../../actors/gateway/deadlines.ts';
import { routeUrls } from '../../src/cli/gen-nats-auth.ts';
import { engineConfigOf } from '../../actors/instance-manager/engine-config.ts';

type Obj = Record<string, any>;

function kubectl(): string {
  for (const p of (process.env.PATH ?? '').split(':')) if (p && existsSync(join(p, 'kubectl'))) return join(p, 'kubectl');
  throw new Error('kubectl not found: install Debian kubernetes-client (.ci/run does)');
}

const rendered = execFileSync(kubectl(), ['kustomize', 'deploy/k8s'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const objs: Obj[] = parseAllDocuments(rendered).map((d) => d.toJSON() as Obj).filter(Boolean);
const find = (kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata?.name === name);
const workloads = objs.filter((o) => ['Deployment', 'StatefulSet', 'DaemonSet'].includes(o.kind));
const NODES = (splitConfig(parse(readFileSync('deploy/k8s/cluster.yaml', 'utf8')), 'deploy/k8s/cluster.yaml').cluster.servers).map((s) => s.id);
/** workload names: the managers, the gateway, and one node agent per GPU node (node-agent-<node>) */
const ACTORS = ['cluster-manager', 'pool-manager', 'gateway', ...NODES.map((n) => `node-agent-${n}`)];
const isNodeAgent = (name: string) => name.startsWith('node-agent-');

/** kubernetes-models module of an object: 'apps/v1' + 'Deployment' -> kubernetes-models/apps/v1/Deployment */
const modelPath = (o: Obj) => `kubernetes-models/${o.apiVersion}/${o.kind}`;

describe('deploy/k8s rendered by kubectl kustomize', () => {
  it('renders every object', () => {
    const kinds = objs.map((o) => `${o.kind}/${o.metadata.name}`);
    for (const k of ['Namespace/dynamollm', 'StatefulSet/nats', 'StatefulSet/cluster-manager', 'StatefulSet/pool-manager', 'StatefulSet/gateway', ...NODES.map((n) => `DaemonSet/node-agent-${n}`), 'Service/gateway', 'Service/nats']) {
      expect(kinds).toContain(k);
    }
  });

  it('validates against the Kubernetes OpenAPI schemas (kubernetes-models validators)', async () => {
    const errors: string[] = [];
    for (const o of objs) {
      const mod = (await import(modelPath(o))) as Record<string, new (d: Obj) => { validate(): void }>;
      try {
        new mod[o.kind]!(o).validate();
      } catch (err) {
        errors.push(`${o.kind}/${o.metadata?.name}: ${(err as Error).message}`);
      }
    }
    expect(errors).toEqual([]);
  });

  it('has no unknown field anywhere (type check against the Kubernetes API types); the check can fail', () => {
    // one program, two files: the rendered objects (no diagnostic wanted) and a misspelt field (one wanted)
    const good = resolve('test/artifacts/k8s-manifests.typecheck.ts');
    const bad = resolve('test/artifacts/k8s-manifests.typecheck-bad.ts');
    const sources = new Map([
      [good, objs.map((o, i) => `import type { I${o.kind} as T${i} } from '${modelPath(o)}';`).join('\n') + '\n' + objs.map((o, i) => `export const o${i}: T${i} = ${JSON.stringify(o)};`).join('\n')],
      [bad, `import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';\nexport const d: IDeployment = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' }, spec: { selector: {}, template: { spec: { containers: [{ name: 'c', securityContex: {} }] } } } };`],
    ]);
    const options: ts.CompilerOptions = { strict: true, noEmit: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, skipLibCheck: true, types: [] };
    const host = ts.createCompilerHost(options);
    const getSourceFile = host.getSourceFile.bind(host);
    host.getSourceFile = (name, lang, ...rest) => (sources.has(resolve(name)) ? ts.createSourceFile(name, sources.get(resolve(name))!, lang) : getSourceFile(name, lang, ...rest));
    const fileExists = host.fileExists.bind(host);
    host.fileExists = (name) => sources.has(resolve(name)) || fileExists(name);
    const program = ts.createProgram([good, bad], options, host);
    const diags = (f: string) => ts.getPreEmitDiagnostics(program, program.getSourceFile(f)).map((d) => ts.flattenDiagnosticMessageText(d.messageText, ' '));
    expect(diags(good)).toEqual([]);
    expect(diags(bad).join('\n')).toMatch(/securityContex/);
  });

  it('every actor has liveness apart from readiness; the gateway on its serving port', () => {
    for (const name of ACTORS) {
      const w = workloads.find((o) => o.metadata.name === name)!;
      const c = w.spec.template.spec.containers[0];
      expect(c.livenessProbe.httpGet.path, name).toBe('/livez');
      expect(c.readinessProbe.httpGet.path, name).toBe('/readyz');
      if (name === 'gateway') expect(c.livenessProbe.httpGet.port).toBe('http');
      else expect(c.args).toEqual(expect.arrayContaining(['--health', '8081']));
    }
    const nats = find('StatefulSet', 'nats')!.spec.template.spec.containers[0];
    expect(nats.livenessProbe.httpGet.path).toBe('/healthz?js-enabled-only=true');
    expect(nats.readinessProbe.httpGet.path).toBe('/healthz?js-server-only=true');
  });

  it('PDBs, securityContext, resources and no API token on every workload', () => {
    const pdbs = objs.filter((o) => o.kind === 'PodDisruptionBudget');
    for (const w of workloads) {
      const name = w.metadata.name;
      const labels = w.spec.template.metadata.labels;
      expect(pdbs.some((p) => Object.entries(p.spec.selector.matchLabels).every(([k, v]) => labels[k] === v)), `PDB for ${name}`).toBe(true);
      const pod = w.spec.template.spec;
      expect(pod.automountServiceAccountToken, name).toBe(false);
      expect(find('ServiceAccount', pod.serviceAccountName), name).toBeTruthy();
      expect(pod.securityContext.seccompProfile.type, name).toBe('RuntimeDefault');
      for (const c of pod.containers) {
        expect(c.resources.requests.cpu, name).toBeTruthy();
        expect(c.resources.requests.memory, name).toBeTruthy();
        expect(c.resources.limits.memory, name).toBeTruthy();
        if (isNodeAgent(name)) {
          expect(c.securityContext.privileged).toBe(true); // NVML clock locking
          continue;
        }
        expect(pod.securityContext.runAsNonRoot, name).toBe(true);
        expect(c.securityContext, name).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
      }
    }
    // no component calls the Kubernetes API: no Role, ClusterRole or binding at all
    expect(objs.filter((o) => /Role/.test(o.kind))).toEqual([]);
  });

  it('termination: each pod\'s grace covers its preStop and its process\'s shutdown bound (the gateway\'s from the shipped config); the gateway stays serving until its readiness probe has seen it leave', () => {
    const cfg = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('dynamollm-config-'))!;
    const { gateway } = splitConfig(parse(cfg.data['cluster.yaml']), 'deploy/k8s/cluster.yaml');
    /** a preStop hook's wait, ms: `sleep N` (exec) or none */
    const preStopMs = (c: Obj): number => {
      const cmd = (c.lifecycle?.preStop?.exec?.command ?? []) as string[];
      const m = /(?:^|\s)sleep\s+(\d+(?:\.\d+)?)\b/.exec(cmd.join(' '));
      if (c.lifecycle?.preStop && !m) throw new Error(`a preStop hook that is not a sleep: ${JSON.stringify(c.lifecycle.preStop)}`);
      return m ? Number(m[1]) * 1000 : 0;
    };
    // the longest each actor takes from its SIGTERM to its exit by its own deadlines (src/runtime/actor.ts): the
    // gateway's drain from its settings (delay, streams, margin; its workers' primary kills them past the same bound),
    // the managers' defaults, the node agents' stop hook that waits for their instance managers
    const bound: Record<string, number> = {
      gateway: gatewayShutdownLimitMs(gateway),
      'cluster-manager': shutdownLimitMs({}),
      'pool-manager': shutdownLimitMs({}),
      ...Object.fromEntries(NODES.map((n) => [`node-agent-${n}`, NODE_AGENT_SHUTDOWN_LIMIT_MS])),
    };
    for (const name of ACTORS) {
      const pod = workloads.find((o) => o.metadata.name === name)!.spec.template.spec;
      const c = pod.containers[0];
      const graceMs = (pod.terminationGracePeriodSeconds as number) * 1000;
      expect(graceMs, `${name}: terminationGracePeriodSeconds vs preStop ${preStopMs(c)} ms + shutdown bound ${bound[name]} ms`).toBeGreaterThanOrEqual(preStopMs(c) + bound[name]!);
    }
    // the gateway: after its SIGTERM it serves on (preStop, or the process's own gateway.drainDelayMs) for longer than
    // its readiness probe takes to see the 503 (period x failure threshold, the last probe's timeout)
    const gw = workloads.find((o) => o.metadata.name === 'gateway')!.spec.template.spec.containers[0];
    const rp = gw.readinessProbe as { periodSeconds?: number; failureThreshold?: number; timeoutSeconds?: number };
    const noticeMs = ((rp.periodSeconds ?? 10) * (rp.failureThreshold ?? 3) + (rp.timeoutSeconds ?? 1)) * 1000;
    expect(preStopMs(gw) + gateway.drainDelayMs, `serving on after SIGTERM vs the readiness probe's ${noticeMs} ms`).toBeGreaterThan(noticeMs);
    // and it waits for streams in flight after that
    expect(gateway.drainStreamsMs).toBeGreaterThan(0);
  });

  it('NATS: 3 replicas, config from ConfigMap nats-config key nats.conf, JetStream R3 in the actors config', () => {
    const sts = find('StatefulSet', 'nats')!;
    expect(sts.spec.replicas).toBe(3);
    const sources = sts.spec.template.spec.volumes.find((v: Obj) => v.name === 'config').projected.sources as Obj[];
    const cmName = sources.find((x) => x.configMap)!.configMap.name as string;
    expect(cmName).toMatch(/^nats-config-/); // the generated name (content hash)
    const cm = find('ConfigMap', cmName)!;
    expect(cm.data['nats.conf']).toBe(readFileSync('deploy/k8s/nats.conf', 'utf8'));
    expect(cm.data['nats.conf']).toMatch(/jetstream/);
    // started through a shell that gives each pod its own lease placement tag (server_tags [$DYN_NATS_LEASE_TAG]):
    // nats-<i> carries leasePlacementTag(i), so the lease buckets land one per server (src/runtime/lease.ts)
    const command = sts.spec.template.spec.containers[0].command as string[];
    expect(command.slice(0, 2)).toEqual(['/bin/sh', '-c']);
    expect(command[2]).toMatch(/exec nats-server -c \/etc\/nats\/nats\.conf /);
    expect(cm.data['nats.conf']).toMatch(/^server_tags: \[\$DYN_NATS_LEASE_TAG\]$/m);
    for (let i = 0; i < (sts.spec.replicas as number); i++) {
      const env = execFileSync('/bin/sh', ['-c', command[2]!.replace(/exec nats-server .*$/, 'exec printenv DYN_NATS_LEASE_TAG')], { env: { PATH: process.env.PATH, POD_NAME: `nats-${i}` }, encoding: 'utf8' });
      expect(env.trim()).toBe(leasePlacementTag(i));
    }
    const cfg = find('ConfigMap', objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('dynamollm-config-'))!.metadata.name)!;
    const { cluster } = splitConfig(parse(cfg.data['cluster.yaml']), 'deploy/k8s/cluster.yaml');
    expect(cluster.nats.jetstreamReplicas).toBe(3);
    expect([cluster.nats.url].flat()).toHaveLength(3);
    // R3 needs three JetStream servers in one cluster: the routes (gen:nats-auth's routes.conf, which nats.conf's
    // cluster block includes; its default names deploy/k8s's pods) name every pod of the StatefulSet
    const conf = cm.data['nats.conf'] as string;
    expect(/cluster\s*\{[^}]*\}/.exec(conf)?.[0]).toContain('include "auth/routes.conf"');
    const routes = routeUrls(undefined);
    const ns = sts.metadata.namespace as string;
    expect(routes).toEqual(Array.from({ length: sts.spec.replicas as number }, (_, i) => `nats://nats-${i}.${sts.spec.serviceName as string}.${ns}.svc:6222`));
    // every actor that creates KV buckets or streams reads the same config (R3), none overrides it
    for (const name of ACTORS) expect(JSON.stringify(workloads.find((o) => o.metadata.name === name)!.spec.template.spec.containers[0].args), name).not.toMatch(/jetstreamReplicas/);
  });

  it('each actor connects with its own nkey seed (NATS_NKEY named by its id) from its role\'s Secret only, and runs `dynamollm actor`', () => {
    const role = (name: string): string => (isNodeAgent(name) ? 'node' : ({ 'cluster-manager': 'cluster', 'pool-manager': 'pool', gateway: 'gateway' } as Record<string, string>)[name]!);
    for (const name of ACTORS) {
      const pod = workloads.find((o) => o.metadata.name === name)!.spec.template.spec;
      const c = pod.containers[0];
      expect(c.args.slice(0, 1), name).toEqual(['actor']);
      expect(c.env.some((e: Obj) => /^NATS_(USER|PASSWORD)$/.test(e.name)), name).toBe(false);
      const nkey = c.env.find((e: Obj) => e.name === 'NATS_NKEY')?.value as string;
      // the seed file of this actor's id: the id the command line gives (--id $(POD_NAME) / $(NODE_NAME))
      const args = c.args as string[];
      const idVar = args[args.indexOf('--id') + 1]!;
      expect(nkey, name).toBe(`/etc/dynamollm-keys/${role(name)}-${idVar}.nk`);
      const mount = c.volumeMounts.find((m: Obj) => m.mountPath === '/etc/dynamollm-keys');
      const secrets = pod.volumes.filter((v: Obj) => v.secret).map((v: Obj) => v.secret.secretName as string);
      // no other role's seeds; a node agent mounts its own node's Secret only (its seed and its instances')
      const own = isNodeAgent(name) ? `dynamollm-nats-keys-node-${name.slice('node-agent-'.length)}` : `dynamollm-nats-keys-${role(name)}`;
      expect(pod.volumes.find((v: Obj) => v.name === mount.name).secret.secretName, name).toBe(own);
      expect(secrets.filter((x: string) => x.startsWith('dynamollm-nats-keys-')), name).toEqual([own]);
      if (isNodeAgent(name)) {
        // pinned to its node by name, and the id it connects with is that node's name
        const node = name.slice('node-agent-'.length);
        expect(pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms).toEqual([{ matchFields: [{ key: 'metadata.name', operator: 'In', values: [node] }] }]);
        expect(c.env.find((e: Obj) => e.name === 'NODE_NAME').valueFrom.fieldRef.fieldPath).toBe('spec.nodeName');
        // instances get their seeds from the node's own directory
        const cfg = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('dynamollm-config-'))!;
        expect(splitConfig(parse(cfg.data['cluster.yaml']), 'cluster.yaml').cluster.nats.instanceKeysDir).toBe('/etc/dynamollm-keys');
      }
    }
    // the NATS servers read the users file, and no password at all
    const nats = find('StatefulSet', 'nats')!.spec.template.spec;
    const projected = nats.volumes.find((v: Obj) => v.name === 'config').projected.sources as Obj[];
    expect(projected.find((x) => x.secret)?.secret).toEqual({ name: 'dynamollm-nats-auth', items: [{ key: 'users.conf', path: 'auth/users.conf' }, { key: 'routes.conf', path: 'auth/routes.conf' }] });
    expect(readFileSync('deploy/k8s/nats.conf', 'utf8')).toContain('include "auth/users.conf"');
    // no Secret value is shipped: the gateway's keys are the operator's own (deploy/k8s/secrets.example.yaml)
    expect(objs.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name)).toEqual([]);
  });

  it('NetworkPolicies: NATS clients from the actor pods only, routes from NATS pods only, monitoring from none; the gateway\'s HTTP port open; the route secret mounted', () => {
    type Peer = { podSelector?: { matchLabels?: Record<string, string>; matchExpressions?: { key: string; operator: string; values: string[] }[] }; namespaceSelector?: unknown; ipBlock?: unknown };
    type Rule = { from?: Peer[]; ports?: { port: number | string; protocol?: string }[] };
    const policies = objs.filter((o) => o.kind === 'NetworkPolicy');
    const natsLabels = find('StatefulSet', 'nats')!.spec.template.metadata.labels as Record<string, string>;
    const selects = (p: Obj, labels: Record<string, string>) => Object.entries((p.spec.podSelector.matchLabels ?? {}) as Record<string, string>).every(([k, v]) => labels[k] === v) && !p.spec.podSelector.matchExpressions;
    const onNats = policies.filter((p) => selects(p, natsLabels) && (p.spec.policyTypes as string[]).includes('Ingress'));
    expect(onNats.length).toBeGreaterThan(0);
    // what each port admits, over every policy selecting the NATS pods (a policy's rules are unioned)
    const admits = (port: number): Peer[][] => onNats.flatMap((p) => (p.spec.ingress ?? []) as Rule[]).filter((r) => !r.ports || r.ports.some((x) => x.port === port)).map((r) => r.from ?? []);
    // a rule with no `from`, or an empty one, admits every source
    for (const port of [4222, 6222, 8222]) for (const from of admits(port)) expect(from.length, `port ${port}`).toBeGreaterThan(0);
    const peerNames = (port: number) => admits(port).flat().map((peer) => {
      expect(peer.namespaceSelector ?? peer.ipBlock, `port ${port}: pods of this namespace only`).toBeUndefined();
      const m = peer.podSelector?.matchLabels?.['app.kubernetes.io/name'];
      const e = peer.podSelector?.matchExpressions?.find((x) => x.key === 'app.kubernetes.io/name' && x.operator === 'In')?.values;
      return m !== undefined ? [m] : e ?? ['<any pod>'];
    }).flat().sort();
    const actorPods = [...new Set(workloads.filter((w) => w.metadata.name !== 'nats').map((w) => w.spec.template.metadata.labels['app.kubernetes.io/name'] as string))].sort();
    expect(peerNames(4222)).toEqual(actorPods);
    expect(peerNames(6222)).toEqual(['nats']);
    expect(admits(8222)).toEqual([]);
    // the gateways: their HTTP port from anywhere, nothing else
    const gwLabels = find('StatefulSet', 'gateway')!.spec.template.metadata.labels as Record<string, string>;
    const gwRules = policies.filter((p) => selects(p, gwLabels)).flatMap((p) => (p.spec.ingress ?? []) as Rule[]);
    expect(gwRules).toEqual([{ ports: [{ protocol: 'TCP', port: 8000 }] }]);
    // the route secret beside nats.conf, where its include looks for it
    const vol = (find('StatefulSet', 'nats')!.spec.template.spec.volumes as Obj[]).find((v) => v.name === 'config')!;
    const items = (vol.projected.sources as Obj[]).find((s) => s.secret?.name === 'dynamollm-nats-auth')!.secret.items as { key: string; path: string }[];
    expect(items).toContainEqual({ key: 'routes.conf', path: 'auth/routes.conf' });
    expect(readFileSync('deploy/k8s/nats.conf', 'utf8')).toContain('include "auth/routes.conf"');
  });

  it('NetworkPolicy node-agent: the engines on the pod IP admit the gateway pods only, on the ephemeral ports their `--port 0` takes', () => {
    type Rule = { from?: { podSelector?: { matchLabels?: Record<string, string>; matchExpressions?: unknown[] }; namespaceSelector?: unknown; ipBlock?: unknown }[]; ports?: { port?: number; endPort?: number; protocol?: string }[] };
    const policies = objs.filter((o) => o.kind === 'NetworkPolicy' && (o.spec.policyTypes as string[]).includes('Ingress'));
    const gwLabels = find('StatefulSet', 'gateway')!.spec.template.metadata.labels as Record<string, string>;
    const agents = workloads.filter((w) => isNodeAgent(w.metadata.name));
    expect(agents.map((w) => w.metadata.name).sort()).toEqual(NODES.map((n) => `node-agent-${n}`).sort());
    for (const w of agents) {
      const labels = w.spec.template.metadata.labels as Record<string, string>;
      const env = (w.spec.template.spec.containers[0].env as Obj[]).find((e) => e.name === 'DYNAMOLLM_ENGINE_HOST');
      expect(env?.valueFrom?.fieldRef?.fieldPath, 'engines listen on the pod IP').toBe('status.podIP');
      // the kernel's default ephemeral range, which the policy's port range is
      expect(JSON.stringify(w.spec.template.spec.securityContext ?? {})).not.toContain('ip_local_port_range');
      const on = policies.filter((p) => !p.spec.podSelector.matchExpressions && Object.entries((p.spec.podSelector.matchLabels ?? {}) as Record<string, string>).every(([k, v]) => labels[k] === v));
      expect(on.length, `${w.metadata.name}: a policy selects its pods`).toBeGreaterThan(0);
      const rules = on.flatMap((p) => (p.spec.ingress ?? []) as Rule[]);
      expect(rules.length).toBeGreaterThan(0);
      for (const r of rules) {
        // a rule without `from` (or ports) admits every source (or port)
        expect(r.from?.length, `${w.metadata.name}: sources named`).toBeGreaterThan(0);
        for (const peer of r.from!) {
          expect(peer.namespaceSelector ?? peer.ipBlock ?? peer.podSelector?.matchExpressions, 'pods of this namespace by label only').toBeUndefined();
          expect(peer.podSelector?.matchLabels, 'the gateway pods only').toEqual({ 'app.kubernetes.io/name': gwLabels['app.kubernetes.io/name'] });
        }
        expect(r.ports).toEqual([{ protocol: 'TCP', port: 32768, endPort: 60999 }]);
      }
    }
    // the engines take the port the kernel gives them, which the instance manager learns from their output
    const { cluster } = splitConfig(parse(readFileSync('deploy/k8s/cluster.yaml', 'utf8')), 'deploy/k8s/cluster.yaml');
    expect(engineConfigOf(cluster, { tp: 1, gpuIds: [0], node: NODES[0]!, apiKey: 'k', profile: undefined }, { DYNAMOLLM_ENGINE_HOST: '10.0.0.7' }).port).toBe(0);
  });

  it('NetworkPolicies: every workload of the render is selected by an ingress policy, and what each admits is this table (the managers\' health port: the labelled metrics scraper only)', () => {
    type Expr = { key: string; operator: string; values?: string[] };
    type Sel = { matchLabels?: Record<string, string>; matchExpressions?: Expr[] };
    type Peer = { podSelector?: Sel; namespaceSelector?: Sel; ipBlock?: { cidr: string; except?: string[] } };
    type Rule = { from?: Peer[]; ports?: { port?: number | string; endPort?: number; protocol?: string }[] };
    /** a label selector's match (an empty selector matches everything) */
    const matches = (sel: Sel, labels: Record<string, string>): boolean =>
      Object.entries(sel.matchLabels ?? {}).every(([k, v]) => labels[k] === v) &&
      (sel.matchExpressions ?? []).every((e) => {
        if (e.operator === 'In') return e.values!.includes(labels[e.key]!);
        if (e.operator === 'NotIn') return !e.values!.includes(labels[e.key]!);
        if (e.operator === 'Exists') return e.key in labels;
        if (e.operator === 'DoesNotExist') return !(e.key in labels);
        throw new Error(`operator ${e.operator}`);
      });
    const selText = (sel: Sel) => [...Object.entries(sel.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`), ...(sel.matchExpressions ?? []).map((e) => `${e.key} ${e.operator} (${[...(e.values ?? [])].sort().join(',')})`)].sort().join(',');
    const ns = find('Namespace', 'dynamollm')!.metadata.name as string;
    const podLabels = (w: Obj) => w.spec.template.metadata.labels as Record<string, string>;
    /** a source as the table names it: this namespace's workloads a podSelector matches, else the selectors */
    const peerText = (peer: Peer): string => {
      if (peer.ipBlock) return `ipBlock ${peer.ipBlock.cidr}${peer.ipBlock.except ? ` except ${peer.ipBlock.except.join(',')}` : ''}`;
      if (peer.namespaceSelector) return `namespaces{${selText(peer.namespaceSelector)}} pods{${selText(peer.podSelector ?? {})}}`;
      const ws = workloads.filter((w) => w.metadata.namespace === ns && matches(peer.podSelector!, podLabels(w))).map((w) => w.metadata.name as string).sort();
      return `workloads ${ws.length ? ws.join(',') : '<none>'}`;
    };
    const portText = (p: NonNullable<Rule['ports']>[number]) => `${p.protocol ?? 'TCP'}/${p.port ?? '*'}${p.endPort ? `-${p.endPort}` : ''}`;
    const policies = objs.filter((o) => o.kind === 'NetworkPolicy' && (o.spec.policyTypes as string[]).includes('Ingress'));
    const admitted = (w: Obj): string[] => {
      const on = policies.filter((p) => p.metadata.namespace === w.metadata.namespace && matches(p.spec.podSelector as Sel, podLabels(w)));
      expect(on.length, `${w.metadata.name as string}: an ingress policy selects its pods`).toBeGreaterThan(0);
      return [...new Set(on.flatMap((p) => ((p.spec.ingress ?? []) as Rule[]).flatMap((r) =>
        (r.ports ?? [{ port: 'every port' }]).flatMap((port) => (r.from?.length ? r.from : [undefined]).map((peer) => `${portText(port)} <- ${peer ? peerText(peer) : 'any source'}`)))))].sort();
    };
    const agents = NODES.map((n) => `node-agent-${n}`);
    const actorsText = `workloads ${[...ACTORS].sort().join(',')}`;
    const scraper = 'namespaces{dynamollm.io/metrics-scraper=true} pods{app.kubernetes.io/name=prometheus}';
    const want: Record<string, string[]> = {
      nats: [`TCP/4222 <- ${actorsText}`, 'TCP/6222 <- workloads nats'],
      'cluster-manager': [`TCP/8081 <- ${scraper}`],
      'pool-manager': [`TCP/8081 <- ${scraper}`],
      gateway: ['TCP/8000 <- any source'],
      ...Object.fromEntries(agents.map((a) => [a, ['TCP/32768-60999 <- workloads gateway']])),
    };
    expect(Object.fromEntries(workloads.map((w) => [w.metadata.name as string, admitted(w)]))).toEqual(want);
    // a pod of the namespace that no policy names admits nothing: a default deny selects every pod
    expect(policies.filter((p) => Object.keys(p.spec.podSelector).length === 0 && (p.spec.ingress ?? []).length === 0).map((p) => p.metadata.namespace)).toContain(ns);
    // the admitted port is the managers' health port, the one their /metrics is served and scraped on
    for (const name of ['cluster-manager', 'pool-manager']) {
      const pod = workloads.find((o) => o.metadata.name === name)!.spec.template;
      const c = pod.spec.containers[0];
      expect(c.ports.find((p: Obj) => p.name === 'health').containerPort, name).toBe(8081);
      const args = c.args as string[];
      expect(args[args.indexOf('--health') + 1], name).toBe('8081');
      if (pod.metadata.annotations?.['prometheus.io/port']) expect(pod.metadata.annotations['prometheus.io/port'], name).toBe('8081');
    }
  });

  it('the optional TLS Ingress example validates and fronts the gateway Service\'s HTTP port; the shipped config parses its Secure-cookie settings', async () => {
    const docs = parseAllDocuments(readFileSync('deploy/k8s/ingress-tls.example.yaml', 'utf8')).map((d) => d.toJSON() as Obj);
    expect(docs.map((d) => `${d.kind}/${d.metadata.name}`)).toEqual(['Ingress/gateway']);
    const ing = docs[0]!;
    const mod = (await import(modelPath(ing))) as Record<string, new (d: Obj) => { validate(): void }>;
    new mod[ing.kind]!(ing).validate();
    const svc = find('Service', ing.spec.rules[0].http.paths[0].backend.service.name)!;
    expect(svc.metadata.namespace).toBe(ing.metadata.namespace);
    expect((svc.spec.ports as Obj[]).map((p) => p.name)).toContain(ing.spec.rules[0].http.paths[0].backend.service.port.name);
    expect(ing.spec.tls[0].hosts).toEqual([ing.spec.rules[0].host]);
    expect(ing.metadata.annotations['nginx.ingress.kubernetes.io/proxy-buffering']).toBe('off');
    // not part of the kustomization: an example to edit
    expect(parse(readFileSync('deploy/k8s/kustomization.yaml', 'utf8')).resources).not.toContain('ingress-tls.example.yaml');
    const { gateway } = splitConfig(parse(readFileSync('deploy/k8s/cluster.yaml', 'utf8')), 'deploy/k8s/cluster.yaml');
    expect(gateway.cookieSecure).toBe('auto');
  });

  it('the images are the ones deploy/docker builds', () => {
    const images = new Set(workloads.flatMap((w) => w.spec.template.spec.containers.map((c: Obj) => c.image.replace(/:.*$/, ''))));
    expect([...images].sort()).toEqual(['dynamollm-control-plane', 'dynamollm-node', 'nats']);
    const readme = readFileSync('deploy/docker/README.md', 'utf8');
    expect(readme).toContain('-t dynamollm-control-plane:0.1.0');
    expect(readme).toContain('-t dynamollm-node:0.1.0');
  });
});

// kubernetes-models is resolvable (devDependency); fail early with a clear message otherwise
createRequire(import.meta.url).resolve('kubernetes-models/package.json');

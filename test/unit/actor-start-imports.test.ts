/**
 * What an actor process loads before it runs (src/runtime/startup.ts): on a loaded host a restarted actor serves
 * again only once its modules are loaded, so the actor command and the kinds' modules leave out what their start
 * does not run: the YAML parser (`up` hands every actor a JSON config; a YAML file still loads it, when read) and
 * prom-client (loaded on the first /metrics scrape, by an actor started with --health, or the first gathering of a
 * gateway's workers). The graph is read from Node's own resolver (a resolve hook in a child process that imports
 * the modules), not from the source text.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/nats.ts';

const dir = mkdtempSync(join(tmpdir(), 'dyn-actor-imports-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every URL Node resolved (ESM resolve hook) and every file required (CJS cache) while `script` ran in a fresh process. */
function loadedBy(script: string): string[] {
  const out = join(dir, `resolved-${Math.random().toString(36).slice(2)}.txt`);
  writeFileSync(join(dir, 'hooks.mjs'), `import { appendFileSync } from 'node:fs';
export async function resolve(spec, ctx, next) { const r = await next(spec, ctx); appendFileSync(process.env.RESOLVED_OUT, r.url + '\\n'); return r; }
`);
  writeFileSync(join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)});\n`);
  const tail = `\nconst { createRequire } = await import('node:module');\n(await import('node:fs')).appendFileSync(process.env.RESOLVED_OUT, Object.keys(createRequire(import.meta.url).cache).join('\\n') + '\\n');`;
  execFileSync(process.execPath, ['--import', 'tsx', '--import', pathToFileURL(join(dir, 'register.mjs')).href, '--input-type=module', '-e', script + tail], {
    cwd: REPO_ROOT, env: { ...process.env, RESOLVED_OUT: out }, stdio: ['ignore', 'ignore', 'inherit'], timeout: 60_000,
  });
  return readFileSync(out, 'utf8').split('\n').filter(Boolean);
}

const url = (module: string) => JSON.stringify(pathToFileURL(join(REPO_ROOT, module)).href);
const KINDS = ['node-agent', 'cluster-manager', 'pool-manager', 'instance-manager'];

describe('an actor process at start', () => {
  it('loads neither the YAML parser nor prom-client: the CLI, the actor command, the kinds and a JSON config read', () => {
    const json = join(dir, 'cluster.json');
    writeFileSync(json, JSON.stringify({ model: 'llama3.1-8b', gpu: 'h100', servers: [{ id: 'n0', gpus: 8 }] }));
    const loaded = loadedBy(`await import(${url('src/cli/commands/actor.ts')});
${KINDS.map((k) => `await import(${url(`actors/${k}/main.ts`)});`).join('\n')}
const cfg = (await import(${url('src/cli/args.ts')})).readConfigFile(${JSON.stringify(json)});
(await import(${url('actors/common/config.ts')})).parseConfig(cfg);`);
    expect(loaded.some((u) => u.includes('/actors/pool-manager/pool-leader.ts'))).toBe(true);
    expect(loaded.filter((u) => /node_modules\/(yaml|prom-client)\//.test(u))).toEqual([]);
  }, 120_000);

  it('a YAML config is still read (the parser loaded then)', () => {
    const yaml = join(dir, 'cluster.yaml');
    writeFileSync(yaml, 'model: llama3.1-8b\nservers:\n  - { id: n0, gpus: 4 }\n');
    const loaded = loadedBy(`const c = (await import(${url('src/cli/args.ts')})).readConfigFile(${JSON.stringify(yaml)});
if (c.model !== 'llama3.1-8b' || c.servers[0].gpus !== 4) throw new Error('yaml ' + JSON.stringify(c));`);
    expect(loaded.some((u) => u.includes('node_modules/yaml/'))).toBe(true);
  }, 120_000);
});

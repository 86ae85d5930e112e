/**
 * What a gateway process loads before it can listen: a replica restarted on a loaded host serves again only once
 * its modules are loaded, so the gateway actor's module graph leaves out what a gateway over NATS never runs
 * (the emulator's tokenizer: the instances count prompts) and what waits for a client (the dashboard's WebSocket
 * server; test/unit/gateway-security.test.ts and test/integration/gateway-nats.test.ts open /ws). The graph is read from Node's own resolver (a resolve
 * hook in a child process that imports the actor module), not from the source text.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/nats.ts';

const dir = mkdtempSync(join(tmpdir(), 'dyn-gw-imports-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every URL Node resolved while importing `module` (a path under the repository) in a fresh process. */
function resolvedBy(module: string, then = ''): string[] {
  const out = join(dir, `resolved-${Math.random().toString(36).slice(2)}.txt`);
  writeFileSync(join(dir, 'hooks.mjs'), `import { appendFileSync } from 'node:fs';
export async function resolve(spec, ctx, next) { const r = await next(spec, ctx); appendFileSync(process.env.RESOLVED_OUT, r.url + '\\n'); return r; }
`);
  writeFileSync(join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)});\n`);
  const script = `const m = await import(${JSON.stringify(pathToFileURL(join(REPO_ROOT, module)).href)});\n${then}`;
  execFileSync(process.execPath, ['--import', 'tsx', '--import', pathToFileURL(join(dir, 'register.mjs')).href, '--input-type=module', '-e', script], {
    cwd: REPO_ROOT, env: { ...process.env, RESOLVED_OUT: out }, stdio: ['ignore', 'ignore', 'inherit'], timeout: 60_000,
  });
  return readFileSync(out, 'utf8').split('\n').filter(Boolean);
}

describe('the gateway actor module graph', () => {
  it('does not load the emulator tokenizer (llama-tokenizer-js) until a gateway without a tokenizing backend counts a prompt', () => {
    const start = resolvedBy('actors/gateway/main.ts');
    expect(start.some((u) => u.includes('/actors/gateway/server.ts'))).toBe(true);
    expect(start.filter((u) => /llama-tokenizer-js|emulator\/tokenizer/.test(u))).toEqual([]);
    // the in-process tokenizer still counts (a gateway whose backend has none: tests with a scripted backend)
    const used = resolvedBy('actors/gateway/tokens.ts', `const r = await m.localTokenizer(4096)({ v: 1, model: 'm', prompt: 'hello world' });
if (!r.ok || r.count !== 3) throw new Error('count ' + JSON.stringify(r));
const d = await m.localDetokenize({ v: 1, model: 'm', tokens: [1, 22172, 3186] });
if (!d.ok || d.prompt !== 'hello world') throw new Error('detokenize ' + JSON.stringify(d));`);
    expect(used.some((u) => u.includes('llama-tokenizer-js'))).toBe(true);
  }, 120_000);

  it("does not load the dashboard's WebSocket server (ws) until a client opens /ws", () => {
    expect(resolvedBy('actors/gateway/main.ts').filter((u) => /node_modules\/ws\//.test(u))).toEqual([]);
  }, 120_000);
});

/**
 * The Dockerfiles, checked without a Docker daemon (none where CI runs; deploy/docker/README.md): every
 * COPY source exists and is inside the build context (.dockerignore), stages are named and used, base
 * images are pinned, the final stage runs as a non-root user the compiled CLI, and nothing runs tsx; and the build
 * stage copies every file `npm run build` reads (buildInputs: derived from package.json's script, the tsconfigs and
 * the scripts it runs), each to the path it has in the repository.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, posix } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { VLLM_IMAGE, VLLM_VERSION } from '../../src/engine/vllm-version.ts';

interface Instr { op: string; args: string; line: number }

function parseDockerfile(text: string): Instr[] {
  const out: Instr[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let l = lines[i]!.trim();
    const at = i + 1;
    if (!l || l.startsWith('#')) continue;
    while (l.endsWith('\\') && i + 1 < lines.length) l = l.slice(0, -1) + ' ' + lines[++i]!.trim();
    const m = /^(\w+)\s+(.*)$/.exec(l);
    if (!m) throw new Error(`line ${at}: not an instruction: ${l}`);
    out.push({ op: m[1]!.toUpperCase(), args: m[2]!, line: at });
  }
  return out;
}

/**
 * The repository paths `npm run <script>` reads: each tsconfig a `tsc -p` names, its `extends` chain and its effective
 * `include`/`files`; each file `node` runs and the repository paths it names (`resolve(repo, 'PATH')`, dist/ being
 * the output); `npm run` steps followed. An unknown step throws, so a new kind of build step needs this taught.
 */
export function buildInputs(script = 'build'): string[] {
  const scripts = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> }).scripts;
  const out = new Set<string>(['package.json']);
  const tsconfig = (path: string): { include?: string[]; files?: string[] } => {
    out.add(path);
    const { config, error } = ts.readConfigFile(path, (f) => ts.sys.readFile(f)) as { config?: { extends?: string; include?: string[]; files?: string[] }; error?: ts.Diagnostic };
    if (error || !config) throw new Error(`${path}: ${error ? ts.flattenDiagnosticMessageText(error.messageText, '\n') : 'unreadable'}`);
    const base = config.extends ? tsconfig(posix.join(dirname(path), config.extends)) : {};
    return { include: config.include ?? base.include, files: config.files ?? base.files };
  };
  const visit = (name: string) => {
    const body = scripts[name];
    if (body === undefined) throw new Error(`no npm script ${name}`);
    for (const step of body.split('&&').map((s) => s.trim().split(/\s+/))) {
      if (step[0] === 'npm' && step.includes('run')) visit(step.filter((w) => !w.startsWith('-'))[2]!);
      else if (step[0] === 'tsc' && step.includes('-p')) {
        const c = tsconfig(posix.normalize(step[step.indexOf('-p') + 1]!));
        for (const p of [...(c.include ?? []), ...(c.files ?? [])]) out.add(posix.normalize(p));
      } else if (step[0] === 'node' && step[1]) {
        out.add(posix.normalize(step[1]));
        for (const m of readFileSync(step[1], 'utf8').matchAll(/resolve\(repo, '([^']+)'\)/g)) if (!m[1]!.startsWith('dist/')) out.add(posix.normalize(m[1]!));
      } else throw new Error(`npm run ${name}: build step not understood: ${step.join(' ')}`);
    }
  };
  visit(script);
  return [...out];
}

/** Where the COPY instructions of `stage` put each source from the build context (WORKDIR applied). */
function copiedTo(stage: Instr[]): Map<string, string> {
  const at = new Map<string, string>();
  let workdir = '/';
  for (const i of stage) {
    if (i.op === 'WORKDIR') workdir = posix.resolve(workdir, i.args.trim());
    if (i.op !== 'COPY' || i.args.includes('--from=')) continue;
    const parts = i.args.split(/\s+/).filter((p) => !p.startsWith('--'));
    const srcs = parts.slice(0, -1).map((p) => posix.normalize(p));
    const dest = posix.resolve(workdir, parts[parts.length - 1]!);
    const toDir = srcs.length > 1 || parts[parts.length - 1]!.endsWith('/');
    for (const src of srcs) at.set(src, toDir ? posix.join(dest, basename(src)) : dest);
  }
  return at;
}

const ignored = readFileSync('.dockerignore', 'utf8').split('\n').map((s) => s.trim()).filter((s) => s && !s.startsWith('#'));
const isIgnored = (p: string) => ignored.some((g) => !g.includes('*') && (p === g || p.startsWith(`${g}/`)));

for (const file of ['deploy/docker/control-plane.Dockerfile', 'deploy/docker/node.Dockerfile']) {
  describe(file, () => {
    const ins = parseDockerfile(readFileSync(file, 'utf8'));
    const args = new Map(ins.filter((i) => i.op === 'ARG').map((i) => i.args.split('=') as [string, string]));
    const froms = ins.filter((i) => i.op === 'FROM');
    const stages = froms.map((f) => / AS (\S+)$/i.exec(f.args)?.[1]).filter(Boolean) as string[];
    const finalStart = ins.indexOf(froms[froms.length - 1]!);
    const final = ins.slice(finalStart);

    it('is multi-stage; every named stage is used by a later COPY --from', () => {
      expect(froms.length).toBeGreaterThanOrEqual(2);
      for (const s of stages) expect(ins.some((i) => i.op === 'COPY' && i.args.includes(`--from=${s} `)), s).toBe(true);
    });

    it('pins every base image to a version', () => {
      for (const f of froms) {
        const image = f.args.split(/\s+/)[0]!.replace(/^\$\{(\w+)\}$/, (_, a: string) => args.get(a) ?? '');
        if (stages.includes(image)) continue;
        expect(image, `line ${f.line}`).toMatch(/^[\w./-]+:[\w.-]*\d[\w.-]*$/);
        expect(image).not.toMatch(/:latest$/);
      }
    });

    it('copies only paths that exist in the build context', () => {
      for (const c of ins.filter((i) => i.op === 'COPY' && !i.args.includes('--from='))) {
        const parts = c.args.split(/\s+/).filter((p) => !p.startsWith('--'));
        for (const src of parts.slice(0, -1)) {
          expect(existsSync(src), `${file}:${c.line} COPY ${src}`).toBe(true);
          expect(isIgnored(src), `${file}:${c.line} COPY ${src} is in .dockerignore`).toBe(false);
        }
      }
    });

    it('builds with npm run build and ships no dev dependencies', () => {
      const run = ins.filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');
      expect(run).toMatch(/npm ci/);
      expect(run).toMatch(/npm run build/);
      expect(run).toMatch(/npm prune --omit=dev/);
      expect(readFileSync(file, 'utf8')).not.toMatch(/\btsx\b/);
      for (const p of ['dist', 'node_modules']) expect(final.some((i) => i.op === 'COPY' && i.args.includes(`/app/${p} `)), p).toBe(true);
    });

    it('the build stage copies every file npm run build reads, each to its repository path under WORKDIR', () => {
      const build = ins.findIndex((i) => i.op === 'RUN' && /npm run build/.test(i.args));
      const stage = ins.slice(ins.lastIndexOf(froms.filter((f) => ins.indexOf(f) < build).pop()!), build);
      const workdir = stage.filter((i) => i.op === 'WORKDIR').pop()!.args.trim();
      const at = copiedTo(stage);
      const missing = buildInputs().filter((p) => {
        const src = [...at.keys()].find((s) => p === s || p.startsWith(`${s}/`));
        return src === undefined || at.get(src)! + p.slice(src.length) !== posix.join(workdir, p);
      });
      expect(missing, `${file}: not copied before \`RUN npm run build\``).toEqual([]);
    });

    it('the final stage runs the compiled CLI as a non-root user', () => {
      const user = final.filter((i) => i.op === 'USER').pop();
      expect(user, 'USER in the final stage').toBeTruthy();
      expect(user!.args.split(':')[0]).not.toMatch(/^(0|root)$/);
      const ep = final.filter((i) => i.op === 'ENTRYPOINT').pop()!;
      expect(JSON.parse(ep.args)).toEqual(['node', '/app/bin/dynamollm.js']);
      const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { bin: Record<string, string> };
      expect(pkg.bin.dynamollm).toBe('bin/dynamollm.js');
    });
  });
}

describe('buildInputs', () => {
  it("finds npm run build's tsconfigs, the files they compile and the native build's script and source", () => {
    expect(buildInputs().sort()).toEqual(['actors', 'native/relay.c', 'package.json', 'protocols', 'scripts/build-native.mjs', 'src', 'src/client/index.ts', 'tsconfig.build.json', 'tsconfig.json', 'tsconfig.types.json']);
  });
});

describe('node image', () => {
  it("pins the vLLM release VLLM_VERSION names, as README's real-vLLM section and deploy/docker/README.md say", () => {
    const t = readFileSync('deploy/docker/node.Dockerfile', 'utf8');
    expect(/^ARG VLLM_IMAGE=(.+)$/m.exec(t)?.[1]).toBe(VLLM_IMAGE);
    expect(VLLM_IMAGE).toBe(`vllm/vllm-openai:${VLLM_VERSION}`);
    const readme = readFileSync('README.md', 'utf8');
    const section = readme.slice(readme.indexOf('## Running against real vLLM and GPUs'));
    expect(section.slice(0, section.indexOf('\n## ', 3))).toContain(`vLLM ${VLLM_VERSION} (\`VLLM_VERSION\``);
    expect(section).toContain(`\`${VLLM_IMAGE}\``);
    expect(readFileSync('deploy/docker/README.md', 'utf8')).toContain(`default \`${VLLM_IMAGE}\``);
  });

  it('is built on the official vLLM OpenAI image and adds Node', () => {
    const t = readFileSync('deploy/docker/node.Dockerfile', 'utf8');
    expect(t).toMatch(/^ARG VLLM_IMAGE=vllm\/vllm-openai:v[\d.]+$/m);
    expect(t).toMatch(/^FROM \$\{VLLM_IMAGE\}$/m);
    expect(t).toMatch(/^COPY --from=node \/usr\/local\/bin\/node \/usr\/local\/bin\/node$/m);
  });
});

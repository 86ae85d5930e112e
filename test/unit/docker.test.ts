/**
 * The Dockerfiles, checked without a Docker daemon (none where CI runs; deploy/docker/README.md): every
 * COPY source exists and is inside the build context (.dockerignore), stages are named and used, base
 * images are pinned, the final stage runs as a non-root user the compiled CLI, and nothing runs tsx.
 */
import { existsSync, readFileSync } from 'node:fs';
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

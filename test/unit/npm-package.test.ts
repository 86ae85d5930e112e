/**
 * What `npm pack` ships (package.json `files`, `prepack`): the CLI's runtime files and no tests. The pack runs the
 * build first (prepack), so dist/ is in it; the files the compiled CLI reads relative to the package root (the
 * control-plane image's runtime COPY lines name the same set) are all in `files`. The list is npm's own
 * (`npm pack --dry-run --json --ignore-scripts`: no build here; test/e2e/npm-pack.test.ts packs for real and runs it).
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { files?: string[]; scripts: Record<string, string>; bin: Record<string, string> };
const packed = (JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
/** a path `files` covers (a directory entry ends in /) */
const covered = (p: string) => (pkg.files ?? []).some((f) => (f.endsWith('/') ? p.startsWith(f) || `${p}/` === f : p === f));
const walk = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));

describe('the npm package', () => {
  it('builds before it packs, and ships the compiled tree', () => {
    expect(pkg.scripts.prepack).toBe('npm run build');
    for (const d of ['dist/src/', 'dist/actors/', 'dist/protocols/']) expect(pkg.files, d).toContain(d);
    expect(covered('dist/src/cli/main.js')).toBe(true);
    expect(covered('dist/.tsbuildinfo')).toBe(false);
  });

  it('ships the bin and every file the CLI reads relative to the package root', () => {
    const runtime = [
      ...Object.values(pkg.bin),
      'nats.conf',
      ...walk('profiles'),
      ...walk('data/calibration'),
      ...walk('src/telemetry/dashboard'),
      'deploy/local.yaml',
      // the gateway's native data plane's source (its library, built by prepack's npm run build, below)
      'native/relay.c',
    ];
    expect(covered('dist/native/relay.so')).toBe(true);
    for (const p of runtime) expect(packed, p).toContain(p);
    // the control-plane image's runtime files (besides node_modules, package.json, dist) are the same set
    // the runtime stage: the last FROM's (the build stage's sources are compiled into dist)
    const image = readFileSync('deploy/docker/control-plane.Dockerfile', 'utf8').split(/^FROM /m).at(-1)!;
    const copied = [...image.matchAll(/^COPY (?!--from)(\S+) /gm)].map((m) => m[1]!).filter((p) => !p.startsWith('package') && !p.startsWith('tsconfig') && !['src', 'actors', 'protocols'].includes(p));
    expect(copied.length).toBeGreaterThan(3);
    for (const p of copied) expect(covered(p) || covered(`${p}/`), p).toBe(true);
  });

  it('ships no tests, sources of the build or dev files', () => {
    expect(packed.filter((p) => /^test\/|\.test\.ts$|^src\/(?!telemetry\/dashboard\/)|^actors\/|^protocols\/|^scripts\/|^bench-results\//.test(p))).toEqual([]);
    expect(packed.length).toBeLessThan(1500);
  });
});

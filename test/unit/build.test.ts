/**
 * The `engines` floor of package.json is one every installed dependency (package-lock.json) accepts, so
 * `npm ci` on that Node version installs without EBADENGINE, and the Node running the tests meets it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

type V = [number, number, number];
const parseV = (s: string): { v: V; wild: number } => {
  const parts = s.replace(/^v/, '').split('.');
  const nums = parts.map((x) => (/^\d+$/.test(x) ? Number(x) : NaN));
  const wild = nums.findIndex((n) => Number.isNaN(n));
  const n = wild === -1 ? nums.length : wild;
  return { v: [nums[0] || 0, n > 1 ? nums[1]! : 0, n > 2 ? nums[2]! : 0], wild: Math.min(n, 3) };
};
const cmp = (a: V, b: V) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
/** npm's node ranges as packages write them: `a || b`, comparators >= > <= < = ^ ~, x-ranges, `*`. */
function satisfies(version: string, range: string): boolean {
  const v = parseV(version).v;
  return range.split('||').some((alt) =>
    alt.trim().replace(/(>=|<=|>|<|=|\^|~)\s+/g, '$1').split(/\s+/).filter(Boolean).every((c) => {
      const m = /^(>=|<=|>|<|=|\^|~)?(.*)$/.exec(c)!;
      if (m[2] === '*' || m[2] === 'x') return true;
      const { v: b, wild } = parseV(m[2]!);
      const upper = (i: number): V => (i === 0 ? [b[0] + 1, 0, 0] : i === 1 ? [b[0], b[1] + 1, 0] : [b[0], b[1], b[2] + 1]);
      switch (m[1]) {
        case '>=': return cmp(v, b) >= 0;
        case '>': return wild < 3 ? cmp(v, upper(wild - 1)) >= 0 : cmp(v, b) > 0;
        case '<=': return wild < 3 ? cmp(v, upper(wild - 1)) < 0 : cmp(v, b) <= 0;
        case '<': return cmp(v, b) < 0;
        case '^': return cmp(v, b) >= 0 && cmp(v, upper(b[0] > 0 || wild === 1 ? 0 : b[1] > 0 || wild === 2 ? 1 : 2)) < 0;
        case '~': return cmp(v, b) >= 0 && cmp(v, upper(wild === 1 ? 0 : 1)) < 0;
        default: return cmp(v, b) >= 0 && cmp(v, upper(wild - 1)) < 0;
      }
    }),
  );
}
const minVersion = (range: string): string => /(\d+(?:\.\d+){0,2})/.exec(range)![1]!;

describe('engines', () => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string } };
  const lock = JSON.parse(readFileSync('package-lock.json', 'utf8')) as { packages: Record<string, { version?: string; engines?: { node?: string } | string[]; optional?: boolean; os?: string[] }> };
  const floor = minVersion(pkg.engines.node);

  it('every locked package that declares a Node range accepts the engines floor', () => {
    const bad: string[] = [];
    let declared = 0;
    for (const [path, p] of Object.entries(lock.packages)) {
      const range = p.engines && !Array.isArray(p.engines) ? p.engines.node : undefined;
      if (!path || !range) continue;
      declared++;
      if (!satisfies(floor, range)) bad.push(`${path}@${p.version} wants node ${range}`);
    }
    expect(declared).toBeGreaterThan(20);
    expect(bad, `engines floor ${floor}`).toEqual([]);
  });

  it('the range check reads npm ranges as npm does', () => {
    expect(satisfies('20.19.0', '^18.18.0 || ^20.9.0 || >=21.1.0')).toBe(true);
    expect(satisfies('20.0.0', '^18.18.0 || ^20.9.0 || >=21.1.0')).toBe(false);
    expect(satisfies('20.19.0', '>= 22.x')).toBe(false);
    expect(satisfies('22.0.0', '>= 22.x')).toBe(true);
    expect(satisfies('20.19.0', '>=18.0.0')).toBe(true);
    expect(satisfies('20.19.0', '^20.19.0 || >=22.12.0')).toBe(true);
    expect(satisfies('20.18.9', '^20.19.0 || >=22.12.0')).toBe(false);
    expect(satisfies('21.0.0', '^20.19.0 || >=22.12.0')).toBe(false);
    expect(satisfies('20.1.0', '20.x')).toBe(true);
    expect(satisfies('20.1.0', '*')).toBe(true);
  });

  it('the Node running the tests meets the engines floor', () => {
    expect(satisfies(process.version, pkg.engines.node)).toBe(true);
  });
});

describe('README', () => {
  it('its table names every environment variable the code reads', () => {
    const walk = (d: string): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith('.ts') ? [join(d, e.name)] : []));
    const names = new Set<string>();
    for (const f of ['src', 'actors', 'protocols'].flatMap(walk)) {
      for (const m of readFileSync(f, 'utf8').matchAll(/\benv(?:\.|\[['"])([A-Z][A-Z0-9_]+)/g)) names.add(m[1]!);
    }
    expect(names.size).toBeGreaterThan(10);
    const readme = readFileSync('README.md', 'utf8');
    const table = readme.slice(readme.indexOf('### Environment variables'));
    expect([...names].filter((n) => !table.includes(`\`${n}\``))).toEqual([]);
  });
});

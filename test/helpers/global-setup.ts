/**
 * vitest globalSetup: the tests spawn `bin/dynamollm.js` (the compiled CLI in dist/), so dist/ must match the
 * source. Rebuilds (incremental `npm run build`) when any source file is newer than the last build; costs a
 * directory walk when nothing changed.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const SOURCES = ['src', 'actors', 'protocols', 'tsconfig.json', 'tsconfig.build.json', 'package.json'];
const STAMP = join('dist', '.tsbuildinfo');

function newest(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let m = st.mtimeMs;
  for (const e of readdirSync(path)) m = Math.max(m, newest(join(path, e)));
  return m;
}

export default function setup(): void {
  const built = existsSync(STAMP) ? statSync(STAMP).mtimeMs : 0;
  if (built >= Math.max(...SOURCES.map(newest))) return;
  // emit only: type errors are `npm run typecheck`'s (CI runs it, and the full `npm run build`)
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json', '--noCheck'], { stdio: 'inherit' });
}

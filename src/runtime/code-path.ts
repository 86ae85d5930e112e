/**
 * Where this checkout's code and files are, for a process that runs either from TypeScript source (tsx,
 * vitest: `npm run dynamollm`, the tests) or from the compiled tree (`npm run build` -> dist/: the bin, the
 * systemd units, the images). A child process or worker thread starts in the same form as its parent, so
 * the compiled tree never needs tsx and the source tree never needs a build.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** true under tsx/vitest (this module is a .ts file), false in dist/. */
export const FROM_SOURCE = import.meta.url.endsWith('.ts');

function findRoot(from: string): string {
  for (let d = from; ; d = dirname(d)) {
    const pkg = join(d, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'dynamollm') return d;
    if (dirname(d) === d) throw new Error(`no dynamollm package.json above ${from}`);
  }
}

/** The checkout (or image) root: package.json, profiles/, data/, nats.conf, src/telemetry/dashboard/. */
export const REPO_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));
/** The root of the code that runs: REPO_ROOT from source, REPO_ROOT/dist compiled. */
export const CODE_ROOT = FROM_SOURCE ? REPO_ROOT : join(REPO_ROOT, 'dist');

/** A module of this project by its source path ('actors/common/launch.ts'), in the form that runs here. */
export function codeFile(sourcePath: string): string {
  return resolve(CODE_ROOT, FROM_SOURCE ? sourcePath : sourcePath.replace(/\.ts$/, '.js'));
}

/** node argv (before the module's own arguments) that runs a module of this project: tsx only from source. */
export function nodeArgs(sourcePath: string): string[] {
  return FROM_SOURCE ? ['--import', 'tsx', codeFile(sourcePath)] : [codeFile(sourcePath)];
}

/** node argv that runs the `dynamollm` CLI in this process's form: [...cliArgs(), 'actor', 'gateway', ...]. */
export function cliArgs(): string[] {
  return nodeArgs('src/cli/main.ts');
}

/**
 * Argument checks shared by the commands (parsing itself: commander, see ./program.ts). A UsageError exits 2.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseYaml } from '../runtime/yaml.ts';

export class UsageError extends Error {
  override name = 'UsageError';
  readonly retryable = false;
}

export function num(v: string | undefined, name: string, dflt?: number): number {
  if (v === undefined) {
    if (dflt === undefined) throw new UsageError(`--${name} is required`);
    return dflt;
  }
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got '${v}'`);
  return n;
}

export function req(v: string | undefined, name: string): string {
  if (v === undefined || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

/** Read a --config file: JSON when it ends in .json, else YAML (a superset of JSON). Errors name the file. */
export function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read --config ${path}: ${(err as Error).message}`);
  }
  try {
    return path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new UsageError(`--config ${path} is not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
}

/** An input file named on the command line must exist: a one-line usage error naming it otherwise. */
export function inputFile(path: string, what: string): string {
  if (!existsSync(path)) throw new UsageError(`${what} ${path}: no such file`);
  return path;
}

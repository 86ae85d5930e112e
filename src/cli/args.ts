/**
 * Argument checks shared by the commands (parsing itself: commander, see ./program.ts). A UsageError exits 2.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseYaml } from '../runtime/yaml.ts';
import { tpDegreesOf } from '../model/catalog.ts';
import type { ModelSpec } from '../model/types.ts';

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

/** A number > 0 (a rate, a scale, a duration). */
export function positiveNum(v: string | undefined, name: string, dflt?: number): number {
  const n = num(v, name, dflt);
  if (!(n > 0)) throw new UsageError(`--${name} must be > 0, got ${v}`);
  return n;
}

/** A number >= 0 (a price, a delay). */
export function nonNegativeNum(v: string | undefined, name: string, dflt?: number): number {
  const n = num(v, name, dflt);
  if (!(n >= 0)) throw new UsageError(`--${name} must be >= 0, got ${v}`);
  return n;
}

/** A whole number >= min (a count, a limit). */
export function wholeNum(v: string | undefined, name: string, min: number, dflt?: number): number {
  const n = num(v, name, dflt);
  if (!(Number.isInteger(n) && n >= min)) throw new UsageError(`--${name} must be a whole number >= ${min}, got ${v}`);
  return n;
}

/** One of a fixed set of words. */
export function oneOf<T extends string>(v: string, name: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(v)) throw new UsageError(`--${name} must be one of ${choices.join(', ')}, got '${v}'`);
  return v as T;
}

/** An http:// or https:// URL. */
export function httpUrl(v: string, name: string): string {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new UsageError(`--${name} must be an http:// or https:// URL, got '${v}'`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--${name} must be an http:// or https:// URL, got '${v}'`);
  return v;
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

/** --tp for a model: one of the degrees it can be sharded at (model/catalog.ts tpDegreesOf: its heads split evenly). */
export function tpArg(v: string | undefined, m: ModelSpec): number {
  const tp = num(v, 'tp');
  const ok = tpDegreesOf(m);
  if (!ok.includes(tp)) {
    throw new UsageError(`--tp must be one of ${ok.join(', ')} for ${m.id} (${m.heads} attention heads, ${m.kvHeads} KV heads split evenly over the GPUs), got ${v}`);
  }
  return tp;
}

/**
 * Minimal, strict argument parsing shared by all subcommands (node:util parseArgs underneath).
 * Unknown flags are an error, not silently ignored.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {
  override name = 'UsageError';
  readonly retryable = false;
}

export function parse<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
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

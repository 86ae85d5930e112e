/** Tiny `--key value` parser for actor entry points (bad input: a clear ConfigError). */
import { ConfigError } from './config.ts';

export function parseFlags(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new ConfigError(`unexpected argument '${a}' (expected --key value)`);
    const eq = a.indexOf('=');
    if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
    else {
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--')) out[a.slice(2)] = 'true';
      else {
        out[a.slice(2)] = v;
        i++;
      }
    }
  }
  return out;
}

export function need(f: Record<string, string>, k: string): string {
  const v = f[k];
  if (v === undefined || v === '') throw new ConfigError(`missing --${k}`);
  return v;
}

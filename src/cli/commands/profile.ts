/**
 * `dynamollm profile generate|run`: generate a profile from the model (src/model) or measure one against a
 * live endpoint (the paper's profiler, src/telemetry/profiler.ts).
 */
export const summary = 'profile generate (from the model) | profile run (measure a live endpoint)';

export async function run(argv: string[]): Promise<number | undefined> {
  const [sub, ...rest] = argv;
  if (sub === 'generate') return (await import('./profile-generate.ts')).run(rest);
  if (sub === 'run') return (await import('./profile-run.ts')).run(rest);
  process.stderr.write('usage: dynamollm profile generate --model M --gpu G --out FILE\n' +
    '       dynamollm profile run --endpoint URL --gpu-backend nvml|smi|emulated --model M --tp N --clocks LIST --out FILE\n');
  return 2;
}

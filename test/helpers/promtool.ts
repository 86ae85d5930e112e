/**
 * `promtool check metrics` (Debian package `prometheus`) on a /metrics text. Returns the problems it reports,
 * less one lint it makes about vLLM's own names: vLLM names its metrics `vllm:...` and the emulator keeps those
 * names (dashboards written for vLLM must work on it), while promtool's linter wants no ':' in a scraped name.
 * Throws when promtool is missing: CI installs it (.ci/run), and a check that silently did not run is no check.
 */
import { execFileSync, spawnSync } from 'node:child_process';

export const PROMTOOL = process.env.PROMTOOL ?? 'promtool';

export function havePromtool(): boolean {
  try {
    execFileSync(PROMTOOL, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const VLLM_COLON = /^vllm:[a-zA-Z0-9_:]+ metric names should not contain ':'$/;

export function promtoolProblems(text: string): string[] {
  const r = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (r.error) throw new Error(`promtool not runnable (apt-get install prometheus): ${r.error.message}`);
  const lines = `${r.stdout}\n${r.stderr}`.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
  const problems = lines.filter((l) => !VLLM_COLON.test(l));
  if (r.status !== 0 && problems.length === 0 && !lines.every((l) => VLLM_COLON.test(l))) problems.push(`promtool exited ${r.status}`);
  return problems;
}

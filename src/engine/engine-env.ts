/**
 * The environment an engine process (vLLM, the emulator, a test's fake) starts with: its instance manager's, without
 * any credential of dynamollm's. The instance manager holds its NATS seed (NATS_NKEY names the file, NATS_URL the
 * servers) and may run beside others' secrets (a gateway's API keys, the metrics and probe tokens, a NATS server's role
 * passwords `DYN_<ROLE>_PASS`); the engine holds only its own API key (VLLM_API_KEY, set by engineSpec), so a
 * compromised engine learns no NATS credential or path to one from its environment (docs/SECURITY.md).
 */
import { NATS_ENV_NAMES } from '../runtime/nats-settings.ts';

/** dynamollm's credential variables besides the NATS client's (README's environment table). */
const CREDENTIAL_ENV: ReadonlySet<string> = new Set([
  ...NATS_ENV_NAMES, 'DYNAMOLLM_API_KEYS', 'DYNAMOLLM_API_KEY', 'DYNAMOLLM_METRICS_TOKEN', 'DYNAMOLLM_PROBE_TOKEN', 'OPENAI_API_KEY',
]);

/** Whether a variable of this name is a credential (or names one): every `NATS_*`, every `DYN_*_PASS`, CREDENTIAL_ENV. */
export function isCredentialEnv(name: string): boolean {
  return name.startsWith('NATS_') || /^DYN_[A-Z0-9_]+_PASS$/.test(name) || CREDENTIAL_ENV.has(name);
}

/** `env` without its credentials (isCredentialEnv). */
export function engineBaseEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !isCredentialEnv(k)));
}

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { engineSpec } from '../../src/engine/index.ts';

/** What an instance manager's process holds (its NATS seed and servers; other processes' secrets beside them). */
const HELD = {
  NATS_URL: 'nats://127.0.0.1:4222', NATS_NKEY: '/run/dynamollm/keys-node-n0/pool-a-n0-g0x1.nk', NATS_USER: 'instance', NATS_PASSWORD: 'pw',
  NATS_CREDS: '/x.creds', NATS_CA: '/ca.pem', NATS_CERT: '/c.pem', NATS_KEY: '/k.pem', DYN_INSTANCE_PASS: 'role-pw', DYN_ADMIN_PASS: 'admin-pw',
  DYNAMOLLM_API_KEYS: 'k1,k2', DYNAMOLLM_API_KEY: 'k1', DYNAMOLLM_METRICS_TOKEN: 'm', DYNAMOLLM_PROBE_TOKEN: 'p', OPENAI_API_KEY: 'o',
};
const base = { model: 'llama3.1-8b', gpu: 'h100', tp: 1, gpuIds: [3], port: 8001, healthDeadlineMs: 1000 };

describe("an engine's environment", () => {
  let saved: NodeJS.ProcessEnv;
  beforeEach(() => {
    saved = { ...process.env };
    Object.assign(process.env, HELD, { HF_TOKEN: 'hf', DYNAMOLLM_LOG_LEVEL: 'warn' });
  });
  afterEach(() => {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  });

  it('carries no NATS variable and no credential of dynamollm, only its own API key (vllm, emulator, a fake vllm command)', () => {
    for (const cfg of [{ ...base, kind: 'vllm' as const }, { ...base, kind: 'emulator' as const }, { ...base, kind: 'vllm' as const, command: '/usr/bin/fake-vllm', args: ['--port', '8001'] }]) {
      const env = engineSpec({ ...cfg, apiKey: 'engine-key' }).env;
      expect(Object.keys(env).filter((k) => k.startsWith('NATS_'))).toEqual([]);
      for (const k of Object.keys(HELD)) expect(env[k], k).toBeUndefined();
      expect(Object.values(env)).not.toContain(HELD.NATS_NKEY);
      expect(env.VLLM_API_KEY).toBe('engine-key');
      expect(env.CUDA_VISIBLE_DEVICES).toBe('3');
      // what it needs of its host stays: the search path, a model hub token, the log level
      expect(env.PATH).toBe(process.env.PATH);
      expect(env.HF_TOKEN).toBe('hf');
      expect(env.DYNAMOLLM_LOG_LEVEL).toBe('warn');
    }
  });
});

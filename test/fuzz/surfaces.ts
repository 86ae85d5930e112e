/**
 * Fuzz surfaces: every decoder and parser that takes outside input. Each surface runs one input and must
 * either succeed or throw its typed error; anything else is a crash. Used by test/unit/fuzz.test.ts (a
 * CI-sized share) and `npm run fuzz` (test/fuzz/run.ts, 100,000 inputs per surface).
 */
import fc from 'fast-check';
import * as protocols from '../../protocols/index.ts';
import { DynError } from '../../protocols/errors.ts';
import { parseConfig, ConfigError } from '../../actors/common/config.ts';
import { gatewaySchema } from '../../actors/gateway/config.ts';
import { natsSettings, NatsSettingsError } from '../../src/runtime/nats-settings.ts';

export interface Surface {
  name: string;
  arb: fc.Arbitrary<unknown>;
  run(input: unknown): void;
  /** the errors this surface may throw (typed); anything else is a crash. */
  typed(err: unknown): boolean;
}

const codecs = (Object.values(protocols) as unknown[]).filter(
  (v): v is protocols.Codec<unknown> => typeof v === 'object' && v !== null && 'decode' in v && 'encode' in v && 'name' in v,
);

const json = fc.jsonValue({ maxDepth: 4 });
const withV = fc.dictionary(fc.string({ maxLength: 12 }), json, { maxKeys: 8 }).map((o) => ({ v: 1, ...o }));
const isDyn = (e: unknown) => e instanceof DynError;

export const SURFACES: Surface[] = [
  ...codecs.map((c): Surface => ({
    name: `msgpack ${c.name} (random bytes and maps)`,
    arb: fc.oneof(fc.uint8Array({ maxLength: 256 }), withV.map((o) => protocols.packRaw(o))),
    run: (b) => void c.decode(b as Uint8Array, 'fuzz'),
    typed: isDyn,
  })),
  {
    name: 'cluster config (parseConfig)',
    arb: fc.oneof(json, fc.dictionary(fc.constantFrom('nats', 'servers', 'pools', 'engine', 'slo', 'clusterId', 'model', 'x'), json)),
    run: (o) => void parseConfig(o, 'fuzz'),
    typed: (e) => e instanceof ConfigError,
  },
  {
    name: 'gateway config (gatewaySchema)',
    arb: fc.dictionary(fc.constantFrom('port', 'host', 'apiKeys', 'bodyLimitBytes', 'metricsToken', 'headersTimeoutMs', 'x'), json),
    run: (o) => {
      const r = gatewaySchema.safeParse(o);
      if (r.success && r.data.bodyLimitBytes >= 1024 * 1024) throw new Error('body limit at or above NATS max_payload accepted');
    },
    typed: () => false,
  },
  {
    name: 'NATS settings (flags and env)',
    arb: fc.record({
      flags: fc.dictionary(fc.constantFrom('nats', 'user', 'password', 'creds', 'nkey', 'tlscert', 'tlskey', 'tlsca'), fc.string({ maxLength: 40 })),
      env: fc.dictionary(fc.constantFrom('NATS_URL', 'NATS_USER', 'NATS_PASSWORD', 'NATS_CREDS', 'NATS_NKEY', 'NATS_CERT', 'NATS_KEY', 'NATS_CA'), fc.string({ maxLength: 40 })),
    }),
    run: (i) => void natsSettings(i as { flags: Record<string, string>; env: Record<string, string> }),
    typed: (e) => e instanceof NatsSettingsError,
  },
];

/** Runs `n` inputs of a surface; returns crashes (with the first counterexample) and typed errors. */
export function fuzz(s: Surface, n: number, seed = 12): { runs: number; typedErrors: number; crashes: number; example?: string } {
  let typedErrors = 0;
  let crashes = 0;
  let example: string | undefined;
  fc.assert(
    fc.property(s.arb, (input) => {
      try {
        s.run(input);
      } catch (e) {
        if (s.typed(e)) typedErrors++;
        else {
          crashes++;
          example ??= `${(e as Error)?.message ?? String(e)} on ${JSON.stringify(input, (_k, v) => (v instanceof Uint8Array ? Array.from(v) : v)).slice(0, 300)}`;
        }
      }
    }),
    { numRuns: n, seed },
  );
  return { runs: n, typedErrors, crashes, example };
}

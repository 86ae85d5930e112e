/**
 * Fuzz surfaces: every decoder and parser that takes outside input. Each surface runs one input and must
 * either succeed or throw its typed error; anything else is a crash. Used by test/unit/fuzz.test.ts (a
 * CI-sized share) and `npm run fuzz` (test/fuzz/run.ts, 100,000 inputs per surface).
 * Outside inputs: NATS payloads (every codec), config (objects and YAML files), NATS settings, gateway
 * settings, OpenAI request bodies, raw HTTP requests to a running gateway (request line, headers, body),
 * profiles and traces (files).
 */
import fc from 'fast-check';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { loadConfig } from '../../actors/common/config.ts';
import { HttpError, parseOpenAiRequest } from '../../actors/gateway/openai.ts';
import { GatewayServer, type GatewayBackend } from '../../actors/gateway/server.ts';
import { parseProfile, ProfileError, ProfileRangeError } from '../../src/model/profile.ts';
import { loadTrace, TraceFormatError } from '../../src/sim/trace.ts';
import type { InferenceRequest, TokenChunk } from '../../protocols/messages.ts';
import * as protocols from '../../protocols/index.ts';
import { DynError } from '../../protocols/errors.ts';
import { parseConfig, ConfigError } from '../../actors/common/config.ts';
import { gatewaySchema } from '../../actors/gateway/config.ts';
import { natsSettings, NatsSettingsError } from '../../src/runtime/nats-settings.ts';

export interface Surface {
  name: string;
  arb: fc.Arbitrary<unknown>;
  /** one input; a surface that does I/O returns a promise. */
  run(input: unknown): void | Promise<void>;
  /** the errors this surface may throw (typed); anything else is a crash. */
  typed(err: unknown): boolean;
}

const codecs = (Object.values(protocols) as unknown[]).filter(
  (v): v is protocols.Codec<unknown> => typeof v === 'object' && v !== null && 'decode' in v && 'encode' in v && 'name' in v,
);

const json = fc.jsonValue({ maxDepth: 4 });
const withV = fc.dictionary(fc.string({ maxLength: 12 }), json, { maxKeys: 8 }).map((o) => ({ v: 1, ...o }));
const isDyn = (e: unknown) => e instanceof DynError;

let scratchDir: string | undefined;
const scratch = (): string => (scratchDir ??= mkdtempSync(join(tmpdir(), 'dyn-fuzz-')));

/** An OpenAI body shaped like a real one, each field from the right family or a wrong one. */
const openAiBody = fc.record({
  model: fc.oneof(fc.constant('m1'), json),
  prompt: fc.oneof(fc.string({ maxLength: 50 }), fc.array(fc.integer(), { maxLength: 5 }), json),
  messages: fc.oneof(fc.array(fc.record({ role: fc.constantFrom('user', 'system', 'assistant', 'tool', 'x'), content: fc.oneof(fc.string({ maxLength: 30 }), json) }), { maxLength: 4 }), json),
  max_tokens: fc.oneof(fc.integer(), json),
  temperature: fc.oneof(fc.double(), json),
  stream: fc.oneof(fc.boolean(), json),
  stop: fc.oneof(fc.string({ maxLength: 5 }), fc.array(fc.string({ maxLength: 5 }), { maxLength: 5 }), json),
  n: fc.oneof(fc.integer(), json),
  logprobs: json,
  tools: json,
}, { requiredKeys: [] });

/** A real profile with one field replaced by a random JSON value (or removed). */
function profileMutation(): fc.Arbitrary<unknown> {
  const base = JSON.parse(readFileSync('profiles/llama3.1-8b.h100.json', 'utf8')) as Record<string, unknown>;
  const keys = Object.keys(base);
  return fc.tuple(fc.constantFrom(...keys), fc.option(json, { nil: undefined })).map(([k, v]) => {
    const o: Record<string, unknown> = { ...base };
    if (v === undefined) delete o[k];
    else o[k] = v;
    return o;
  });
}

/** The status of a gateway answer (a 500 is a crash: an error the gateway did not expect). */
export class HttpAnswer extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

const KEY = 'sk-fuzz-key-0001';
/** Raw HTTP/1.1 requests: methods, paths, auth and cookie headers (right, wrong, malformed), odd headers, bodies. */
function rawHttp(): fc.Arbitrary<string> {
  const token = fc.string({ maxLength: 20 });
  const header = fc.oneof(
    fc.constantFrom(`authorization: Bearer ${KEY}`, 'authorization: Bearer sk-wrong', 'authorization: Basic eDp5', `cookie: dynamollm_key=${KEY}`, 'cookie: dynamollm_key=', 'content-type: application/json', 'content-type: text/plain', 'transfer-encoding: chunked', 'expect: 100-continue', 'connection: upgrade', 'upgrade: websocket'),
    fc.tuple(fc.constantFrom('authorization', 'cookie', 'content-type', 'x-request-id', 'accept', 'host', 'content-length'), token).map(([k, v]) => `${k}: ${v}`),
    fc.tuple(token, token).map(([k, v]) => `${k}: ${v}`),
  );
  const body = fc.oneof(fc.constant(''), fc.string({ maxLength: 200 }), openAiBody.map((o) => JSON.stringify(o)), json.map((v) => JSON.stringify(v)));
  const path = fc.oneof(fc.constantFrom('/v1/completions', '/v1/chat/completions', '/v1/models', '/tokenize', '/detokenize', '/metrics', '/api/live', '/', '/healthz', `/?key=${KEY}`, '/?key=x', '/ws', '/dashboard.js'), token.map((t) => `/${t}`));
  const upgrade = fc.boolean();
  return fc.tuple(fc.constantFrom('GET', 'POST', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'HEAD', 'BREW'), path, fc.array(header, { maxLength: 6 }), body, upgrade).map(([m, p, hs, b, up]) => {
    // a complete request (its Content-Length is its body's): the gateway never waits for more. An upgrade asks
    // for the WebSocket (the server's upgrade handler, not its request handler)
    const ws = up ? ['connection: Upgrade', 'upgrade: websocket', 'sec-websocket-version: 13', 'sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ=='] : ['connection: close'];
    const lines = [`${m} ${p} HTTP/1.1`, 'host: fuzz', ...hs.filter((h) => !/^(content-length|connection|upgrade):/i.test(h)), `content-length: ${Buffer.byteLength(b)}`, ...ws];
    return `${lines.join('\r\n')}\r\n\r\n${b}`;
  });
}

/** One answer per request, the stream ends at once (the front door is under test, not the cluster). */
class OneTokenBackend implements GatewayBackend {
  async submit(req: InferenceRequest): Promise<AsyncIterable<TokenChunk>> {
    async function* gen(): AsyncGenerator<TokenChunk> {
      yield { v: 1, id: req.id, seq: 0, text: 'ok', tokens: 1, done: true, finishReason: 'stop', usage: { promptTokens: req.inputTokens, completionTokens: 1, energyJ: 0, energySource: 'modelled' } };
    }
    return gen();
  }
}

let gateway: Promise<{ gw: GatewayServer; port: number }> | undefined;
/** The gateway of the HTTP surface (one per process, API keys on, short timeouts); closeFuzzGateway() stops it. */
function fuzzGateway(): Promise<{ gw: GatewayServer; port: number }> {
  return (gateway ??= (async () => {
    const gw = new GatewayServer({ backend: new OneTokenBackend(), port: 0, apiKeys: [KEY], models: ['m1'], headersTimeoutMs: 1000, bodyTimeoutMs: 2000 });
    return { gw, port: await gw.listen() };
  })());
}
export async function closeFuzzGateway(): Promise<void> {
  if (!gateway) return;
  const g = await gateway;
  gateway = undefined;
  await g.gw.close(100);
}

/** Sends one raw request; throws HttpAnswer(status) when answered, an Error when the connection fails otherwise. */
async function httpOnce(raw: string): Promise<void> {
  const { port } = await fuzzGateway();
  // written without a half-close (a client FIN makes node end the connection before an async answer), read
  // up to the status line (an accepted WebSocket upgrade stays open)
  const text = await new Promise<string>((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let got = '';
    const t = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer within 5 s to ${JSON.stringify(raw.slice(0, 200))}`));
    }, 5000);
    const done = () => {
      clearTimeout(t);
      sock.destroy();
      resolve(got);
    };
    sock.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\r\n')) done();
    });
    sock.on('error', () => {}); // a reset after the answer: judged by what arrived
    sock.on('close', done);
    sock.write(raw);
  });
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(text);
  if (!m) throw new Error(`closed without an HTTP answer: ${JSON.stringify(raw.slice(0, 200))}`);
  throw new HttpAnswer(Number(m[1]));
}

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
  {
    name: 'config file (YAML text, loadConfig)',
    arb: fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.dictionary(fc.constantFrom('nats', 'servers', 'pools', 'engine', 'epochs', 'liveness', 'clusterId', 'x'), json).map((o) => toYaml(o)),
      fc.tuple(fc.constant(readFileSync('deploy/local.yaml', 'utf8')), fc.nat(4000), fc.string({ maxLength: 8 })).map(([t, at, ins]) => t.slice(0, at % (t.length + 1)) + ins + t.slice(at % (t.length + 1))),
    ),
    run: (text) => {
      const f = join(scratch(), 'config.yaml');
      writeFileSync(f, text as string);
      void loadConfig(f);
    },
    typed: (e) => e instanceof ConfigError,
  },
  {
    name: 'OpenAI request body (JSON text, parseOpenAiRequest)',
    arb: fc.tuple(fc.constantFrom('completion', 'chat'), fc.oneof(
      fc.string({ maxLength: 200 }),
      json.map((v) => JSON.stringify(v)),
      openAiBody.map((o) => JSON.stringify(o)),
    )),
    run: (i) => {
      const [kind, text] = i as ['completion' | 'chat', string];
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        return; // the gateway answers 400 before parsing (readJson)
      }
      parseOpenAiRequest(kind, body);
    },
    typed: (e) => e instanceof HttpError && e.status >= 400 && e.status < 500,
  },
  {
    name: 'HTTP requests to the gateway (request line, headers, body)',
    arb: rawHttp(),
    run: (req) => httpOnce(req as string),
    typed: (e) => e instanceof HttpAnswer && e.status !== 500,
  },
  {
    name: 'profile (JSON, parseProfile)',
    arb: fc.oneof(json, profileMutation()),
    run: (o) => void parseProfile(o),
    typed: (e) => e instanceof ProfileError || e instanceof ProfileRangeError,
  },
  {
    name: 'trace file (CSV or JSONL, loadTrace)',
    arb: fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.array(fc.tuple(fc.oneof(fc.double(), fc.integer(), fc.string({ maxLength: 25 })), fc.oneof(fc.integer(), fc.string({ maxLength: 6 })), fc.oneof(fc.integer(), fc.double())), { maxLength: 12 })
        .chain((rows) => fc.constantFrom('TIMESTAMP,ContextTokens,GeneratedTokens', 'timestamp,input_length,output_length', 'ts,in').map((h) => [h, ...rows.map((r) => r.join(','))].join('\n'))),
      fc.array(fc.dictionary(fc.constantFrom('timestamp', 'input_length', 'output_length', 'hash_ids', 'x'), json, { maxKeys: 4 }), { maxLength: 8 }).map((rs) => rs.map((r) => JSON.stringify(r)).join('\n')),
    ),
    run: async (text) => {
      const f = join(scratch(), 'trace.csv');
      writeFileSync(f, text as string);
      await loadTrace(f);
    },
    typed: (e) => e instanceof TraceFormatError,
  },
];

/** Runs `n` inputs of a surface; returns crashes (with the first counterexample) and typed errors. */
export async function fuzz(s: Surface, n: number, seed = 12): Promise<{ runs: number; typedErrors: number; crashes: number; example?: string }> {
  let typedErrors = 0;
  let crashes = 0;
  let example: string | undefined;
  const judge = (input: unknown, e: unknown) => {
    if (s.typed(e)) typedErrors++;
    else {
      crashes++;
      example ??= `${(e as Error)?.message ?? String(e)} on ${JSON.stringify(input, (_k, v) => (v instanceof Uint8Array ? Array.from(v) : v))?.slice(0, 300)}`;
    }
  };
  await fc.assert(
    fc.asyncProperty(s.arb, async (input) => {
      try {
        const r = s.run(input);
        if (r) await r;
      } catch (e) {
        judge(input, e);
      }
    }),
    { numRuns: n, seed },
  );
  return { runs: n, typedErrors, crashes, example };
}

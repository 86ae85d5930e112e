/**
 * The gateway's native data plane in the data-path suites (actors/gateway/data-plane.ts, docs/DATAPATH.md "Native
 * data plane"): native/relay.c built here into a temporary directory and loaded, and the gateway's HTTP layer
 * (GatewayServer) on it over a suite's NatsBackend, streamed through with the OpenAI client over plain HTTP/1.1 (so
 * its one-choice streams are eligible). The server learns which instance admitted each request (for a kill or a drain
 * of the one serving it).
 */
import OpenAI from 'openai';
import type { NativeDataPlane } from '../../actors/gateway/data-plane.ts';
import type { NatsBackend } from '../../actors/gateway/nats-backend.ts';
import { GatewayServer, type GatewayBackend } from '../../actors/gateway/server.ts';
import { MODEL, PROMPT } from './gateway-cluster.ts';

export { buildNativePlane } from './native-plane.ts';

export interface HttpStreamed {
  /** the cluster's request id (the chunks' `cmpl-<id>`) */
  id: string;
  text: string;
  finishes: (string | null)[];
  usage?: OpenAI.CompletionUsage;
  /** the request's client-side error, when its stream ended with one */
  error?: string;
  /** the client went away (abortAt) */
  aborted?: true;
}

export interface NativeHttpGateway {
  /** the instance that admitted each request's first leg, by request id */
  serving: Map<string, string>;
  /**
   * A streamed completion of exactly `max` tokens (ignore_eos): `onWords(words, id)` after each chunk (the emulator's
   * tokens are one word each); `abortAt`: the client goes away once it has that many words.
   */
  stream(max: number, onWords?: (words: number, id: string) => void, abortAt?: number): Promise<HttpStreamed>;
  close(): Promise<void>;
}

/** GatewayServer on `plane` over `backend`, listening on a free port. */
export async function nativeHttpGateway(backend: NatsBackend, plane: NativeDataPlane): Promise<NativeHttpGateway> {
  const serving = new Map<string, string>();
  const learn: GatewayBackend = {
    // the stream itself is the backend's (its batches, and with them the native offer, reach the engine client)
    submit: async (req, signal, hooks) => {
      const s = await backend.submit(req, signal, hooks);
      serving.set(req.id, s.admission.instance ?? '');
      return s;
    },
    tokenize: (r) => backend.tokenize(r),
  };
  const server = new GatewayServer({ backend: learn, dataPlane: plane, port: 0, host: '127.0.0.1', models: [MODEL] });
  const port = await server.listen();
  const client = new OpenAI({ apiKey: 'none', baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0, timeout: 60_000 });
  return {
    serving,
    async stream(max, onWords, abortAt) {
      const ac = new AbortController();
      const out: HttpStreamed = { id: '', text: '', finishes: [] };
      try {
        const s = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: max, stream: true, stream_options: { include_usage: true }, ignore_eos: true } as OpenAI.CompletionCreateParamsStreaming, { signal: ac.signal });
        for await (const ch of s) {
          out.id ||= ch.id.replace(/^cmpl-/, '');
          if (ch.usage) out.usage = ch.usage;
          const c = ch.choices[0];
          if (!c) continue;
          out.text += c.text;
          if (c.finish_reason) out.finishes.push(c.finish_reason);
          const words = out.text.trim().split(/\s+/).filter(Boolean).length;
          onWords?.(words, out.id);
          if (abortAt !== undefined && words >= abortAt && !out.aborted) {
            out.aborted = true;
            ac.abort();
          }
        }
      } catch (err) {
        out.error = (err as Error).message;
      }
      return out;
    },
    close: () => server.close(100),
  };
}

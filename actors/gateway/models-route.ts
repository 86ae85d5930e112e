/**
 * `GET /v1/models` (vLLM's model list): each served model with its context length (`max_model_len`), as the engine's
 * tokenizer reports it. A model whose context length is not known yet is asked in the background (one question per
 * model at a time), and the listing waits for that answer at most MODELS_WAIT_MS: a tokenizer that does not answer
 * (no instance up, NATS down) never holds the listing longer, which then answers without `max_model_len`.
 */
import type { Clock } from '../../src/runtime/clock.ts';
import type { PromptCounter } from './tokens.ts';
import { countTokens } from './tokenize-routes.ts';

/** The longest a listing waits for a model's context length (ms). */
export const MODELS_WAIT_MS = 500;

export interface ModelCard {
  id: string;
  object: 'model';
  created: number;
  owned_by: 'dynamollm';
  root: string;
  parent: null;
  max_model_len?: number;
}

export class ModelList {
  /** the question out for each model whose context length is not known yet. */
  readonly #asked = new Map<string, Promise<void>>();

  constructor(
    private readonly counter: PromptCounter,
    private readonly models: readonly string[],
    private readonly clock: Clock,
    private readonly waitMs = MODELS_WAIT_MS,
  ) {}

  /** The listing: every model's context length known within waitMs is in it. */
  async list(): Promise<{ object: 'list'; data: ModelCard[] }> {
    const pending = this.models.flatMap((id) => this.#ask(id) ?? []);
    if (pending.length > 0) {
      const ac = new AbortController();
      await Promise.race([Promise.all(pending), this.clock.sleep(this.waitMs, ac.signal).catch(() => undefined)]);
      ac.abort();
    }
    const created = Math.floor(this.clock.now() / 1000);
    const data = this.models.map((id): ModelCard => {
      const maxLen = this.counter.maxModelLen.get(id);
      return { id, object: 'model', created, owned_by: 'dynamollm', root: id, parent: null, ...(maxLen !== undefined ? { max_model_len: maxLen } : {}) };
    });
    return { object: 'list', data };
  }

  /** The question for model `id`'s context length (asked now if none is out); undefined when it is known. */
  #ask(id: string): Promise<void> | undefined {
    if (this.counter.maxModelLen.has(id)) return undefined;
    let q = this.#asked.get(id);
    if (!q) {
      q = countTokens(this.counter, id, '', undefined).then(() => undefined, () => undefined).finally(() => this.#asked.delete(id));
      this.#asked.set(id, q);
    }
    return q;
  }
}

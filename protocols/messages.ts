/**
 * Every message of dynamollm, as zod schemas (the validation) with their TypeScript types and codecs.
 * Each carries `v: 1`; the codec rejects any other version. Field units are in the names (Ms, W, J, Mhz).
 */
import { z } from 'zod';
import { codec } from './codec.ts';
import { REQUEST_TYPES } from './request-types.ts';
import { ACTOR_KINDS, EVENT_KINDS, ROOT } from './subjects.ts';
import { FINISH_REASONS, MAX_CHUNK_TOKENS, fastTokenChunk } from './token-chunk-check.ts';
import { RequestRecord, legOutcome, requestRecord } from './request-record.ts';
import { REQUEST_TTFT_BUCKETS_S, requestCounts, type RequestCountGroup, type RequestCounts } from './request-counts.ts';
import { rangedNumber } from './sampling-limits.ts';
export { FINISH_REASONS, MAX_CHUNK_TOKENS, REQUEST_TTFT_BUCKETS_S, RequestRecord, requestCounts, requestRecord, type RequestCountGroup, type RequestCounts };

/** A token stream subject: `dyn.v1.stream.<request id>` (never another subject: an instance publishes there). */
export const STREAM_SUBJECT = new RegExp(`^${ROOT.replace('.', '\\.')}\\.stream\\.[A-Za-z0-9_-]{1,128}$`);

const v = z.literal(1);
const id = z.string().min(1).max(128).regex(/^[A-Za-z0-9_-]+$/);
const nonneg = z.number().finite().nonnegative();
const int = z.number().int().nonnegative();
const requestType = z.enum(REQUEST_TYPES);
const loadByType = z.record(requestType, nonneg);

export const wireError = z.object({
  code: z.enum([
    'protocol', 'timeout', 'no_responders', 'remote', 'mailbox_full', 'overloaded', 'rejected', 'not_found',
    'unavailable', 'cancelled', 'engine_crashed', 'invalid_request', 'internal',
  ]),
  message: z.string().max(4096),
  retryable: z.boolean(),
  retryAfterS: nonneg.optional(),
});

/** Generic reply to commands, and the error reply to a request whose payload failed validation. */
export const ack = z.object({ v, ok: z.boolean(), error: wireError.optional(), detail: z.record(z.unknown()).optional() });
export type Ack = z.infer<typeof ack>;
export const Ack = codec('Ack', ack);

/** A JSON object of any content (tools, response_format, tool calls, logprobs): passed on as it came. */
const jsonObject = z.record(z.unknown());

/**
 * One chat message as the client sent it (OpenAI/vLLM shape): any role (vLLM's custom message: `ipython`, `function`...),
 * content a string, an array of content parts (`{type: 'text', text}`, images..., or a plain string) or null (an
 * assistant turn that only called tools). Fields other than these pass through unchanged to the engine's chat template.
 */
export const chatMessage = z
  .object({
    role: z.string(),
    content: z.union([z.string(), z.array(z.union([z.string(), jsonObject])), z.null()]).optional(),
    name: z.string().max(256).optional(),
    tool_calls: z.array(jsonObject).optional(),
    tool_call_id: z.string().max(256).optional(),
  })
  .passthrough();
export type ChatMessageT = z.infer<typeof chatMessage>;

const finiteNum = z.number().finite();
const tokenIds = z.array(int);
/**
 * vLLM's `structured_outputs` (vllm/sampling_params.py StructuredOutputsParams; the guided_* fields' successor): one
 * constraint (json, regex, choice, grammar, json_object or structural_tag) and its options. vLLM refuses none or
 * several constraints, and so does this schema.
 */
const structuredOutputs = z
  .object({
    json: z.union([z.string(), jsonObject]).optional(), regex: z.string().optional(), choice: z.array(z.string()).min(1).optional(),
    grammar: z.string().optional(), json_object: z.boolean().optional(), structural_tag: z.string().optional(),
    disable_fallback: z.boolean().optional(), disable_any_whitespace: z.boolean().optional(),
    disable_additional_properties: z.boolean().optional(), whitespace_pattern: z.string().optional(),
  })
  .strict()
  .refine((o) => ['json', 'regex', 'choice', 'grammar', 'json_object', 'structural_tag'].filter((k) => o[k as keyof typeof o] !== undefined).length === 1, {
    message: 'takes exactly one constraint: json, regex, choice, grammar, json_object or structural_tag',
  });
/** the longest `request_id` a client may send, characters (the gateway's bound; a choice's id adds its `<i>_` prefix). */
export const REQUEST_ID_MAX = 256;
/**
 * The request parameters of vLLM's OpenAI server (/v1/completions and /v1/chat/completions) that the gateway
 * carries to the engine unchanged, under vLLM's own names (vllm/entrypoints/openai/protocol.py). Structural
 * fields (model, prompt, messages, max_tokens, stream, stream_options) and the ones the cluster itself reads
 * (min_tokens, ignore_eos, temperature) travel as InferenceRequest fields instead. Strict: a name vLLM's request
 * models do not define never gets here (the gateway ignores it as vLLM does, and says so: actors/gateway/ignored-fields.ts).
 */
export const engineParams = z
  .object({
    // OpenAI sampling
    top_p: rangedNumber('top_p').optional(),
    frequency_penalty: rangedNumber('frequency_penalty').optional(),
    presence_penalty: rangedNumber('presence_penalty').optional(),
    logit_bias: z.record(finiteNum).optional(),
    seed: rangedNumber('seed').optional(),
    stop: z.union([z.string().min(1), z.array(z.string().min(1))]).optional(),
    /** completions: an integer (top alternatives per token); chat: a boolean (with top_logprobs). */
    logprobs: z.union([z.boolean(), rangedNumber('logprobs')]).optional(),
    top_logprobs: rangedNumber('top_logprobs').optional(),
    echo: z.boolean().optional(),
    user: z.string().optional(),
    response_format: jsonObject.optional(),
    // chat: tools
    tools: z.array(jsonObject).optional(),
    tool_choice: z.union([z.string(), jsonObject]).optional(),
    parallel_tool_calls: z.boolean().optional(),
    reasoning_effort: z.string().max(32).optional(),
    include_reasoning: z.boolean().optional(),
    // vLLM sampling extras
    top_k: rangedNumber('top_k').optional(),
    min_p: rangedNumber('min_p').optional(),
    repetition_penalty: rangedNumber('repetition_penalty').optional(),
    length_penalty: finiteNum.optional(),
    stop_token_ids: tokenIds.optional(),
    include_stop_str_in_output: z.boolean().optional(),
    skip_special_tokens: z.boolean().optional(),
    spaces_between_special_tokens: z.boolean().optional(),
    /** the prompt's last k tokens only; -1: the last max_model_len (vLLM's meaning). */
    truncate_prompt_tokens: z.number().int().min(-1).optional(),
    allowed_token_ids: tokenIds.optional(),
    bad_words: z.array(z.string()).optional(),
    // vLLM extras
    add_special_tokens: z.boolean().optional(),
    add_generation_prompt: z.boolean().optional(),
    continue_final_message: z.boolean().optional(),
    documents: z.array(jsonObject).optional(),
    chat_template: z.string().optional(),
    chat_template_kwargs: jsonObject.optional(),
    mm_processor_kwargs: jsonObject.optional(),
    guided_json: z.union([z.string(), jsonObject]).optional(),
    guided_regex: z.string().optional(),
    guided_choice: z.array(z.string()).optional(),
    guided_grammar: z.string().optional(),
    structural_tag: z.string().optional(),
    guided_decoding_backend: z.string().max(64).optional(),
    /** vLLM's current structured-output constraint (StructuredOutputsParams): exactly one of its constraints. */
    structured_outputs: structuredOutputs.optional(),
    guided_whitespace_pattern: z.string().optional(),
    priority: z.number().int().optional(),
    /** the client's id (at most 256 characters, checked at the gateway); choice i of n > 1 carries `<i>_<id>` (childRequest). */
    request_id: z.string().max(REQUEST_ID_MAX + 8).optional(),
    logits_processors: z.array(z.unknown()).optional(),
    return_tokens_as_token_ids: z.boolean().optional(),
    cache_salt: z.string().min(1).optional(),
    vllm_xargs: z.record(z.union([z.string(), finiteNum])).optional(),
  })
  .strict();
export type EngineParams = z.infer<typeof engineParams>;
/** parameters only /v1/chat/completions accepts (vLLM's ChatCompletionRequest). */
export const CHAT_ONLY_PARAMS: readonly (keyof EngineParams)[] = [
  'top_logprobs', 'tools', 'tool_choice', 'parallel_tool_calls', 'reasoning_effort', 'include_reasoning', 'bad_words',
  'add_generation_prompt', 'continue_final_message', 'documents', 'chat_template', 'chat_template_kwargs',
  'mm_processor_kwargs', 'structural_tag',
];

/** A client request as it travels gateway -> cluster -> pool -> instance. */
export const inferenceRequest = z.object({
  v,
  id,
  model: z.string().min(1).max(256),
  kind: z.enum(['completion', 'chat']),
  prompt: z.union([z.string(), z.array(int)]).optional(),
  messages: z.array(chatMessage).optional(),
  /** prompt length in tokens, counted at the gateway. */
  inputTokens: int,
  maxTokens: z.number().int().positive(),
  minTokens: int.optional(),
  ignoreEos: z.boolean().optional(),
  temperature: rangedNumber('temperature').optional(),
  /** every other parameter of the client's request, for the engine (see engineParams). */
  params: engineParams.optional(),
  tenant: z.string().max(128).optional(),
  /** set by the gateway when API keys are configured: which key authenticated the request, as apiKeyIdOf(key)
   * (a digest prefix: names the key for accounting, never reveals it). */
  apiKeyId: z.string().max(64).regex(/^[A-Za-z0-9_-]+$/).optional(),
  /** wall time the gateway accepted it (ms since epoch). */
  arrivalMs: nonneg,
  /** The client's give-up time (ms since epoch): past it nobody waits for the answer any more (the gateway's
   * request timeout, 600 s by default). Not the SLO: that is `slo` and `ttftDeadlineMs`. */
  giveUpAtMs: nonneg,
  /** where the instance sends TokenChunks, subjects.stream(id): checked by the instance so a request cannot aim tokens elsewhere. */
  streamSubject: z.string().max(256).regex(STREAM_SUBJECT, 'streamSubject must be dyn.v1.stream.<request id>'),
  /** set by the cluster manager on classification, with `slo` and `ttftDeadlineMs`. */
  type: requestType.optional(),
  /** the SLO of the request's type (p99 TTFT by input class, TBT), ms; set on classification. */
  slo: z.object({ ttftMs: nonneg, tbtMs: nonneg }).optional(),
  /** arrivalMs + slo.ttftMs: when its first token is due (the emergency reorder sorts by it), ms since epoch. */
  ttftDeadlineMs: nonneg.optional(),
  predictedOutputTokens: int.optional(),
  pool: z.string().max(128).optional(),
  /** times this request was moved between instances (emergency step 3, failures). */
  moves: int.optional(),
  /**
   * set by the intake on its first pass along the request's chain of pools (policy spillPasses; the gateway's routing
   * decides the same from its view): a pool whose every instance is at its SLO cap refuses it as overloaded
   * (retryable) instead of taking it, so the next pool of the chain gets it (the cluster plan gives a pool floor(D)
   * servers and sizes the longer pools for the rest). Absent (the second pass): the pool takes it at its cap (its
   * least-loaded instance; the emergency ladder acts).
   */
  spill: z.boolean().optional(),
  /**
   * the gateway reads the engine itself (docs/DATAPATH.md): when the request starts, the instance publishes a
   * grant (TokenChunk.grant) instead of the tokens, and learns the outcome from the gateway's LegReport.
   */
  direct: z.boolean().optional(),
  /** a direct request sent to its instance without `prompt` and `messages` (the gateway sends them to the engine): their
   * form, for policy continuable. An instance that would stream it itself refuses it (docs/DATAPATH.md "What the instance keeps of a request"). */
  promptForm: z.enum(['text', 'chat', 'ids']).optional(),
  /**
   * set by a gateway that asks the instance itself (its own routing, subjects.instanceAdmit): a direct request
   * that starts at once gets its grant in the admission reply (Admission.grant) instead of a TokenChunk on the
   * stream subject. The instance never keeps it (a request it hands on is granted on the stream subject).
   */
  replyGrant: z.boolean().optional(),
  /** set by a gateway with replyGrant: its id, asking the instance to lend it admission credits
   * (Admission.credit; docs/DATAPATH.md "Admission credits"). The instance never keeps it. */
  creditTo: z.string().min(1).max(128).regex(/^[A-Za-z0-9_.-]+$/).optional(),
  /** set by a gateway that grants relay credit (LegReport `credit`; docs/DATAPATH.md): an instance streaming the leg paces it
   * by the grants (src/policy/relay-flow.ts) and marks its first chunk (TokenChunk.relayCredit). Absent: unpaced. */
  relayCredit: z.boolean().optional(),
  /** a migrated request's leg number (1 = the first continuation): its prompt already holds the tokens sent. */
  migration: int.optional(),
  /**
   * a continuation leg (a migration or a resume, `<request>-m<n>`): the client's request id it continues. The instance
   * copies it into the leg's RequestRecord (`request`), so a consumer sums a request's legs without parsing ids.
   */
  request: id.optional(),
  /** a readiness probe (`dynamollm up`'s first request; header x-dynamollm-probe with the run's probe token on a one-token request): served as any
   * request, but not traffic: the instance leaves it out of its load and its admission counter (status admittedByType,
   * whose first increments start the pool's re-shard epochs), and the intake's output predictor does not learn from it. */
  probe: z.boolean().optional(),
});
export type InferenceRequest = z.infer<typeof inferenceRequest>;
export const InferenceRequest = codec('InferenceRequest', inferenceRequest);

/** Ask an instance to count a prompt with its engine's tokenizer (vLLM's /tokenize; chat: the chat template applied).
 * `params` carries the template's options (add_generation_prompt, tools, chat_template...). */
export const tokenizeRequest = z.object({
  v,
  model: z.string().min(1).max(256),
  prompt: z.union([z.string(), z.array(int)]).optional(),
  messages: z.array(chatMessage).optional(),
  params: engineParams.optional(),
  /** also return the token ids (the gateway's /tokenize); counting alone does not need them. */
  returnTokens: z.boolean().optional(),
  returnTokenStrs: z.boolean().optional(),
});
export type TokenizeRequest = z.infer<typeof tokenizeRequest>;
export const TokenizeRequest = codec('TokenizeRequest', tokenizeRequest);

export const tokenizeReply = z.object({
  v,
  ok: z.boolean(),
  count: int.optional(),
  /** the engine's context length (vLLM max_model_len). */
  maxModelLen: int.optional(),
  /** the engine's `--max-logprobs` (alternatives per token a request may ask for); absent: vLLM's default, 20. */
  maxLogprobs: int.optional(),
  tokens: z.array(int).optional(),
  tokenStrs: z.array(z.string()).optional(),
  error: wireError.optional(),
});
export type TokenizeReply = z.infer<typeof tokenizeReply>;
export const TokenizeReply = codec('TokenizeReply', tokenizeReply);

/** Token ids back to text with the engine's tokenizer (vLLM's /detokenize). */
export const detokenizeRequest = z.object({ v, model: z.string().min(1).max(256), tokens: z.array(int).max(1 << 20) });
export type DetokenizeRequest = z.infer<typeof detokenizeRequest>;
export const DetokenizeRequest = codec('DetokenizeRequest', detokenizeRequest);
export const detokenizeReply = z.object({ v, ok: z.boolean(), prompt: z.string().optional(), error: wireError.optional() });
export type DetokenizeReply = z.infer<typeof detokenizeReply>;
export const DetokenizeReply = codec('DetokenizeReply', detokenizeReply);

/**
 * The right to stream a direct request from its engine: the engine's URL and API key (only gateways read
 * stream subjects and admission replies to them). `reportWithinMs`: the gateway reports 'started' only when no
 * first token came within it (its first-token or end report says it took the grant); the instance frees a
 * seat whose grant nobody took after twice that. Absent: the gateway reports 'started' at once.
 */
export const grant = z.object({
  url: z.string().max(512).regex(/^https?:\/\/[^\s/]+$/),
  apiKey: z.string().min(16).max(256),
  reportWithinMs: int.optional(),
});
export type Grant = z.infer<typeof grant>;

/**
 * Admission credits an instance lends one gateway (docs/DATAPATH.md "Admission credits"; policy src/policy/machines/credits.ts): in credit
 * epoch `epoch` this gateway may start `total` requests in all (cumulative, the spent ones included) without asking, within `ttlMs` of receiving this loan; `spent` of them spent as the instance counted when it lent (the gateway takes the larger of its count and it);
 * `joins`: it reads a credited report carrying the leg's first token and end as all three (absent: each alone); `batches`: it reads a LegReportBatch on its leg subject (protocols/leg-batch.ts); `recycles`: it adds a credited leg's seat its gateway kept to this loan (LegReport.recycled). A later `creditEpoch` revokes it.
 */
export const creditLoan = z.object({ epoch: int, total: int, spent: int.optional(), ttlMs: int, joins: z.literal(true).optional(), batches: z.literal(true).optional(), recycles: z.literal(true).optional() });
export type CreditLoan = z.infer<typeof creditLoan>;

/** Answer to intake/dispatch/admit: accepted (tokens will follow on streamSubject) or refused. */
export const admission = z.object({
  v,
  id,
  ok: z.boolean(),
  type: requestType.optional(),
  pool: z.string().max(128).optional(),
  instance: z.string().max(128).optional(),
  /** the admitting instance process's start (its InstanceStatus.startedMs): a later status with another start means that process is gone. */
  startedMs: nonneg.optional(),
  error: wireError.optional(),
  /** the request (InferenceRequest.replyGrant) started at once: its grant, instead of a TokenChunk on the stream subject. */
  grant: grant.optional(),
  /** the request started at once and asked (InferenceRequest.creditTo): the credits lent to that gateway. */
  credit: creditLoan.optional(),
});
export type Admission = z.infer<typeof admission>;
export const Admission = codec('Admission', admission);

export const usage = z.object({
  promptTokens: int, completionTokens: int, energyJ: nonneg,
  /** where the energy figure came from: the GPU's counter, or the model (emulated GPU). */
  energySource: z.enum(['measured', 'modelled']),
  /** of energyJ, the gateway's estimate (modelled by the instance's own rule) for legs whose instance died before reporting it; absent: none. */
  energyEstimatedJ: nonneg.optional(),
});
export type Usage = z.infer<typeof usage>;

export type FinishReasonT = (typeof FINISH_REASONS)[number];

/** One piece of a token stream; the last one has `done: true` (with usage) or an `error`. */
export const tokenChunk = z.object({
  v,
  id,
  seq: int,
  text: z.string(),
  tokens: int,
  done: z.boolean().optional(),
  finishReason: z.enum(FINISH_REASONS).optional(),
  /** vLLM's stop_reason on the final chunk: the stop string or stop token id that ended the output, or null. */
  stopReason: z.union([z.string(), z.number().int(), z.null()]).optional(),
  /** the engine's logprobs object for this chunk's tokens, as it sent it (completions or chat shape). */
  logprobs: jsonObject.optional(),
  /** the engine's tool call deltas of this chunk (chat: delta.tool_calls), as it sent them. */
  toolCalls: z.array(jsonObject).optional(),
  /** reasoning text of this chunk (vLLM's delta.reasoning_content, with a reasoning parser). */
  reasoning: z.string().optional(),
  usage: usage.optional(),
  error: wireError.optional(),
  instance: z.string().max(128).optional(),
  pool: z.string().max(128).optional(),
  type: requestType.optional(),
  ttftMs: nonneg.optional(),
  /**
   * Coalesced chunks (instance config engine.streamCoalesceMs > 0) carry `tokens` tokens in `text`; this
   * gives each token's arrival from the engine, ms after the chunk's first token (so [0, ...], one entry
   * per token, non-decreasing). Absent: one token per chunk, or timing not known.
   */
  tokenOffsetsMs: z.array(nonneg).max(MAX_CHUNK_TOKENS).optional(),
  /**
   * a direct request (InferenceRequest.direct) may start: the gateway streams from this engine itself, with
   * this key (the engine's API key; only gateways may read stream subjects). Sent alone, seq 0, no text.
   */
  grant: grant.optional(),
  /**
   * the pool (`pool`) holds the request for a ready instance (none is ready, capacity is coming: an engine or
   * instance starting, a re-shard, a new leader) and answers its admission within `forMs` ms: admitted, or
   * refused. Sent alone by the pool leader, seq 0, no text, before any admission; again to each retry of the
   * dispatch. The caller waiting for the admission keeps waiting (within the request's give-up time) instead
   * of giving up at its own intake budget. Not a token.
   */
  hold: z.object({ forMs: nonneg }).optional(),
  /** the first chunk of a leg its instance paces by the gateway's grants (InferenceRequest.relayCredit): the gateway grants it. */
  relayCredit: z.boolean().optional(),
});
export type TokenChunk = z.infer<typeof tokenChunk>;

export const TokenChunk = codec('TokenChunk', tokenChunk, fastTokenChunk);
/** the fast validator alone, for the agreement test against zod. */
export const fastTokenChunkCheck: (c: Record<string, unknown>) => boolean = fastTokenChunk;

/**
 * gateway -> the instance that granted a direct request (subjects.instanceLeg): the first token's arrival
 * (published, no reply) and the leg's end (request -> LegReply with the energy to put in usage). Times are
 * the gateway's wall clock, like the request's arrivalMs. Also a relayed request's `credit` (src/policy/relay-flow.ts).
 */
export const legReport = z.object({
  v,
  id,
  /**
   * started: the gateway took the grant and opened the engine stream; first_token; end; credited: the gateway started `request` on a
   * credit this instance lent it (`credit`), and streams it from the engine already (with `firstTokenMs` it is the first-token report
   * too, with `outcome` the end report too: a short leg's reports in one message). credit: the chunks of a relayed request
   * it may publish in all (`creditBytes`); past it, it waits for a larger grant. */
  phase: z.enum(['started', 'first_token', 'end', 'credited', 'credit']),
  /** credit: the grant, in bytes of chunks (relay-flow.ts heldBytesOf) since the leg began; for a leg whose first chunk had relayCredit. */
  creditBytes: int.optional(),
  /** credited: the request (as the gateway would have asked for its admission). */
  request: inferenceRequest.optional(),
  /** credited: whose credit of which epoch; `topUp`: a request (-> LegReply.credit), not a publish, for `want` credits (its pace: policy credits.ts). */
  credit: z.object({ gateway: z.string().min(1).max(128).regex(/^[A-Za-z0-9_.-]+$/), epoch: int, topUp: z.boolean().optional(), want: z.number().int().min(1).max(1024).optional() }).optional(),
  /** started, first_token, credited: the gateway process streaming the leg from the engine (its Heartbeat's id and startedMs): once its
   * heartbeats have lapsed, the instance ends the leg after a grace for a resume on another gateway, not at the give-up time. */
  gateway: z.object({ id: z.string().min(1).max(128).regex(/^[A-Za-z0-9_.-]+$/), startedMs: nonneg }).optional(),
  /** end: from the gateway a client resumed the stream on, for the leg another gateway streams: the instance ends that gateway's
   * engine call too (a non-retryable error chunk on the leg's stream subject), then records the leg as this report says. */
  resumed: z.boolean().optional(),
  /** the end: how the leg ended ('failed': the engine's stream broke; 'timed_out': the request reached giveUpAtMs). */
  outcome: legOutcome.optional(),
  recycled: z.literal(true).optional(), // an end of a credited leg: its gateway keeps the seat as one more credit of the loan, as the instance does (policy creditRecycle)
  firstTokenMs: nonneg.optional(),
  tbtSumMs: nonneg.optional(),
  tbtMaxMs: nonneg.optional(),
  tbtN: int.optional(),
  completionTokens: int.optional(),
  promptTokens: int.optional(),
  /** the engine's own energy figure for the request (the emulator's modelled usage.energy_joules), J. */
  engineEnergyJ: nonneg.optional(),
});
export type LegReport = z.infer<typeof legReport>;
export const LegReport = codec('LegReport', legReport);
export const legReply = z.object({
  v, ok: z.boolean(), energyJ: nonneg.optional(), energySource: z.enum(['measured', 'modelled']).optional(), error: wireError.optional(),
  /** a credited report that asked for a top-up: the gateway's new loan. */
  credit: creditLoan.optional(),
});
export type LegReply = z.infer<typeof legReply>;
export const LegReply = codec('LegReply', legReply);

export const cancel = z.object({ v, id, reason: z.string().max(512) });
export type Cancel = z.infer<typeof cancel>;
export const Cancel = codec('Cancel', cancel);

export const lifecycleState = z.enum(['starting', 'running', 'draining', 'stopped', 'failed']);

export const heartbeat = z.object({
  v,
  kind: z.enum(ACTOR_KINDS),
  id,
  seq: int,
  /** process start, ms since epoch (a restart shows as a new startedMs). */
  startedMs: nonneg,
  sentMs: nonneg,
  state: lifecycleState,
  load: z.object({ queued: int, running: int, mailbox: int.optional(), rps: nonneg.optional() }),
  meta: z.record(z.union([z.string(), z.number(), z.boolean()])).optional(),
});
export type Heartbeat = z.infer<typeof heartbeat>;
export const Heartbeat = codec('Heartbeat', heartbeat);

export const instanceTelemetry = z.object({
  v,
  id,
  pool: z.string().max(128),
  node: z.string().max(128).optional(),
  tp: z.number().int().positive(),
  gpus: z.array(int),
  clockMhz: nonneg,
  maxClockMhz: nonneg,
  /** instance power (sum over its GPUs), W. */
  powerW: nonneg,
  /** cumulative instance energy since the manager started, J. */
  energyJ: nonneg,
  energySource: z.enum(['measured', 'modelled']),
  /**
   * present when the GPU read of this message failed: powerW and energyJ are the last successful reading's, taken this
   * many ms before sentMs (power sums that include it say so: stalePowerW); the next good reading adds the energy since.
   */
  gpuStaleMs: nonneg.optional(),
  queued: int, running: int,
  kvUsage: nonneg.optional(),
  loadByType,
  ttftP99Ms: nonneg.optional(), tbtP99Ms: nonneg.optional(),
  emergency: z.string().max(64).optional(),
  state: z.string().max(32),
  sentMs: nonneg,
  /** the sums of the request records this manager published since it started (protocols/request-counts.ts). */ requests: requestCounts.optional(),
});
export type InstanceTelemetry = z.infer<typeof instanceTelemetry>;
export const InstanceTelemetry = codec('InstanceTelemetry', instanceTelemetry);

/**
 * A server's GPUs that no instance holds (between a drain and the next start, or never assigned), as its node
 * agent accounts them, 1/s per node: they draw idle power all the same, so the cluster's energy counts them.
 */
export const nodeTelemetry = z.object({
  v,
  node: id,
  gpus: int,
  /** GPU indices no instance holds now. */
  unallocated: z.array(int).max(64),
  /** power of those GPUs, W. */
  powerW: nonneg,
  /** cumulative energy of this node's GPUs while no instance held them, since the node agent started, J. */
  energyJ: nonneg,
  energySource: z.enum(['measured', 'modelled']),
  sentMs: nonneg,
});
export type NodeTelemetry = z.infer<typeof nodeTelemetry>;
export const NodeTelemetry = codec('NodeTelemetry', nodeTelemetry);

/** One pool, as the cluster leader sees it from its instances' telemetry and its pool leader's status. */
export const poolTelemetry = z.object({
  v,
  pool: id,
  leader: z.string().max(128).optional(),
  types: z.array(requestType),
  /** GPUs granted to the pool. */
  gpus: int,
  instances: int,
  readyInstances: int,
  /** sum of the live instances' last power readings, W. */
  powerW: nonneg,
  /** of powerW, the instances whose last GPU read failed (their last successful reading, InstanceTelemetry.gpuStaleMs), W; absent: none. */
  stalePowerW: nonneg.optional(),
  /** pool energy since the cluster leader started, J (sum of its instances' energy increments). */
  energyJ: nonneg,
  queued: int,
  running: int,
  /** measured offered load, req/s by type (the pool leader's EWMA). */
  loadByType,
  sentMs: nonneg,
});
export type PoolTelemetry = z.infer<typeof poolTelemetry>;
export const PoolTelemetry = codec('PoolTelemetry', poolTelemetry);

/** The whole cluster, from the cluster leader. */
export const clusterTelemetry = z.object({
  v,
  leader: z.string().max(128),
  pools: int,
  instances: int,
  readyInstances: int,
  gpus: int,
  freeGpus: int,
  powerW: nonneg,
  stalePowerW: nonneg.optional(),
  /** cluster energy since the cluster leader started, J. */
  energyJ: nonneg,
  queued: int,
  running: int,
  loadByType,
  /** with a power driver (config power.driver): servers by power state and the power commands this leader issued. */
  servers: z.object({ on: int, booting: int, stopping: int, off: int, failed: int, powerChanges: int }).optional(),
  sentMs: nonneg,
});
export type ClusterTelemetry = z.infer<typeof clusterTelemetry>;
export const ClusterTelemetry = codec('ClusterTelemetry', clusterTelemetry);

/** A decision or reconfiguration, with the inputs that justified it. */
export const decisionEvent = z.object({
  v,
  kind: z.enum(EVENT_KINDS),
  actor: z.string().max(128),
  atMs: nonneg,
  summary: z.string().max(1024),
  decision: z.record(z.unknown()),
  inputs: z.record(z.unknown()),
});
export type DecisionEvent = z.infer<typeof decisionEvent>;
export const DecisionEvent = codec('DecisionEvent', decisionEvent);

export const statusRequest = z.object({ v, detail: z.boolean().optional() });
export type StatusRequest = z.infer<typeof statusRequest>;
export const StatusRequest = codec('StatusRequest', statusRequest);

export const clusterStatus = z.object({
  v,
  leader: z.string().max(128),
  atMs: nonneg,
  /** what an operator must know, e.g. that NATS runs without authorization (`up --insecure-nats`). */
  warnings: z.array(z.string().max(512)).max(16).optional(),
  pools: z.array(
    z.object({
      id: z.string().max(128),
      types: z.array(requestType),
      gpus: int,
      leader: z.string().max(128).optional(),
      instances: z.array(
        z.object({
          id: z.string().max(128),
          tp: z.number().int().positive(),
          gpus: z.array(int),
          node: z.string().max(128).optional(),
          clockMhz: nonneg,
          powerW: nonneg,
          energyJ: nonneg,
          gpuStaleMs: nonneg.optional(),
          queued: int,
          running: int,
          state: z.string().max(32),
        }),
      ),
    }),
  ),
  freeGpus: int,
  powerW: nonneg,
  stalePowerW: nonneg.optional(),
  energyJ: nonneg,
});
export type ClusterStatus = z.infer<typeof clusterStatus>;
export const ClusterStatus = codec('ClusterStatus', clusterStatus);

/** All codecs, for round-trip tests and the garbage-payload tests. */
export const ALL_CODECS = {
  Ack, InferenceRequest, Admission, TokenChunk, LegReport, LegReply, Cancel, Heartbeat, InstanceTelemetry, NodeTelemetry, RequestRecord,
  PoolTelemetry, ClusterTelemetry, DecisionEvent, StatusRequest, ClusterStatus, TokenizeRequest, TokenizeReply, DetokenizeRequest, DetokenizeReply,
} as const;

/**
 * The SSE events of plain text written member by member as JSON.stringify writes streamChunk's (responses.ts): a text
 * token's frame around its text's JSON literal (from a template per stream), with continuous usage, and a choice's
 * plain last event; no object is built and stringified per event.
 */
import { finishOut, type ApiKind, type FinishReason } from './openai.ts';
import { continuousUsage, streamChunk } from './responses.ts';

/**
 * The SSE event of a plain text token, split around its JSON-encoded text: `data: ` + the exact bytes
 * JSON.stringify gives for streamChunk(kind, id, created, model, {text}, index), so the text is the only thing
 * encoded per token.
 */
export function textFrame(kind: ApiKind, id: string, created: number, model: string, index = 0): [string, string] {
  // written member by member as JSON.stringify writes them (no object built and stringified per request)
  return kind === 'completion'
    ? [`${eventHead(kind, id, created, model, index)}"text":`, ',"logprobs":null,"finish_reason":null,"stop_reason":null,"prompt_token_ids":null,"token_ids":null}],"usage":null}\n\n']
    : [`${eventHead(kind, id, created, model, index)}"delta":{"content":`, '},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n'];
}

/** JSON literals of the models served (a handful): the client's model is one the gateway serves. */
const modelJson = new Map<string, string>();
/**
 * `data: ` and streamChunk's JSON up to its choice's members: `{"id":...,"object":...,"created":...,"model":...,"choices":[{"index":N,`,
 * the bytes JSON.stringify gives.
 */
function eventHead(kind: ApiKind, id: string, created: number, model: string, index: number): string {
  let m = modelJson.get(model);
  if (m === undefined) {
    m = JSON.stringify(model);
    if (modelJson.size < 64) modelJson.set(model, m);
  }
  return kind === 'completion'
    ? `data: {"id":${JSON.stringify(`cmpl-${id}`)},"object":"text_completion","created":${JSON.stringify(created)},"model":${m},"choices":[{"index":${JSON.stringify(index)},`
    : `data: {"id":${JSON.stringify(`chatcmpl-${id}`)},"object":"chat.completion.chunk","created":${JSON.stringify(created)},"model":${m},"choices":[{"index":${JSON.stringify(index)},`;
}

/**
 * The last event of a choice whose end carries plain text alone (no logprobs, tool calls, reasoning or usage): the bytes
 * JSON.stringify gives for streamChunk(kind, id, created, model, { text, finish, stopReason }, index), written member by member.
 */
export function finishTextFrame(kind: ApiKind, id: string, created: number, model: string, index: number, text: string, finish: FinishReason, stopReason: string | number | null | undefined): string {
  const reasons = `,"logprobs":null,"finish_reason":"${finishOut(finish)}","stop_reason":${JSON.stringify(stopReason ?? null)}`;
  return kind === 'completion'
    ? `${eventHead(kind, id, created, model, index)}"text":${JSON.stringify(text)}${reasons},"prompt_token_ids":null,"token_ids":null}],"usage":null}\n\n`
    : `${eventHead(kind, id, created, model, index)}"delta":{"content":${JSON.stringify(text)}}${reasons},"token_ids":null}]}\n\n`;
}

/**
 * textFrame for a stream with continuous usage (stream_options.continuous_usage_stats): the event of a plain
 * text token with the usage so far, `frame(text, completionTokens)` giving the exact bytes JSON.stringify gives
 * for streamChunk(kind, id, created, model, {text, usage: continuousUsage(promptTokens, completionTokens)}, index).
 */
export function textUsageFrame(kind: ApiKind, id: string, created: number, model: string, promptTokens: number, index = 0): (text: string, completionTokens: number) => string {
  const [head, mid, tail] = textUsageParts(kind, id, created, model, promptTokens, index);
  // the usage's counts in vLLM's order (total, then completion); integers print as JSON.stringify prints them
  return (text, completionTokens) => `${head}${JSON.stringify(text)}${mid}${promptTokens + completionTokens}${COMPLETION_TOKENS}${completionTokens}${tail}`;
}

/** The bytes between a continuous usage's total and its completion count (the native plane writes the same: native/relay.c). */
const COMPLETION_TOKENS = ',"completion_tokens":';

/**
 * textUsageFrame's parts: the bytes before the text's literal, those between it and the usage's total (ending
 * `"total_tokens":`), and those after the usage's completion count (its members after it, the event's end).
 */
export function textUsageParts(kind: ApiKind, id: string, created: number, model: string, promptTokens: number, index = 0): [string, string, string] {
  const MARK = JSON.stringify('\u0001');
  const json = JSON.stringify(streamChunk(kind, id, created, model, { text: '\u0001', usage: continuousUsage(promptTokens, 0) }, index));
  // the usage is the event's last member, the text the last string before it
  const u = json.lastIndexOf('"usage":');
  const at = json.lastIndexOf(MARK, u);
  const total = json.indexOf('"total_tokens":', u) + '"total_tokens":'.length;
  const count = json.indexOf(`${COMPLETION_TOKENS}0`, total) + COMPLETION_TOKENS.length + 1;
  return [`data: ${json.slice(0, at)}`, json.slice(at + MARK.length, total), `${json.slice(count)}\n\n`];
}

/** The event of a plain text token of choice `index`: textFrame's, or textUsageFrame's when `promptTokens` is given (continuous usage). */
export function plainTextFrame(kind: ApiKind, id: string, created: number, model: string, index: number, promptTokens?: number): (text: string, completionTokens: number) => string {
  if (promptTokens !== undefined) return textUsageFrame(kind, id, created, model, promptTokens, index);
  const [a, b] = textFrame(kind, id, created, model, index);
  return (text) => a + JSON.stringify(text) + b;
}

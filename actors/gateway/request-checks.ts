import { BOOL_FIELDS, CHAT_FIELDS, COMPLETION_FIELDS, STREAM_OPTIONS_FIELDS, laxBool } from '../../protocols/vllm-request-fields.ts';

/**
 * vLLM's cross-field checks of a request body (the model validators of its request models,
 * vllm/entrypoints/openai/protocol.py), with vLLM's words: they run on the body as the client sent it, before any
 * field is read, and each refusal is vLLM's 400 of a request that fails its model's validation. Pure.
 */

export interface CheckRefusal {
  message: string;
  param: string;
}

/** Python's truthiness of a JSON value (`data.get(k)` in a validator). */
export function pyTruthy(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** vLLM's validate_stream_options: a non-empty stream_options needs `stream` (an empty one is accepted). */
function streamOptions(body: Record<string, unknown>): CheckRefusal | undefined {
  if (pyTruthy(body.stream_options) && !pyTruthy(body.stream)) return { message: 'Stream options can only be defined when `stream=True`.', param: 'stream_options' };
  return undefined;
}

/** vLLM's check_guided_decoding_count: at most one of guided_json, guided_regex, guided_choice. */
function guidedCount(body: Record<string, unknown>): CheckRefusal | undefined {
  const n = ['guided_json', 'guided_regex', 'guided_choice'].filter((k) => body[k] !== undefined && body[k] !== null).length;
  if (n > 1) return { message: "You can only use one kind of guided decoding ('guided_json', 'guided_regex' or 'guided_choice').", param: 'guided_json' };
  return undefined;
}

const CORRECT_USAGE = 'Correct usage: `{"type": "function", "function": {"name": "my_function"}}`';
const py = (v: unknown): string => (typeof v === 'string' ? v : v === null ? 'None' : JSON.stringify(v));

/**
 * vLLM's check_tool_usage. Changes `body` as vLLM does: `tool_choice` "required" with an empty `tools` list is
 * `tool_choice` "none" without `tools`.
 */
function toolUsage(body: Record<string, unknown>): CheckRefusal | undefined {
  const choice = body.tool_choice;
  if (choice === undefined || choice === null || choice === 'none') return undefined;
  const tools = body.tools;
  if (tools === undefined || tools === null) return { message: 'When using `tool_choice`, `tools` must be set.', param: 'tool_choice' };
  if (choice !== 'auto' && choice !== 'required' && !isObj(choice)) {
    return { message: `Invalid value for \`tool_choice\`: ${py(choice)}! Only named tools, "none", "auto" or "required" are supported.`, param: 'tool_choice' };
  }
  if (choice === 'required' && Array.isArray(tools) && tools.length === 0) {
    body.tool_choice = 'none';
    delete body.tools;
    return undefined;
  }
  if (!isObj(choice)) return undefined;
  const fn = choice.function;
  if (!isObj(fn)) return { message: `Invalid value for \`function\`: \`${py(fn ?? null)}\` in \`tool_choice\`! ${CORRECT_USAGE}`, param: 'tool_choice' };
  if (!('name' in fn)) return { message: `Expected field \`name\` in \`function\` in \`tool_choice\`! ${CORRECT_USAGE}`, param: 'tool_choice' };
  const name = fn.name;
  if (typeof name !== 'string' || name.length === 0) return { message: `Invalid \`name\` in \`function\`: \`${py(name)}\` in \`tool_choice\`! ${CORRECT_USAGE}`, param: 'tool_choice' };
  const names = Array.isArray(tools) ? tools.map((t) => (isObj(t) && isObj(t.function) ? t.function.name : undefined)) : [];
  if (!names.includes(name)) return { message: 'The tool specified in `tool_choice` does not match any of the specified `tools`', param: 'tool_choice' };
  return undefined;
}

/** vLLM's check_generation_prompt (chat and /tokenize of messages). */
export function generationPrompt(body: Record<string, unknown>): CheckRefusal | undefined {
  if (pyTruthy(body.continue_final_message) && pyTruthy(body.add_generation_prompt)) {
    return { message: 'Cannot set both `continue_final_message` and `add_generation_prompt` to True.', param: 'continue_final_message' };
  }
  return undefined;
}

/** The first of vLLM's cross-field checks `body` fails, in vLLM's order, or undefined (`body` may be changed: toolUsage). */
export function crossFieldError(kind: 'completion' | 'chat', body: Record<string, unknown>): CheckRefusal | undefined {
  if (kind === 'completion') return guidedCount(body) ?? streamOptions(body);
  return streamOptions(body) ?? guidedCount(body) ?? toolUsage(body) ?? generationPrompt(body);
}

/** The fields of vLLM's request model of `kind`. */
export const fieldsOf = (kind: 'completion' | 'chat'): ReadonlySet<string> => (kind === 'chat' ? CHAT_FIELDS : COMPLETION_FIELDS);

/** The fields of `body` that vLLM's request model of `kind` does not define (vLLM ignores them). */
export function unknownFields(kind: 'completion' | 'chat', body: Record<string, unknown>): string[] {
  const known = fieldsOf(kind);
  return Object.keys(body).filter((k) => !known.has(k));
}

const notBool = (param: string): CheckRefusal => ({ message: `'${param}': Input should be a valid boolean`, param });

/**
 * The boolean fields of `body` (and a chat's `logprobs`) read as pydantic's lax bool reads them, written back as
 * booleans; the refusal of the first that is not one.
 */
export function laxBools(kind: 'completion' | 'chat', body: Record<string, unknown>): CheckRefusal | undefined {
  const known = fieldsOf(kind);
  for (const k of Object.keys(body)) {
    if (!known.has(k) || !(BOOL_FIELDS.has(k) || (kind === 'chat' && k === 'logprobs'))) continue;
    const v = body[k];
    if (v === undefined || v === null) continue;
    const b = laxBool(v);
    if (b === undefined) return notBool(k);
    body[k] = b;
  }
  return undefined;
}

export interface StreamOptionsRead {
  includeUsage: boolean;
  continuousUsage: boolean;
  /** its fields vLLM's StreamOptions does not define, as `stream_options.<name>`. */
  ignored: string[];
}

/**
 * `stream_options` as vLLM reads it (StreamOptions: include_usage default true, continuous_usage_stats default false,
 * the latter only with the former); usage chunks only on a stream.
 */
export function streamOptionsOf(so: unknown, stream: boolean): StreamOptionsRead | CheckRefusal {
  if (so === undefined || so === null) return { includeUsage: false, continuousUsage: false, ignored: [] };
  if (!isObj(so)) return { message: "'stream_options': Input should be a valid dictionary or object to extract fields from", param: 'stream_options' };
  const ignored = Object.keys(so).filter((k) => !STREAM_OPTIONS_FIELDS.has(k)).map((k) => `stream_options.${k}`);
  const read = (k: string, dflt: boolean): boolean | CheckRefusal => {
    const v = so[k];
    if (v === undefined) return dflt;
    if (v === null) return false;
    return laxBool(v) ?? notBool(`stream_options.${k}`);
  };
  const iu = read('include_usage', true);
  if (typeof iu !== 'boolean') return iu;
  const cu = read('continuous_usage_stats', false);
  if (typeof cu !== 'boolean') return cu;
  return { includeUsage: stream && iu, continuousUsage: stream && iu && cu, ignored };
}

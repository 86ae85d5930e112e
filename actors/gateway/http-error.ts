/**
 * The gateway's error answer (HttpError) and its body, vLLM's ErrorResponse: `{"error": {message, type, param, code}}`
 * with `code` the HTTP status and `type` vLLM's name for it (vllm/entrypoints/openai/serving_engine.py
 * create_error_response; api_server.py's handlers of a request that fails validation and of an HTTP exception).
 */

/**
 * vLLM's `type` of an error body by HTTP status: its create_error_response names (BadRequestError, NotFoundError,
 * InternalServerError; ServiceUnavailableError as the emulator's), else the status's phrase, as vLLM's handler of an
 * HTTP exception writes it.
 */
const VLLM_ERROR_TYPES: Record<number, string> = {
  400: 'BadRequestError', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFoundError', 405: 'Method Not Allowed', 408: 'Request Timeout',
  410: 'Gone', 413: 'Request Entity Too Large', 415: 'Unsupported Media Type', 429: 'Too Many Requests', 499: 'Client Closed Request',
  500: 'InternalServerError', 503: 'ServiceUnavailableError', 504: 'Gateway Timeout',
};
/** vLLM's type of a 400 its request model's validation gives (pydantic, a model validator): the status's phrase. */
export const VALIDATION_ERROR_TYPE = 'Bad Request';

/** the response header of an error answer that names its cause (HttpError.code), e.g. `context_length_exceeded`. */
export const ERROR_CODE_HEADER = 'x-dynamollm-error-code';

/** vLLM's error body (ErrorResponse): `code` is the HTTP status. */
export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: number };
}

/**
 * An error the gateway answers with: `status` is the HTTP status; the JSON body is vLLM's (ErrorBody). `type` is the
 * error's class and `code` its cause (e.g. `context_length_exceeded`, `overloaded`), for logs and the
 * x-dynamollm-error-code header; the body's `type` is vLLM's for the status (or `bodyType`).
 */
export class HttpError extends Error {
  override name = 'HttpError';
  readonly retryable: boolean;
  /** the body's `type` where it is not vLLM's name for the status (VALIDATION_ERROR_TYPE). */
  bodyType?: string;
  constructor(
    readonly status: number,
    message: string,
    readonly type: string = 'invalid_request_error',
    readonly code: string | null = null,
    readonly param: string | null = null,
    /** seconds for the Retry-After header (429/503). */
    readonly retryAfterS?: number,
  ) {
    super(message);
    this.retryable = status === 429 || status === 503;
  }
  body(): ErrorBody {
    return { error: { message: this.message, type: this.bodyType ?? VLLM_ERROR_TYPES[this.status] ?? 'InternalServerError', param: this.param, code: this.status } };
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new HttpError(400, message, 'invalid_request_error', code, param);

/** A 400 of vLLM's request-model validation (a field's type, a model validator): type "Bad Request". */
export function invalidRequest(message: string, param: string | null = null): HttpError {
  const e = badRequest(message, param);
  e.bodyType = VALIDATION_ERROR_TYPE;
  return e;
}


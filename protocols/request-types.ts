/**
 * The nine request types of DynamoLLM (paper Table IV): input class x output class.
 * This is a wire enum (it appears in messages), so it lives in protocols/.
 */
export const LENGTH_CLASSES = ['S', 'M', 'L'] as const;
export type LengthClass = (typeof LENGTH_CLASSES)[number];

export const REQUEST_TYPES = ['SS', 'SM', 'SL', 'MS', 'MM', 'ML', 'LS', 'LM', 'LL'] as const;
export type RequestType = (typeof REQUEST_TYPES)[number];

export function isRequestType(x: unknown): x is RequestType {
  return typeof x === 'string' && (REQUEST_TYPES as readonly string[]).includes(x);
}

export function requestTypeOf(input: LengthClass, output: LengthClass): RequestType {
  return `${input}${output}` as RequestType;
}

export function inputClassOf(t: RequestType): LengthClass {
  return t[0] as LengthClass;
}

export function outputClassOf(t: RequestType): LengthClass {
  return t[1] as LengthClass;
}

/** The engine client's cancellation (src/runtime/abort.ts): `AbortLike`, and `LeanAbort`, an AbortController without an EventTarget. */
export { LeanAbort, type AbortLike } from '../runtime/abort.ts';

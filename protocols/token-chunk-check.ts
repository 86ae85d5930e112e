/**
 * The hand-written validator of the hottest message, TokenChunk (protocols/messages.ts; one per streamed
 * chunk): exactly tokenChunk's rules for the common shapes; anything it does not vouch for (an error field, a
 * grant, unknown keys, any doubt) returns false and goes through zod (protocols/codec.ts FastCheck). Checked
 * against zod by protocols-fast.test.ts. The constants it shares with the schema live here.
 */
import { REQUEST_TYPES } from './request-types.ts';

/** most tokens one coalesced TokenChunk may carry offsets for. */
export const MAX_CHUNK_TOKENS = 4096;
/** Why a stream ended: OpenAI's reasons ('stop', 'length', 'tool_calls'), or the cluster's ('error', 'cancelled'). */
export const FINISH_REASONS = ['stop', 'length', 'tool_calls', 'error', 'cancelled'] as const;

const ID_RE = /^[A-Za-z0-9_-]+$/;
const FINISH = new Set<string>(FINISH_REASONS);
const TYPES = new Set<unknown>(REQUEST_TYPES);
const ENERGY_SOURCES = new Set(['measured', 'modelled']);
const isInt = (x: unknown) => typeof x === 'number' && Number.isInteger(x) && x >= 0;
const isNonneg = (x: unknown) => typeof x === 'number' && Number.isFinite(x) && x >= 0;
const isStr128 = (x: unknown) => typeof x === 'string' && x.length <= 128;
function fastUsage(u: unknown): boolean {
  if (u === null || typeof u !== 'object' || Array.isArray(u)) return false;
  let n = 0;
  for (const k in u) {
    if (!Object.prototype.hasOwnProperty.call(u, k)) return false;
    const x = (u as Record<string, unknown>)[k];
    n++;
    if (k === 'promptTokens' || k === 'completionTokens') {
      if (!isInt(x)) return false;
    } else if (k === 'energyJ') {
      if (!isNonneg(x)) return false;
    } else if (k === 'energySource') {
      if (!ENERGY_SOURCES.has(x as string)) return false;
    } else return false;
  }
  return n === 4;
}
export function fastTokenChunk(c: Record<string, unknown>): boolean {
  if (Object.getPrototypeOf(c) !== Object.prototype) return false;
  let required = 0;
  for (const k in c) {
    if (!Object.prototype.hasOwnProperty.call(c, k)) return false;
    const x = c[k];
    switch (k) {
      case 'v':
        if (x !== 1) return false;
        required++;
        break;
      case 'id':
        if (typeof x !== 'string' || x.length < 1 || x.length > 128 || !ID_RE.test(x)) return false;
        required++;
        break;
      case 'seq':
      case 'tokens':
        if (!isInt(x)) return false;
        required++;
        break;
      case 'text':
        if (typeof x !== 'string') return false;
        required++;
        break;
      // optional fields: `undefined` is what zod's .optional() accepts as absent
      case 'done':
      case 'relayCredit':
        if (x !== undefined && typeof x !== 'boolean') return false;
        break;
      case 'finishReason':
        if (x !== undefined && !FINISH.has(x as string)) return false;
        break;
      case 'usage':
        if (x !== undefined && !fastUsage(x)) return false;
        break;
      case 'instance':
      case 'pool':
        if (x !== undefined && !isStr128(x)) return false;
        break;
      case 'type':
        if (x !== undefined && !TYPES.has(x)) return false;
        break;
      case 'ttftMs':
        if (x !== undefined && !isNonneg(x)) return false;
        break;
      case 'tokenOffsetsMs':
        if (x === undefined) break;
        if (!Array.isArray(x) || x.length > MAX_CHUNK_TOKENS) return false;
        for (let i = 0; i < x.length; i++) if (!isNonneg(x[i])) return false;
        break;
      default:
        // `error` (rare: let zod judge it) and unknown keys (zod strips them: the output would differ)
        return false;
    }
  }
  return required === 5;
}

/**
 * A token-id prompt's JSON text, kept from the client's body for the engine's request (docs/DATAPATH.md "Per request:
 * the prompt's JSON text"): the gateway keeps the text of a client's `"prompt":[...]` with the array JSON.parse made
 * of it (actors/gateway/body.ts parseJsonBody), and the engine call's body (client.ts completionPayload) writes that
 * text instead of JSON.stringify-ing the ids again. Only a text JSON.stringify would write for those ids is kept: digits
 * and commas between the brackets (JSON has no leading zeros), every id a non-negative safe integer.
 */

/** the text kept with an ids array, and the array's length then (an array that grew or shrank since is written anew). */
const texts = new WeakMap<readonly number[], { text: string; n: number }>();

/**
 * what a JSON array of integers may hold besides digits and commas: exponents, fractions, signs, whitespace (each
 * looked for with indexOf, a byte search, where a regular expression's scan of the array costs as much as the
 * JSON.stringify it saves).
 */
const NOT_CANONICAL = ['e', 'E', '.', '-', '+', ' ', '\n', '\r', '\t'];

/** decimal digits of a non-negative safe integer. */
function digits(x: number): number {
  let d = 1;
  while (x >= 10) {
    x = Math.floor(x / 10);
    d++;
  }
  return d;
}

/**
 * Keeps `text` from `open` to `close` (the indices of its `[` and `]`) as the JSON text of `ids`, the array JSON.parse
 * made of it, when it is what JSON.stringify(ids) writes: every id a non-negative safe integer, written without
 * exponent, fraction, sign or whitespace (so digits and commas only), as many characters as the ids' digits and
 * commas. True when kept.
 */
export function keepIdsJson(ids: readonly number[], text: string, open: number, close: number): boolean {
  if (ids.length === 0 || text.charCodeAt(open) !== 0x5b || text.charCodeAt(close) !== 0x5d) return false;
  for (const c of NOT_CANONICAL) {
    const k = text.indexOf(c, open);
    if (k >= 0 && k < close) return false;
  }
  let len = 1 + ids.length; // the brackets and the commas between the ids
  for (let i = 0; i < ids.length; i++) {
    const x = ids[i]!;
    if (!Number.isSafeInteger(x) || x < 0 || Object.is(x, -0)) return false;
    len += x < 10 ? 1 : x < 100 ? 2 : x < 1000 ? 3 : x < 10000 ? 4 : x < 100000 ? 5 : digits(x);
  }
  if (len !== close - open + 1) return false;
  texts.set(ids, { text: text.slice(open, close + 1), n: ids.length });
  return true;
}

/** JSON.stringify(ids) when keepIdsJson kept their text and they still have its length; undefined otherwise. */
export function idsJson(ids: readonly number[]): string | undefined {
  const t = texts.get(ids);
  return t !== undefined && t.n === ids.length ? t.text : undefined;
}

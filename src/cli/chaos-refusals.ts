/**
 * The gateways' own causes of the refusals a chaos run's clients got (`dynamollm chaos`): each gateway logs a 429 or
 * 5xx it answers as 'request refused' with the internal message (actors/gateway/server.ts; the client's words are
 * fixed), at log level info. Counted by status, code and cause, numbers masked so that alike refusals count together.
 */

/** `<status> <code>: <cause>` -> count, from the JSON log lines of `text` (other lines ignored); {} when none was logged. */
export function refusalCauses(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.includes('"request refused"')) continue;
    let j: { msg?: unknown; status?: unknown; code?: unknown; cause?: unknown; remoteCode?: unknown };
    try {
      j = JSON.parse(line.slice(line.indexOf('{'))) as typeof j;
    } catch {
      continue;
    }
    if (j.msg !== 'request refused') continue;
    const cause = typeof j.cause === 'string' ? j.cause.replace(/\b\d+\b/g, 'N') : '?';
    const k = `${String(j.status)} ${String(j.remoteCode ?? j.code)}: ${cause}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

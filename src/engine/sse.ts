/**
 * Minimal Server-Sent Events reader for OpenAI/vLLM streams: the `data:` payload of each event (multi-line
 * data joined by '\n'), ignoring comments and other fields. Handles \n and \r\n framing and UTF-8
 * characters split across reads. A stream cut without the final blank line does not deliver its partial
 * event (as browsers do).
 */
import { StringDecoder } from 'node:string_decoder';

/** Incremental parser: feed it bytes as they arrive, it appends completed events' data to `out`. */
export class SseParser {
  private rest = '';
  private data: string[] = [];
  private readonly dec = new StringDecoder('utf8');

  /** nothing held between events: no partial line or event (the bytes pushed ended at an event's end). */
  get clean(): boolean {
    return this.rest === '' && this.data.length === 0;
  }

  push(chunk: Uint8Array, out: string[]): void {
    const s = this.rest.length ? this.rest + this.dec.write(chunk as Buffer) : this.dec.write(chunk as Buffer);
    let pos = 0;
    for (;;) {
      const nl = s.indexOf('\n', pos);
      if (nl < 0) break;
      const end = nl > pos && s.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
      if (end === pos) {
        if (this.data.length === 1) out.push(this.data[0]!);
        else if (this.data.length > 1) out.push(this.data.join('\n'));
        if (this.data.length) this.data = [];
      } else if (s.startsWith('data:', pos)) {
        this.data.push(s.slice(s.charCodeAt(pos + 5) === 32 ? pos + 6 : pos + 5, end));
      }
      // 'event:', 'id:', 'retry:' and ':' comments are not used by OpenAI streams
      pos = nl + 1;
    }
    this.rest = pos === 0 ? s : s.slice(pos);
  }
}

/** The same parser over a web ReadableStream (fetch bodies). */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const parser = new SseParser();
  const reader = body.getReader();
  const out: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(value, out);
      for (const d of out) yield d;
      out.length = 0;
    }
  } finally {
    reader.releaseLock();
  }
}

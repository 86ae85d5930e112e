/**
 * Minimal Server-Sent Events reader for OpenAI/vLLM streams: yields the `data:` payload of each event
 * (multi-line data joined by '\n'), ignoring comments and other fields. Handles \n and \r\n framing.
 */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buf = '';
  let data: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (data.length > 0) {
            yield data.join('\n');
            data = [];
          }
        } else if (line.startsWith('data:')) {
          data.push(line.slice(line[5] === ' ' ? 6 : 5));
        }
        // 'event:', 'id:', 'retry:' and ':' comments are not used by OpenAI streams
      }
    }
  } finally {
    reader.releaseLock();
  }
  // a stream cut without the final blank line does not deliver its partial event (as browsers do)
}

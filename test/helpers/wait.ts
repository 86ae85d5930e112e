/** Waiting in a test: a pause, and a condition polled until it holds or a deadline passes. */

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `f`'s first value other than undefined, asked every 100 ms; throws after `ms`, saying what it waited for. */
export async function waitFor<T>(f: () => T | undefined | Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Resolves once `pred` holds, asked every `everyMs`; throws after `ms`, saying what it waited for. */
export async function waitUntil(pred: () => boolean | Promise<boolean>, ms: number, what: string, everyMs = 100): Promise<void> {
  const t = Date.now() + ms;
  while (Date.now() < t) {
    if (await pred()) return;
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}`);
}

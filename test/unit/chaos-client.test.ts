/**
 * The load generator of `dynamollm chaos` (src/cli/chaos-client.ts) against real HTTP servers on loopback: a
 * client behind a load balancer. A replica that refuses the connection (its process dead) or resets it before
 * any response byte gets the request sent to the next replica. Every stream opts in to resumption: one that
 * breaks after its response began is resumed on the next replica with Last-Event-ID (its last whole event), and
 * completes; one that breaks with no event id to resume from is a failure, reported as broken with the replica
 * that served it, and a broken stream right after a kill of its replica counts as broken by that gateway's death.
 * The text is checked: max_tokens words (one per token), ids in order; a duplicated token fails the request.
 * A stream that ends with a retryable error event without an id (a draining replica's cut) is resumed on the next
 * replica from its last event id, counted as resumed on an error event, and ok; an error event with an id, or not
 * retryable, or once the resumes are spent, is a failure.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { brokenByGatewayDeath, oneRequest } from '../../src/cli/chaos-client.ts';
import { freePort } from '../helpers/net.ts';

const servers: Server[] = [];
afterAll(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
});

const WORDS = 4;
/** event i of a stand-in's stream: one word, and its id when the client opted in. */
const event = (i: number, ids: boolean) => `${ids ? `id: req1:${i}\n` : ''}data: {"choices":[{"text":" w${i}"}]}\n\n`;

/**
 * A gateway stand-in: `mode` says what it does with a completion. 'ok' streams WORDS words (from after Last-Event-ID
 * when given); 'reset' closes the connection before a response; 'break' sends 2 events and dies; 'noids' the same
 * without id lines; 'replayAll' answers a resume with the whole stream again (a duplicating server).
 */
async function gateway(mode: 'ok' | 'reset' | 'break' | 'noids' | 'replayAll' | 'breakEmpty' | 'notFound' | 'idReset' | 'drain' | 'errorWithId' | 'errorFinal'): Promise<{ url: string; hits: () => number; lastIds: (string | undefined)[] }> {
  let hits = 0;
  const lastIds: (string | undefined)[] = [];
  const s = createServer((req, res) => {
    hits++;
    req.resume();
    if (mode === 'reset') return req.socket.destroy();
    const lastHeader = req.headers['last-event-id'] as string | undefined;
    // 'notFound' refuses a resume as a gateway whose journal has no such stream, and serves a fresh request
    if (mode === 'notFound' && lastHeader !== undefined) {
      lastIds.push(lastHeader);
      res.writeHead(404, { 'content-type': 'application/json' });
      return res.end('{"error":{"message":"no resumable stream","type":"invalid_request_error","code":"stream_not_found"}}');
    }
    // 'breakEmpty' sends one event without text (its id only) and dies, the first time; then it serves as 'ok'
    if (mode === 'breakEmpty' && hits === 1) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('id: req1:0\ndata: {"choices":[{"text":""}]}\n\n');
      return setTimeout(() => req.socket.destroy(), 20);
    }
    const ids = req.headers['x-dynamollm-resumable'] === '1' && mode !== 'noids';
    const last = req.headers['last-event-id'] as string | undefined;
    lastIds.push(last);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    // 'idReset': event 0 with its id, then the stream stops being resumable (an empty id), event 1 without one, and dies
    if (mode === 'idReset') {
      res.write(event(0, true) + ': not resumable: the journal did not hold an entry within 50 ms\nid:\n' + event(1, false));
      return setTimeout(() => req.socket.destroy(), 20);
    }
    // 'drain': 2 events, then a draining gateway's cut (a retryable error event without an id) and [DONE], its body whole;
    // 'errorWithId': the same error event with its id (the stream ended); 'errorFinal': without an id, not retryable
    if (mode === 'drain' || mode === 'errorWithId' || mode === 'errorFinal') {
      const from = last !== undefined ? Number(last.split(':')[1]) + 1 : 0;
      const retryable = mode !== 'errorFinal';
      const error = `data: {"error":{"message":"gateway shutting down: resume the stream on another replica (Last-Event-ID)","type":"service_unavailable","param":null,"code":"unavailable","retryable":${retryable}}}\n\n`;
      return res.end(event(from, ids) + event(from + 1, ids) + (mode === 'errorWithId' ? `id: req1:${from + 2}\n` : '') + error + 'data: [DONE]\n\n');
    }
    if (mode === 'break' || mode === 'noids') {
      res.write(event(0, ids) + event(1, ids));
      return setTimeout(() => req.socket.destroy(), 20);
    }
    const from = last !== undefined && mode !== 'replayAll' ? Number(last.split(':')[1]) + 1 : 0;
    let out = '';
    for (let i = from; i < WORDS; i++) out += event(i, ids);
    res.end(out + 'data: [DONE]\n\n');
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, hits: () => hits, lastIds };
}

const opts = { model: 'm', maxTokens: 4, deadlineMs: 10_000 };

describe('chaos load generator', () => {
  it('a replica that refuses or resets the connection before a response: the request goes to the next one and completes', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`; // nothing listens: connection refused
    const reset = await gateway('reset');
    const live = await gateway('ok');
    const outs = [];
    for (let i = 0; i < 6; i++) outs.push(await oneRequest({ ...opts, urls: [dead, reset.url, live.url] }));
    expect(outs.every((o) => o.ok)).toBe(true);
    expect(outs.every((o) => o.replica === 2)).toBe(true);
    // in turn: each started on another replica, so 0, 1 or 2 connection errors before the live one
    expect(outs.map((o) => o.retries).sort()).toEqual([0, 0, 1, 1, 2, 2]);
    expect(live.hits()).toBe(6);
  });

  it('no live replica: a connection error once the retries are spent, never a hang', async () => {
    const o = await oneRequest({ ...opts, urls: [`http://127.0.0.1:${await freePort()}`], maxRetries: 2 });
    expect(o).toMatchObject({ ok: false, hung: false, retries: 2, error: 'connection: ECONNREFUSED' });
  });

  it('a stream that breaks after its response began is resumed on the next replica from its last event id, and completes once', async () => {
    const broken = await gateway('break');
    const live = await gateway('ok');
    const urls = [broken.url, live.url];
    // the next request starts on replica 0 when the turn is even
    let o = await oneRequest({ ...opts, urls });
    if (broken.hits() === 0) o = await oneRequest({ ...opts, urls });
    expect(o).toMatchObject({ ok: true, hung: false, replica: 1, retries: 0, resumed: 1, words: WORDS, idsInOrder: true });
    expect(o.brokenAtMs).toBeUndefined();
    expect(live.lastIds.at(-1)).toBe('req1:1');
  });

  it('a stream broken with no event id to resume from is a failure, counted as broken by its replica\'s death when one was killed just before', async () => {
    const broken = await gateway('noids');
    const live = await gateway('ok');
    const urls = [broken.url, live.url];
    let o = await oneRequest({ ...opts, urls });
    if (o.replica !== 0) o = await oneRequest({ ...opts, urls });
    expect(o).toMatchObject({ ok: false, hung: false, error: 'stream broken', replica: 0, retries: 0, resumed: 0 });
    expect(o.brokenAtMs).toBeGreaterThan(0);
    expect(broken.hits()).toBe(1);
    expect(brokenByGatewayDeath([o], [{ kind: 'gateway', id: 'gw-0', atMs: o.brokenAtMs! - 50 }])).toBe(1);
    // another replica's kill, or one long before, does not explain it
    expect(brokenByGatewayDeath([o], [{ kind: 'gateway', id: 'gw-1', atMs: o.brokenAtMs! - 50 }, { kind: 'gateway', id: 'gw-0', atMs: o.brokenAtMs! - 10_000 }])).toBe(0);
  });

  it('a stream whose event ids were reset (no longer resumable) and that breaks is a failure, not resumed from an id before the reset', async () => {
    const broken = await gateway('idReset');
    const live = await gateway('ok');
    const urls = [broken.url, live.url];
    let o = await oneRequest({ ...opts, urls });
    if (o.replica !== 0) o = await oneRequest({ ...opts, urls });
    expect(o).toMatchObject({ ok: false, hung: false, error: 'stream broken', replica: 0, resumed: 0 });
    expect(live.lastIds.filter((x) => x !== undefined)).toEqual([]);
  });

  it('a resume refused for good (404) before any text: the request sent again from the start, counted as resent, and completes once', async () => {
    const broken = await gateway('breakEmpty');
    const nf = await gateway('notFound');
    const urls = [broken.url, nf.url];
    let o = await oneRequest({ ...opts, urls });
    if (broken.hits() === 0) o = await oneRequest({ ...opts, urls });
    expect(nf.lastIds).toContain('req1:0');
    expect(o).toMatchObject({ ok: true, hung: false, resumed: 1, resent: 1, words: WORDS, idsInOrder: true });
    expect(broken.hits()).toBe(2);
  });

  it('a resume refused for good after text arrived is a failure, not sent again (the user saw text)', async () => {
    const broken = await gateway('break');
    const nf = await gateway('notFound');
    const urls = [broken.url, nf.url];
    let o = await oneRequest({ ...opts, urls });
    if (broken.hits() === 0) o = await oneRequest({ ...opts, urls });
    expect(o).toMatchObject({ ok: false, error: 'http 404', code: 'stream_not_found', resumed: 1, resent: 0 });
  });

  it('a resume that sends tokens the client had already is caught: more words than max_tokens, ids out of order', async () => {
    const broken = await gateway('break');
    const dup = await gateway('replayAll');
    const urls = [broken.url, dup.url];
    let o = await oneRequest({ ...opts, urls });
    if (broken.hits() === 0) o = await oneRequest({ ...opts, urls });
    expect(o).toMatchObject({ ok: false, error: 'tokens', resumed: 1, words: WORDS + 2, idsInOrder: false });
  });

  it('a stream cut by a retryable error event without an id (a draining replica) is resumed on the next replica from its last event id: ok, counted as resumed on an error event', async () => {
    const draining = await gateway('drain');
    const live = await gateway('ok');
    const urls = [draining.url, live.url];
    let o = await oneRequest({ ...opts, urls });
    if (draining.hits() === 0) o = await oneRequest({ ...opts, urls });
    expect(o).toMatchObject({ ok: true, hung: false, replica: 1, retries: 0, resumed: 1, resumedOnError: 1, resent: 0, words: WORDS, idsInOrder: true });
    expect(o.failure).toBeUndefined();
    // resumed after event 1, the last one with an id: events 2 and 3 from the live replica, each once
    expect(live.lastIds.at(-1)).toBe('req1:1');
  });

  it('a resumed stream cut again by a draining replica is resumed again from its new last event id, every token once', async () => {
    const a = await gateway('drain');
    const b = await gateway('drain');
    const live = await gateway('ok');
    const urls = [a.url, b.url, live.url];
    let o = await oneRequest({ ...opts, urls, maxTokens: WORDS });
    // until the request starts on replica 0 (the replicas in turn)
    while (a.hits() === 0) o = await oneRequest({ ...opts, urls, maxTokens: WORDS });
    expect(o).toMatchObject({ ok: true, replica: 2, resumed: 2, resumedOnError: 2, words: WORDS, idsInOrder: true });
    expect(b.lastIds.at(-1)).toBe('req1:1');
    expect(live.lastIds.at(-1)).toBe('req1:3');
  });

  it('an error event with an id (its stream ended), or not retryable, is a failure, not resumed', async () => {
    for (const mode of ['errorWithId', 'errorFinal'] as const) {
      const failing = await gateway(mode);
      const live = await gateway('ok');
      const urls = [failing.url, live.url];
      let o = await oneRequest({ ...opts, urls });
      if (failing.hits() === 0) o = await oneRequest({ ...opts, urls });
      expect(o, mode).toMatchObject({ ok: false, hung: false, failure: 'event', error: 'unavailable', replica: 0, resumed: 0 });
      expect(o.retryable, mode).toBe(mode === 'errorWithId' ? true : undefined);
      expect(o.resumesSpent, mode).toBeUndefined();
      expect(live.lastIds.filter((x) => x !== undefined), mode).toEqual([]);
    }
  });

  it('a stream cut by draining replicas past its resumes is a failure with its resumes spent, within maxRetries', async () => {
    const a = await gateway('drain');
    const b = await gateway('drain');
    const o = await oneRequest({ ...opts, urls: [a.url, b.url], maxTokens: 100, maxRetries: 2 });
    expect(o).toMatchObject({ ok: false, hung: false, failure: 'event', error: 'unavailable', retryable: true, resumesSpent: true, resumed: 2, resumedOnError: 2, words: 6, idsInOrder: true });
    expect(a.hits() + b.hits()).toBe(3);
  });
});

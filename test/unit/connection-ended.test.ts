/**
 * The NATS server's disconnect advisory (protocols/nats-advisory.ts) and what it does to dispatch
 * (src/policy/connection-ended.ts): the advisory is validated as an input; the pool machine and the gateway's
 * router take the instance whose status names the ended connection out of dispatch at once, without a death
 * verdict (nothing re-dispatched or ended), and a status from another connection brings it back while a late one
 * from the ended connection does not.
 */
import { describe, expect, it } from 'vitest';
import { ClientDisconnect, endedConnection, natsSystemSubjects, ProtocolError } from '../../protocols/index.ts';
import { ENDED_CONNECTIONS_MAX, connectionEnded, connectionEndedSeen, endedKeepMs, initialEndedConnections } from '../../src/policy/connection-ended.ts';
import { initialPoolState, poolStep, type PoolEffect, type PoolEvent, type PoolMachineConfig, type PoolMachineState } from '../../src/policy/machines/pool.ts';
import { initialRouterState, routerCapacityComing, routerConnectionEnded, routerPick, routerStatus, routerTable, type RouterConfig } from '../../src/policy/machines/router.ts';
import { instanceStatusMaker } from '../helpers/instance-status.ts';
import type { InferenceRequest } from '../../protocols/messages.ts';

/** nats-server 2.9.10's advisory as it published it (a SIGKILLed client), fields beyond the schema's included. */
const ADVISORY = {
  type: 'io.nats.server.advisory.v1.client_disconnect', id: 'u6sY4fKjyvdQqoyz5dPBGy', timestamp: '2026-12-05T17:24:22.86266536Z',
  server: { name: 't1', host: '127.0.0.1', id: 'NBP7SQXQ54A6CADAN7IJSM5K4OZLZ2WQ3O2K3GNCQDEHMVSAIZAHEPU5', ver: '2.9.10', seq: 25, jetstream: false, time: '2026-12-05T17:24:22.862747747Z' },
  client: { start: '2026-12-05T17:24:22.851226754Z', host: '127.0.0.1', id: 6, acc: 'dynamollm', user: 'UABC', name: 'victim', lang: 'nats.js', ver: '3.3.1', rtt: 2446954, stop: '2026-12-05T17:24:22.86266536Z', kind: 'Client', client_type: 'nats' },
  sent: { msgs: 2, bytes: 13 }, received: { msgs: 0, bytes: 0 }, reason: 'Read Error',
};
const bytes = (x: unknown) => new TextEncoder().encode(JSON.stringify(x));
const SRV = ADVISORY.server.id;

describe('ClientDisconnect (the server\'s advisory)', () => {
  it('decodes the server\'s JSON and names the connection by server id and client id', () => {
    const a = ClientDisconnect.decode(bytes(ADVISORY), 'dyn.v1.ctl.connend');
    expect(endedConnection(a)).toEqual({ server: SRV, client: 6 });
    expect(a.client.user).toBe('UABC');
    expect(a.reason).toBe('Read Error');
    expect(natsSystemSubjects.accountDisconnect('dynamollm')).toBe('$SYS.ACCOUNT.dynamollm.DISCONNECT');
    expect(() => natsSystemSubjects.accountDisconnect('a.b')).toThrow(ProtocolError);
  });
  it('refuses what is not one: garbage, another advisory, a bad client id, a huge field', () => {
    expect(() => ClientDisconnect.decode(new Uint8Array([0xff, 0x00]), 's')).toThrow(ProtocolError);
    expect(() => ClientDisconnect.decode(bytes({ ...ADVISORY, type: 'io.nats.server.advisory.v1.client_connect' }), 's')).toThrow(ProtocolError);
    expect(() => ClientDisconnect.decode(bytes({ ...ADVISORY, client: { ...ADVISORY.client, id: -1 } }), 's')).toThrow(ProtocolError);
    expect(() => ClientDisconnect.decode(bytes({ ...ADVISORY, client: { ...ADVISORY.client, id: '6' } }), 's')).toThrow(ProtocolError);
    expect(() => ClientDisconnect.decode(bytes({ ...ADVISORY, server: { id: '' } }), 's')).toThrow(ProtocolError);
    expect(() => ClientDisconnect.decode(bytes({ ...ADVISORY, reason: 'x'.repeat(10_000) }), 's')).toThrow(ProtocolError);
    expect(() => ClientDisconnect.decode(bytes([1, 2]), 's')).toThrow(ProtocolError);
  });
  it('a server link (a route) names no client connection', () => {
    expect(endedConnection(ClientDisconnect.check({ ...ADVISORY, client: { ...ADVISORY.client, kind: 'Router' } }))).toBeUndefined();
  });
});

describe('connection-ended state', () => {
  it('remembers an ended connection for endedKeepMs, at most ENDED_CONNECTIONS_MAX, without changing the state it was given', () => {
    const s0 = initialEndedConnections();
    const s1 = connectionEndedSeen(s0, { server: SRV, client: 6 }, 1000, endedKeepMs(1500));
    expect(connectionEnded(s0, { server: SRV, client: 6 })).toBe(false);
    expect(connectionEnded(s1, { server: SRV, client: 6 })).toBe(true);
    expect(connectionEnded(s1, { server: SRV, client: 7 })).toBe(false);
    expect(connectionEnded(s1, { server: 'other', client: 6 })).toBe(false);
    expect(connectionEnded(s1, undefined)).toBe(false);
    expect(endedKeepMs(1500)).toBe(10_000);
    const s2 = connectionEndedSeen(s1, { server: SRV, client: 8 }, 1000 + 10_001, 10_000);
    expect(connectionEnded(s2, { server: SRV, client: 6 })).toBe(false);
    let s = initialEndedConnections();
    for (let i = 0; i < ENDED_CONNECTIONS_MAX + 10; i++) s = connectionEndedSeen(s, { server: SRV, client: i }, 5, 10_000);
    expect(s.ended.size).toBe(ENDED_CONNECTIONS_MAX);
    expect(connectionEnded(s, { server: SRV, client: 0 })).toBe(false);
    expect(connectionEnded(s, { server: SRV, client: ENDED_CONNECTIONS_MAX + 9 })).toBe(true);
  });
});

const T0 = 1_700_000_000_000;
const POOL = 'pool-SS';
const A = `${POOL}-node-0-g0x4`, B = `${POOL}-node-0-g4x4`;
const conn = (client: number) => ({ server: SRV, client });
let n = 0;
const status = instanceStatusMaker(POOL, T0);
function req(): InferenceRequest {
  const id = `r${++n}`;
  return { v: 1, id, model: 'm', kind: 'completion', prompt: 'x', inputTokens: 100, maxTokens: 50, arrivalMs: T0, giveUpAtMs: T0 + 600_000, streamSubject: `dyn.v1.stream.${id}`, type: 'SS' };
}

describe('the pool machine: an ended connection\'s instance takes no dispatch', () => {
  const cfg: PoolMachineConfig = { pool: POOL, holder: 'pm-1', headroom: 0, deadAfterMs: 1500, statusIntervalMs: 250, epochMs: 300_000, healthDeadlineMs: 10_000, initialTp: 4, moveQueueAbove: 4, retryAfterS: 1, planner: 'heuristic' };
  let s: PoolMachineState;
  const at = (ms: number, ev: PoolEvent): PoolEffect[] => {
    const r = poolStep(s, ev, T0 + ms, cfg);
    s = r.state;
    return r.effects;
  };
  const admitted = (ms: number): string[] => Array.from({ length: 6 }, () => at(ms, { type: 'dispatch', ref: n, req: req() }).flatMap((e) => (e.kind === 'admit' ? [e.instance] : [])))
    .flat();

  it('out at once on the advisory, not dead; back with a status over a new connection, not with a late one over the old', () => {
    s = initialPoolState(['SS']);
    at(0, { type: 'start' });
    at(0, { type: 'lead', term: 1 });
    at(10, { type: 'status', status: status(A, { conn: conn(1) }) });
    at(10, { type: 'status', status: status(B, { conn: conn(2) }) });
    expect(new Set(admitted(20))).toEqual(new Set([A, B]));
    const before = s;
    const fx = at(30, { type: 'conn_ended', conn: conn(1) });
    expect(before.ended.ended.size, 'the state given is left as it was').toBe(0);
    // no death verdict: nothing re-dispatched or ended, A still alive in the view
    expect(fx).toEqual([]);
    expect(s.instances.get(A)?.alive).toBe(true);
    expect(new Set(admitted(40))).toEqual(new Set([B]));
    // a status sent over the ended connection and delivered late: still out
    at(50, { type: 'status', status: status(A, { conn: conn(1) }) });
    expect(new Set(admitted(60))).toEqual(new Set([B]));
    // its status over a new connection (a reconnect, or its restarted process): back
    at(70, { type: 'status', status: status(A, { conn: conn(9) }) });
    expect(admitted(80)).toContain(A);
    // an instance whose status names no connection (an older instance manager) is left to the lapse
    at(90, { type: 'status', status: status(B) });
    at(100, { type: 'conn_ended', conn: conn(2) });
    expect(admitted(110)).toContain(B);
  });
});

describe('the gateway\'s router: an ended connection\'s instance takes no dispatch', () => {
  const rc: RouterConfig = { headroom: 0, deadAfterMs: 1500 };
  it('picks only the other instance, and counts the ended one as no ready capacity', () => {
    const s = initialRouterState();
    routerTable(s, { v: 1, routes: { SS: POOL }, pools: [{ pool: POOL, types: ['SS'], retired: false }], epoch: 1, issuedBy: 'cm', sentMs: T0 }, T0);
    routerStatus(s, status(A, { conn: conn(1) }), T0);
    routerStatus(s, status(B, { conn: conn(2) }), T0);
    routerConnectionEnded(s, conn(1), T0 + 10, rc);
    for (let i = 0; i < 6; i++) expect(routerPick(s, POOL, req(), new Set(), T0 + 20, rc)).toBe(B);
    routerConnectionEnded(s, conn(2), T0 + 30, rc);
    expect(routerPick(s, POOL, req(), new Set(), T0 + 40, rc)).toBeUndefined();
    expect(routerCapacityComing(s, T0 + 40, rc, 10_000)).toBe(true);
    routerStatus(s, status(A, { conn: conn(3) }), T0 + 50);
    expect(routerPick(s, POOL, req(), new Set(), T0 + 60, rc)).toBe(A);
  });
});

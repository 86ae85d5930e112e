/**
 * examples/energy-ledger against the real PostgreSQL on 127.0.0.1:5432 (as pubsub.test.ts), the records of one
 * migrated request as the cluster publishes them (protocols/request-record.ts): the gateway's record of the first leg
 * with its estimate (its instance died), the next leg's instance record naming the client's request, redeliveries, and
 * the first leg's instance record arriving late (the instance was slow, not dead). The request is counted once, its
 * energy is the sum of its legs, and the instance's own record replaces the estimate, never the other way round.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { ensureTable, spentByKeyAndModel, storeRecord } from '../../examples/energy-ledger/ledger.ts';
import type { RequestRecord } from '../../protocols/request-record.ts';

const table = `energy_ledger_legs_${process.pid}_${Date.now() % 100000}`;
let db: pg.Pool;
beforeAll(async () => {
  db = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test', max: 2 });
  await db.query('SELECT 1');
});
afterAll(async () => {
  await db?.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
  await db?.end();
});

const rec = (o: Partial<RequestRecord> & Pick<RequestRecord, 'id' | 'energyJ'>): RequestRecord => ({
  v: 1, model: 'm', apiKeyId: 'key-legs', type: 'MM', pool: 'p', instance: 'i0', outcome: 'ok', promptTokens: 10,
  completionTokens: 20, energySource: 'modelled', sloMet: true, finishedMs: 1_796_500_000_000, ...o,
});

describe('examples/energy-ledger: the legs of a migrated request', () => {
  it('one request, the sum of its legs; the instance record replaces the estimate, a redelivery changes nothing', async () => {
    await ensureTable(db, table);
    const estimate = rec({ id: 'r1', instance: 'dead', outcome: 'failed', energyJ: 100, energyEstimatedJ: 100 });
    const second = rec({ id: 'r1-m1', request: 'r1', instance: 'i1', energyJ: 300 });
    expect(await storeRecord(db, estimate, 1, table)).toBe(true);
    expect(await storeRecord(db, second, 2, table)).toBe(true);
    expect(await storeRecord(db, estimate, 1, table)).toBe(false);
    expect(await storeRecord(db, second, 2, table)).toBe(false);
    const spent = async () => (await spentByKeyAndModel(db, table)).find((r) => r.apiKey === 'key-legs')!;
    expect(await spent()).toMatchObject({ requests: 1, energyJoules: 400 });
    // the first leg's own instance record, late: it replaces the estimate (same leg id)
    expect(await storeRecord(db, rec({ id: 'r1', instance: 'dead', energyJ: 120 }), 3, table)).toBe(true);
    expect(await spent()).toMatchObject({ requests: 1, energyJoules: 420 });
    // the estimate delivered again after it: the instance's record stays
    expect(await storeRecord(db, estimate, 1, table)).toBe(false);
    expect(await spent()).toMatchObject({ requests: 1, energyJoules: 420 });
    const rows = (await db.query(`SELECT request_id, client_request, energy_estimated_joules FROM ${table} ORDER BY request_id`)).rows;
    expect(rows).toEqual([
      { request_id: 'r1', client_request: 'r1', energy_estimated_joules: 0 },
      { request_id: 'r1-m1', client_request: 'r1', energy_estimated_joules: 0 },
    ]);
  });
});

/**
 * Energy ledger: a real consumer of dynamollm's public pub/sub API. It reads every RequestRecord from the
 * DYN_V1_REQUESTS stream through a durable consumer (observer credentials), writes it into PostgreSQL keyed by
 * the record's id (one row per leg: a migrated request has a record per leg, `client_request` names the client's
 * request), and acknowledges it only after the row is committed. A restart resumes after the last acknowledged
 * record; a record delivered again (a crash between commit and ack, an ack lost, a replay) hits the primary key
 * and changes nothing, so nothing is ever counted twice. A leg the gateway recorded with its estimate (its instance
 * died: `energyEstimatedJ`) is replaced by the instance's own record of it when that comes after all.
 *
 *   NATS_URL=nats://127.0.0.1:4222 NATS_USER=observer NATS_PASSWORD=observer-local \
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
 *   node --conditions=source --import tsx examples/energy-ledger/ledger.ts
 *
 * Who spent what:  SELECT api_key, model, count(DISTINCT coalesce(client_request, request_id)), sum(energy_joules) FROM energy_ledger GROUP BY api_key, model;
 */
import pg from 'pg';
import { DynamoClient, type RequestRecord, type StreamSubscription } from 'dynamollm/client';

export interface LedgerOptions {
  /** NATS URL(s) and the observer role's credentials. */
  servers: string | string[];
  user?: string;
  pass?: string;
  /** PostgreSQL pool (the ledger does not close it). */
  db: pg.Pool;
  /** table name ([a-z_][a-z0-9_]*). Default energy_ledger. */
  table?: string;
  /** durable consumer name. Default energy-ledger. */
  durable?: string;
  /** ms the server waits for an ack before redelivering. Default 30000. */
  ackWaitMs?: number;
}

export const DEFAULT_TABLE = 'energy_ledger';

function tableName(t: string | undefined): string {
  const name = t ?? DEFAULT_TABLE;
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new RangeError(`table name '${name}': use [a-z_][a-z0-9_]*`);
  return name;
}

export async function ensureTable(db: pg.Pool, table?: string): Promise<void> {
  const t = tableName(table);
  await db.query(`CREATE TABLE IF NOT EXISTS ${t} (
    request_id        text PRIMARY KEY,
    api_key           text NOT NULL,
    tenant            text,
    model             text NOT NULL,
    request_type      text NOT NULL,
    pool              text NOT NULL,
    instance          text,
    outcome           text NOT NULL,
    prompt_tokens     integer NOT NULL,
    completion_tokens integer NOT NULL,
    energy_joules     double precision NOT NULL,
    energy_source     text NOT NULL,
    finished_at       timestamptz NOT NULL,
    stream_seq        bigint NOT NULL
  )`);
  // a leg's client request and the estimated part of its energy (a table made without them gets them)
  await db.query(`ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS client_request text`);
  await db.query(`ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS energy_estimated_joules double precision NOT NULL DEFAULT 0`);
}

/**
 * Store one record (one leg of a request). A second delivery of the same record id changes nothing, except that a
 * record with no estimate replaces one whose energy was estimated (the gateway's record of a leg whose instance did
 * not answer, then the instance's own record of it). Returns true when the row was written.
 */
export async function storeRecord(db: pg.Pool, r: RequestRecord, seq: number, table?: string): Promise<boolean> {
  const t = tableName(table);
  const res = await db.query(
    `INSERT INTO ${t} (request_id, client_request, api_key, tenant, model, request_type, pool, instance, outcome, prompt_tokens,
       completion_tokens, energy_joules, energy_estimated_joules, energy_source, finished_at, stream_seq)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, to_timestamp($15 / 1000.0), $16)
     ON CONFLICT (request_id) DO UPDATE SET
       instance = EXCLUDED.instance, outcome = EXCLUDED.outcome, prompt_tokens = EXCLUDED.prompt_tokens,
       completion_tokens = EXCLUDED.completion_tokens, energy_joules = EXCLUDED.energy_joules,
       energy_estimated_joules = EXCLUDED.energy_estimated_joules, energy_source = EXCLUDED.energy_source,
       finished_at = EXCLUDED.finished_at, stream_seq = EXCLUDED.stream_seq
     WHERE ${t}.energy_estimated_joules > 0 AND EXCLUDED.energy_estimated_joules = 0`,
    [r.id, r.request ?? r.id, r.apiKeyId ?? 'anonymous', r.tenant ?? null, r.model ?? 'unknown', r.type, r.pool, r.instance ?? null, r.outcome,
      r.promptTokens, r.completionTokens, r.energyJ, r.energyEstimatedJ ?? 0, r.energySource, r.finishedMs, seq],
  );
  return res.rowCount === 1;
}

/** Who spent what: client requests and joules per (api key, model), every leg of a migrated request counted in its request. */
export async function spentByKeyAndModel(db: pg.Pool, table?: string): Promise<{ apiKey: string; model: string; requests: number; energyJoules: number }[]> {
  const t = tableName(table);
  const r = await db.query<{ api_key: string; model: string; requests: string; energy_joules: number }>(
    `SELECT api_key, model, count(DISTINCT coalesce(client_request, request_id)) AS requests, sum(energy_joules) AS energy_joules
     FROM ${t} GROUP BY api_key, model ORDER BY api_key, model`,
  );
  return r.rows.map((x) => ({ apiKey: x.api_key, model: x.model, requests: Number(x.requests), energyJoules: x.energy_joules }));
}

export interface Ledger {
  /** records inserted (new) and records seen again (duplicates, not counted twice). */
  readonly stats: { inserted: number; duplicates: number };
  /** stop reading (the durable consumer stays on the server; unacknowledged records will be redelivered). */
  stop(): Promise<void>;
  /** resolves when the loop ends (after stop, or on an error: rejects). */
  readonly done: Promise<void>;
}

export async function startLedger(o: LedgerOptions): Promise<Ledger> {
  await ensureTable(o.db, o.table);
  const client = await DynamoClient.connect({ servers: o.servers, user: o.user, pass: o.pass, name: 'energy-ledger' });
  let sub: StreamSubscription<RequestRecord>;
  try {
    sub = await client.requestRecords({ durable: o.durable ?? 'energy-ledger', ackWaitMs: o.ackWaitMs ?? 30_000 });
  } catch (err) {
    await client.close();
    throw err;
  }
  const stats = { inserted: 0, duplicates: 0 };
  const done = (async () => {
    try {
      for await (const m of sub) {
        // commit first, ack second: a crash in between means a redelivery, which the primary key absorbs
        if (await storeRecord(o.db, m.value, m.seq, o.table)) stats.inserted++;
        else stats.duplicates++;
        m.ack();
      }
    } finally {
      await client.close();
    }
  })();
  return { stats, done, stop: async () => { await sub.stop(); await done.catch(() => {}); } };
}

async function main(): Promise<void> {
  const db = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test', max: 4 });
  const ledger = await startLedger({
    servers: process.env.NATS_URL ?? 'nats://127.0.0.1:4222',
    user: process.env.NATS_USER ?? 'observer',
    pass: process.env.NATS_PASSWORD ?? 'observer-local',
    db,
    durable: process.env.LEDGER_DURABLE,
    table: process.env.LEDGER_TABLE,
  });
  const stop = () => void ledger.stop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const report = setInterval(() => process.stdout.write(`ledger: ${ledger.stats.inserted} records stored, ${ledger.stats.duplicates} duplicates ignored\n`), 10_000);
  try {
    await ledger.done;
  } finally {
    clearInterval(report);
    for (const row of await spentByKeyAndModel(db, process.env.LEDGER_TABLE)) process.stdout.write(`${row.apiKey}\t${row.model}\t${row.requests}\t${row.energyJoules.toFixed(3)} J\n`);
    await db.end();
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`energy-ledger: ${(err as Error).message}\n`);
    process.exitCode = 1;
  });
}

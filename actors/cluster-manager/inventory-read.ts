/**
 * The cluster planner's reads of the inventory KV (the stored pool assignments, the energy ledger), each attempt
 * within its own deadline. A JetStream call's own deadline is 5 s: one answer lost to a NATS node's death (a read
 * sent to a server that died, a stream whose leader's server stopped answering) cost a new planner 5 s before its
 * status served, per read. Here an attempt is given up after INVENTORY_READ_ATTEMPT_MS (doubling at each attempt)
 * and tried again inside the caller's overall deadline (timeouts.takeoverReadMs); between attempts a server
 * without JetStream, or one that answers no ping either, is left for another server of the cluster
 * (Bus.jetstreamFailed, Bus.jetstreamUnanswered), so the next attempt goes through it.
 */
import type { KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import { DynError, PoolAssignment, jetstream } from '../../protocols/index.ts';
import type { Bus } from '../../src/runtime/bus.ts';
import { within, type Clock } from '../../src/runtime/clock.ts';
import { TimeoutError } from '../../src/runtime/errors.ts';

/** the first attempt's deadline, ms; it doubles at each attempt, within the caller's overall deadline. */
export const INVENTORY_READ_ATTEMPT_MS = 500;
/** the pause before the next attempt, ms (doubling up to 1 s). */
const FIRST_RETRY_MS = 100;

/** The inventory could not be read by the caller's deadline. Retryable: JetStream comes back (a stream's new leader, a server restarted). */
export class InventoryUnreadable extends DynError {
  override name = 'InventoryUnreadable';
  constructor(what: string, attempts: number, cause: unknown) {
    super('unavailable', `${what} not readable after ${attempts} attempt(s): ${(cause as Error)?.message ?? String(cause)}`, { retryable: true, cause });
  }
}

export interface InventoryReader {
  bus: Bus;
  clock: Clock;
  log: Logger;
  /** true: give up (the actor stops, or lost its lead). */
  abandoned?: () => boolean;
}

/**
 * `read` of the inventory bucket (opened, or created, within the attempt), tried until `untilMs` on `o.clock`;
 * throws InventoryUnreadable when no attempt succeeded by then (at least one attempt is made).
 */
export async function readInventory<T>(o: InventoryReader, what: string, read: (kv: KV) => Promise<T>, untilMs: number): Promise<T> {
  let wait = FIRST_RETRY_MS;
  for (let attempt = 1; ; attempt++) {
    const attemptMs = Math.max(1, Math.min(untilMs - o.clock.now(), INVENTORY_READ_ATTEMPT_MS * 2 ** (attempt - 1)));
    try {
      return await within((async () => read(await o.bus.kv(jetstream.inventoryBucket)))(), attemptMs, `KV ${jetstream.inventoryBucket} (${what})`, o.clock);
    } catch (err) {
      // the next attempt through another server: this one has no JetStream (yet), or answers nothing at all
      const cause = (err as { cause?: unknown }).cause ?? err;
      if (!o.bus.jetstreamFailed(cause) && err instanceof TimeoutError) await o.bus.jetstreamUnanswered(Math.min(attemptMs, 1000));
      if (o.abandoned?.() || o.clock.now() + wait >= untilMs) throw new InventoryUnreadable(what, attempt, err);
      o.log.info({ attempt, what, err: (err as Error).message, retryInMs: wait }, 'inventory read failed: retrying');
      await o.clock.sleep(wait);
      wait = Math.min(1000, wait * 2);
    }
  }
}

/** Every stored pool assignment, and the keys whose value does not decode. */
export async function storedAssignments(kv: KV): Promise<{ stored: PoolAssignment[]; corrupt: string[] }> {
  const stored: PoolAssignment[] = [];
  const corrupt: string[] = [];
  for await (const k of await kv.keys('pool.>')) {
    const e = await kv.get(k);
    if (!e || !e.value.length) continue;
    try {
      stored.push(PoolAssignment.decode(e.value));
    } catch {
      corrupt.push(k);
    }
  }
  return { stored, corrupt };
}

/** What a watch of the inventory needs beside a reader's: where it puts its handle (stopped with the actor). */
export interface InventoryWatcher extends InventoryReader {
  watches: Set<{ stop(): void }>;
}

/**
 * Entries of the inventory under `key` as the store changes them (a KV watch: one consumer, entries pushed as they
 * are written, the current ones first), rather than a listing and a read of every key each second: `on` gets each
 * decoded value, undefined for a deleted one. An undecodable value is skipped. A watch that ends (a dropped
 * connection, the bucket not there yet) is started again a second later, until `o.abandoned()`.
 */
export async function watchInventory<T>(o: InventoryWatcher, key: string, codec: { decode(b: Uint8Array): T }, on: (v: T | undefined) => void): Promise<void> {
  while (!o.abandoned?.()) {
    try {
      const it = await (await o.bus.kv(jetstream.inventoryBucket)).watch({ key });
      o.watches.add(it);
      if (o.abandoned?.()) it.stop();
      for await (const e of it) {
        let v: T | undefined;
        try {
          v = e.operation === 'PUT' && e.value.length ? codec.decode(e.value) : undefined;
        } catch (err) {
          o.log.debug({ key: e.key, err: (err as Error).message }, 'undecodable inventory entry skipped');
          continue;
        }
        on(v);
      }
      o.watches.delete(it);
    } catch (err) {
      o.log.debug({ key, err: (err as Error).message }, 'inventory watch ended');
    }
    if (!o.abandoned?.()) await o.clock.sleep(1000);
  }
}

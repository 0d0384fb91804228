import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { status } from "@grpc/grpc-js";
import type { Order } from "../../generated/ts/shop/orders/v1/orders";
import { DEFAULT_DEADLINE_MS, MeshError } from "../../mesh";
import type { Logger } from "../../mesh";

/** What {@link OrderStore.placeOnce} resolves to: the key's order, and whether it existed before the call. */
export interface PlacedOrder {
  order: Order;
  replayed: boolean;
}

/**
 * Orders and their idempotency keys, kept in a database that every orders replica opened on it
 * shares, so that a key holds mesh-wide: a PlaceOrder retried or hedged onto another replica gets
 * the order the first one created.
 */
export interface OrderStore {
  /**
   * Returns the order for (customer, key), creating it with `create` only if the key is new;
   * `create` gets the order's id and must give the order that id. While another call (on any
   * replica) is creating the key's order, this one waits for it, until `deadlineMs` (ms since the
   * epoch, the call's deadline) or the store's wait limit, then fails ABORTED naming the key. A
   * failed creation frees the key for a retry, and rejects with `create`'s error.
   */
  placeOnce(
    customerId: string,
    idempotencyKey: string,
    create: (id: string) => Promise<Order>,
    options?: { deadlineMs?: number },
  ): Promise<PlacedOrder>;
  /** The order with `id`, if any. */
  get(id: string): Promise<Order | undefined>;
  /** Orders, newest first, of one customer or of all when `customerId` is "". */
  list(customerId: string): Promise<Order[]>;
  /** Closes the store's connections; the program calls it once, after its server drained. */
  close(): Promise<void>;
}

/** The row of one idempotency key: a claim still being created by `token`, or the placed order. */
export type KeyRow =
  | { seq: number; state: "pending"; token: string; claimedAtMs: number }
  | { seq: number; state: "placed"; order: Order };

/**
 * One database's statements for {@link ClaimingOrderStore}, each atomic on its own; `seq` is the
 * row's number from the database, unique across every replica, which names the order.
 */
export interface OrderTable {
  /** The row of (customer, key), if any. */
  read(customerId: string, idempotencyKey: string): Promise<KeyRow | undefined>;
  /**
   * Claims the key for `token` at `nowMs`: inserts a pending row when the key has none, or takes a
   * pending row claimed before `staleBeforeMs` over. Resolves to the row's seq when `token` now
   * holds the claim, undefined when another call holds it or the order is placed.
   */
  claim(customerId: string, idempotencyKey: string, token: string, nowMs: number, staleBeforeMs: number): Promise<number | undefined>;
  /** Stamps the pending row `seq` as claimed at `nowMs` if `token` still holds it (the claim's lease); false when it does not. */
  renew(seq: number, token: string, nowMs: number): Promise<boolean>;
  /** Stores `order` in the pending row `seq` if `token` still holds it; false when it does not. */
  complete(seq: number, token: string, order: Order): Promise<boolean>;
  /** Deletes the pending row `seq` if `token` still holds it. */
  release(seq: number, token: string): Promise<void>;
  /** The placed order of row `seq`, if any. */
  placed(seq: number): Promise<Order | undefined>;
  /** Placed orders by seq, highest first, of one customer or of all when `customerId` is "". */
  list(customerId: string): Promise<Order[]>;
  /** Closes the table's connections. */
  close(): Promise<void>;
}

/**
 * A claim is a lease: its owner renews it every {@link CLAIM_RENEW_MS} while it creates the order,
 * and a claim not renewed for this long (ms) may be taken over, its owner presumed dead (a replica
 * killed mid-creation). Short, so that a PlaceOrder retried on another replica after its first one
 * died takes the key over well within its deadline, instead of waiting for it; four missed
 * renewals, so that a busy event loop does not lose a live claim. An owner that was only late loses
 * nothing but its work: its completion fails the token check and it returns the new owner's order.
 */
export const CLAIM_STALE_MS = 2_000;
/** How often the owner of a claim renews it while it creates the order (ms). */
export const CLAIM_RENEW_MS = 500;
/**
 * Longest a call waits for another call's claim when its own deadline is later (ms): the kit's
 * default call deadline: a caller that set no deadline of its own has given up by then.
 */
export const CLAIM_WAIT_MS = DEFAULT_DEADLINE_MS;
/**
 * How often a waiting call reads the key's row again (ms). A creation takes milliseconds to about a
 * second; 25 ms adds little to a hedged call and costs one indexed read per poll.
 */
export const CLAIM_POLL_MS = 25;

/** Settings of a {@link ClaimingOrderStore}; the defaults are the constants above and the wall clock. */
export interface ClaimOptions {
  /** Where the store logs waits, take-overs and database failures (as component orders.store). */
  logger: Logger;
  /** The time claims are stamped and judged stale with (ms since the epoch); tests shift it. */
  now?: () => number;
  /** {@link CLAIM_STALE_MS} */
  staleMs?: number;
  /** {@link CLAIM_RENEW_MS} */
  renewMs?: number;
  /** {@link CLAIM_WAIT_MS} */
  waitMs?: number;
  /** {@link CLAIM_POLL_MS} */
  pollMs?: number;
}

const ORDER_ID = /^ord-(\d{6,})$/;

/** The id of the order in row `seq`: `ord-000001`, more digits past 999999. */
export function orderId(seq: number): string {
  return `ord-${String(seq).padStart(6, "0")}`;
}

/** The row of order `id`, or undefined when `id` is not one {@link orderId} makes. */
export function orderSeq(id: string): number | undefined {
  const digits = ORDER_ID.exec(id)?.[1];
  const seq = digits === undefined ? undefined : Number(digits);
  return seq !== undefined && Number.isSafeInteger(seq) && orderId(seq) === id ? seq : undefined;
}

/**
 * An {@link OrderStore} over any {@link OrderTable}, exactly once across replicas by a claim row:
 * the first call inserts the key's row as pending (the database's unique key lets one insert win),
 * creates the order, then completes the row with it; a failed creation deletes the row. A call
 * that finds the row pending polls it until it is placed (replayed), deleted (it claims the key
 * itself), stale (it takes the claim over) or its wait runs out (ABORTED). Every step is one
 * statement checked by the claim's token, so no transaction spans a creation.
 */
export class ClaimingOrderStore implements OrderStore {
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly staleMs: number;
  private readonly renewMs: number;
  private readonly waitMs: number;
  private readonly pollMs: number;

  constructor(
    private readonly table: OrderTable,
    options: ClaimOptions,
  ) {
    this.logger = options.logger.child({ component: "orders.store" });
    this.now = options.now ?? Date.now;
    this.staleMs = options.staleMs ?? CLAIM_STALE_MS;
    this.renewMs = options.renewMs ?? Math.min(CLAIM_RENEW_MS, this.staleMs / 4);
    this.waitMs = options.waitMs ?? CLAIM_WAIT_MS;
    this.pollMs = options.pollMs ?? CLAIM_POLL_MS;
  }

  async placeOnce(
    customerId: string,
    idempotencyKey: string,
    create: (id: string) => Promise<Order>,
    options: { deadlineMs?: number } = {},
  ): Promise<PlacedOrder> {
    const token = randomUUID();
    const startedAt = this.now();
    const waitUntil = Math.min(options.deadlineMs ?? Infinity, startedAt + this.waitMs);
    let isWaiting = false;
    for (;;) {
      const row = await this.use(() => this.table.read(customerId, idempotencyKey));
      if (row?.state === "placed") return { order: row.order, replayed: true };
      const now = this.now();
      if (row === undefined || row.claimedAtMs < now - this.staleMs) {
        const seq = await this.use(() => this.table.claim(customerId, idempotencyKey, token, now, now - this.staleMs));
        if (seq !== undefined) {
          if (row !== undefined) this.logger.warn({ customerId, idempotencyKey, order: orderId(seq) }, "took over a stale claim");
          const order = await this.createClaimed(seq, token, create);
          if (order) return { order, replayed: false };
        }
        continue; // another call claimed the key, or took our claim over: read what it did
      }
      if (this.now() >= waitUntil) {
        throw new MeshError(
          status.ABORTED,
          `idempotency_key ${JSON.stringify(idempotencyKey)}: another call is still placing this order after ${this.now() - startedAt} ms; retry with the same key`,
        );
      }
      if (!isWaiting) {
        isWaiting = true;
        this.logger.debug({ customerId, idempotencyKey, order: orderId(row.seq) }, "waiting for another call placing this key");
      }
      await sleep(this.pollMs);
    }
  }

  async get(id: string): Promise<Order | undefined> {
    const seq = orderSeq(id);
    return seq === undefined ? undefined : this.use(() => this.table.placed(seq));
  }

  list(customerId: string): Promise<Order[]> {
    return this.use(() => this.table.list(customerId));
  }

  close(): Promise<void> {
    return this.table.close();
  }

  /**
   * Creates the order of claim `seq` and completes the row with it. Resolves to undefined when the
   * claim was taken over meanwhile (the other call's order wins); a failed creation frees the key.
   */
  private async createClaimed(seq: number, token: string, create: (id: string) => Promise<Order>): Promise<Order | undefined> {
    let order: Order;
    const renewal = setInterval(() => {
      this.table.renew(seq, token, this.now()).catch((error: unknown) => {
        this.logger.warn({ err: error, order: orderId(seq) }, "could not renew a claim");
      });
    }, this.renewMs);
    try {
      order = await create(orderId(seq));
    } catch (error) {
      await this.table.release(seq, token).catch((releaseError: unknown) => {
        this.logger.warn({ err: releaseError, order: orderId(seq) }, "could not free a failed claim; it frees itself when stale");
      });
      throw error;
    } finally {
      clearInterval(renewal);
    }
    return (await this.use(() => this.table.complete(seq, token, order))) ? order : undefined;
  }

  /** Runs a statement; a database failure is UNAVAILABLE to the caller, its cause logged here. */
  private async use<T>(statement: () => Promise<T>): Promise<T> {
    try {
      return await statement();
    } catch (error) {
      this.logger.warn({ err: error }, "order store failed");
      throw new MeshError(status.UNAVAILABLE, "orders: the order store is unavailable", { cause: error });
    }
  }
}

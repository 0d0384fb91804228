import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import { OrderStatus } from "../../generated/ts/shop/orders/v1/orders";
import type { Order } from "../../generated/ts/shop/orders/v1/orders";
import { MeshError } from "../../mesh/errors";
import { CLAIM_STALE_MS } from "../../services/orders/order-store";
import type { ClaimOptions, OrderStore, PlacedOrder } from "../../services/orders/order-store";
import { openOrderStore } from "../../services/orders/order-store-url";
import type { StoreLocation } from "../../services/orders/order-store-url";
import { captureLog } from "../support/log-capture";
import type { CapturedLog } from "../support/log-capture";
import { waitFor } from "../support/wait";

/** What the store logs when a call starts waiting for another's claim, and when it takes a stale one over. */
const WAITING = "waiting for another call placing this key";
const TOOK_OVER = "took over a stale claim";
const ORDER_ID = /^ord-\d{6}$/;

/** One "replica": a store opened on the test's location, with its log lines kept (debug and up). */
interface Replica {
  store: OrderStore;
  log: CapturedLog;
}

/** An order as the orders service would create it for `id`. */
function anOrder(id: string, customerId: string, idempotencyKey: string, quantity = 1): Order {
  return {
    id,
    customerId,
    lines: [{ productId: "sku-1001", productName: "Espresso beans 1 kg", quantity, unitPriceCents: 2490, lineTotalCents: 2490 * quantity, discountCents: 0 }],
    totalCents: 2490 * quantity,
    currency: "EUR",
    status: OrderStatus.ORDER_STATUS_PLACED,
    createdAtMs: 1_700_000_000_000,
    idempotencyKey,
    discountCents: 0,
    reservationId: "",
  };
}

/** A promise and the functions that settle it. */
function deferred<T>(): { promise: Promise<T>; resolve(value: T): void; reject(error: unknown): void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { promise, resolve, reject };
}

/**
 * The behaviour every order store shares, whatever its database: each test opens two or more
 * stores on one fresh location from `freshLocation` ("replicas" of the orders service sharing a
 * database) and checks that an idempotency key holds across them.
 */
export function sharedOrderStoreBehaviour(freshLocation: () => Promise<StoreLocation>): void {
  let location: StoreLocation;
  const open: OrderStore[] = [];

  beforeEach(async () => {
    location = await freshLocation();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((store) => store.close()));
  });

  async function replica(options: Partial<ClaimOptions> = {}): Promise<Replica> {
    const log = captureLog("debug");
    const store = await openOrderStore(location, { logger: log.logger, ...options });
    open.push(store);
    return { store, log };
  }

  /** A `create` for (customer, key) that counts its calls. */
  function counted(customerId: string, idempotencyKey: string): { create: (id: string) => Promise<Order>; calls: string[] } {
    const calls: string[] = [];
    return {
      calls,
      create: async (id) => {
        calls.push(id);
        return anOrder(id, customerId, idempotencyKey);
      },
    };
  }

  it("creates the order on the first call and replays it, unchanged, from either replica after", async () => {
    const [a, b] = [await replica(), await replica()];
    const { create, calls } = counted("cust-1", "key-1");
    const first = await a.store.placeOnce("cust-1", "key-1", create);
    assert.equal(first.replayed, false);
    assert.match(first.order.id, ORDER_ID);
    assert.deepEqual(first.order, anOrder(first.order.id, "cust-1", "key-1"));
    assert.deepEqual(await a.store.placeOnce("cust-1", "key-1", create), { order: first.order, replayed: true });
    assert.deepEqual(await b.store.placeOnce("cust-1", "key-1", create), { order: first.order, replayed: true });
    assert.deepEqual(calls, [first.order.id], "created once");
    const otherCustomer = await b.store.placeOnce("cust-2", "key-1", counted("cust-2", "key-1").create);
    assert.equal(otherCustomer.replayed, false, "a key is per customer");
    assert.notEqual(otherCustomer.order.id, first.order.id);
  });

  it("makes one order when a second replica gets the key while the first creates it: the second waits and replays it", async () => {
    const [a, b] = [await replica(), await replica()];
    const gate = deferred<void>();
    const calls: string[] = [];
    const create = async (id: string) => {
      calls.push(id);
      await gate.promise;
      return anOrder(id, "cust-hedge", "hedge-1");
    };
    const first = a.store.placeOnce("cust-hedge", "hedge-1", create);
    await waitFor("replica A to claim the key and start creating", () => calls.length === 1);
    const second = b.store.placeOnce("cust-hedge", "hedge-1", create);
    await waitFor("replica B to wait for A's claim", () => b.log.lines.some((line) => line.msg === WAITING));
    gate.resolve();
    const [created, replayed] = await Promise.all([first, second]);
    assert.equal(created.replayed, false);
    assert.deepEqual(replayed, { order: created.order, replayed: true });
    assert.equal(calls.length, 1, "B never created one");
  });

  it("makes one order when many calls on two replicas race for a key at the same moment", async () => {
    const [a, b] = [await replica(), await replica()];
    const { create, calls } = counted("cust-race", "race-1");
    const outcomes = await Promise.all(
      Array.from({ length: 10 }, (_, index) => (index % 2 === 0 ? a : b).store.placeOnce("cust-race", "race-1", create)),
    );
    assert.equal(calls.length, 1);
    assert.equal(new Set(outcomes.map((outcome) => outcome.order.id)).size, 1);
    assert.equal(outcomes.filter((outcome) => !outcome.replayed).length, 1);
    assert.equal((await a.store.list("cust-race")).length, 1);
  });

  it("frees the key when a creation fails, so that a retry on another replica creates the order", async () => {
    const [a, b] = [await replica(), await replica()];
    const failure = new MeshError(status.NOT_FOUND, 'items[0].product_id: product "sku-9999" not found');
    await assert.rejects(
      a.store.placeOnce("cust-fail", "fail-1", async () => {
        throw failure;
      }),
      (error) => error === failure,
    );
    assert.deepEqual(await b.store.list("cust-fail"), [], "nothing stored");
    const retried = await b.store.placeOnce("cust-fail", "fail-1", counted("cust-fail", "fail-1").create);
    assert.equal(retried.replayed, false);
    assert.deepEqual(await a.store.list("cust-fail"), [retried.order]);
  });

  it("lets a replica waiting on a claim that fails take the key and create the order itself", async () => {
    const [a, b] = [await replica(), await replica()];
    const gate = deferred<Order>();
    let isCreating = false;
    const failing = a.store.placeOnce("cust-wait-fail", "wait-fail-1", () => {
      isCreating = true;
      return gate.promise;
    });
    await waitFor("replica A to start creating", () => isCreating);
    const { create, calls } = counted("cust-wait-fail", "wait-fail-1");
    const waiting = b.store.placeOnce("cust-wait-fail", "wait-fail-1", create);
    await waitFor("replica B to wait for A's claim", () => b.log.lines.some((line) => line.msg === WAITING));
    const failure = new MeshError(status.UNAVAILABLE, "catalog: no healthy endpoint");
    gate.reject(failure);
    await assert.rejects(failing, (error) => error === failure);
    const placed = await waiting;
    assert.equal(placed.replayed, false);
    assert.deepEqual(calls, [placed.order.id]);
    assert.deepEqual(await a.store.list("cust-wait-fail"), [placed.order]);
  });

  it("gets and lists orders placed through either replica, newest first, of one customer or of all", async () => {
    const [a, b] = [await replica(), await replica()];
    const placed: Order[] = [];
    for (let index = 0; index < 6; index += 1) {
      const customerId = index % 3 === 0 ? "cust-list-x" : "cust-list-y";
      const key = `list-${index}`;
      const { order } = await (index % 2 === 0 ? a : b).store.placeOnce(customerId, key, counted(customerId, key).create);
      placed.push(order);
    }
    const newestFirst = [...placed].reverse();
    assert.deepEqual(await a.store.list(""), newestFirst);
    assert.deepEqual(await b.store.list(""), newestFirst);
    assert.deepEqual(await a.store.list("cust-list-x"), newestFirst.filter((order) => order.customerId === "cust-list-x"));
    assert.deepEqual(await b.store.list("cust-nobody"), []);
    for (const order of placed) {
      assert.deepEqual(await a.store.get(order.id), order);
      assert.deepEqual(await b.store.get(order.id), order);
    }
    for (const unknown of ["ord-999999", "ord-1", "ord-0000001", "nope", ""]) {
      assert.equal(await b.store.get(unknown), undefined, unknown);
    }
  });

  it("gives every order an id unique across replicas, in the ord-000001 format", async () => {
    const replicas = [await replica(), await replica(), await replica()];
    const outcomes = await Promise.all(
      Array.from({ length: 30 }, (_, index) =>
        replicas[index % replicas.length].store.placeOnce("cust-ids", `ids-${index}`, counted("cust-ids", `ids-${index}`).create),
      ),
    );
    const ids = outcomes.map((outcome) => outcome.order.id);
    assert.equal(new Set(ids).size, ids.length);
    for (const id of ids) assert.match(id, ORDER_ID);
    assert.equal((await replicas[0].store.list("cust-ids")).length, ids.length);
  });

  it("keeps orders when a replica closes and opens again", async () => {
    const first = await replica();
    const { order } = await first.store.placeOnce("cust-restart", "restart-1", counted("cust-restart", "restart-1").create);
    await first.store.close();
    open.splice(open.indexOf(first.store), 1);
    const reopened = await replica();
    assert.deepEqual(await reopened.store.placeOnce("cust-restart", "restart-1", counted("cust-restart", "restart-1").create), {
      order,
      replayed: true,
    });
  });

  it(`takes over a claim left pending longer than ${CLAIM_STALE_MS} ms (its owner died); the late owner gets the new order`, async () => {
    const a = await replica();
    // B's clock runs past the stale time of every claim A makes now.
    const b = await replica({ now: () => Date.now() + CLAIM_STALE_MS + 1 });
    const gate = deferred<Order>();
    let claimedId: string | undefined;
    const late = a.store.placeOnce("cust-stale", "stale-1", (id) => {
      claimedId = id;
      return gate.promise;
    });
    await waitFor("replica A to claim the key", () => claimedId !== undefined);
    const { create, calls } = counted("cust-stale", "stale-1");
    const taken: PlacedOrder = await b.store.placeOnce("cust-stale", "stale-1", create);
    assert.equal(taken.replayed, false);
    assert.deepEqual(calls, [claimedId], "B created the order of A's claim, under its id");
    assert.ok(b.log.lines.some((line) => line.msg === TOOK_OVER && line.idempotencyKey === "stale-1"));
    // A was only slow: its own order loses to B's, which it returns as replayed.
    gate.resolve(anOrder(claimedId!, "cust-stale", "stale-1", 9));
    assert.deepEqual(await late, { order: taken.order, replayed: true });
    assert.deepEqual(await a.store.list("cust-stale"), [taken.order]);
  });

  it("renews a live owner's claim: a creation slower than the stale time is waited for, not taken over", async () => {
    const a = await replica({ staleMs: 200 });
    const b = await replica({ staleMs: 200, waitMs: 3_000 });
    let claimedId: string | undefined;
    const owner = a.store.placeOnce("cust-renew", "renew-1", async (id) => {
      claimedId = id;
      await new Promise((resolve) => setTimeout(resolve, 600)); // three stale times
      return anOrder(id, "cust-renew", "renew-1");
    });
    await waitFor("replica A to claim the key", () => claimedId !== undefined);
    const { create, calls } = counted("cust-renew", "renew-1");
    const waited = await b.store.placeOnce("cust-renew", "renew-1", create);
    assert.deepEqual(calls, [], "B never took the renewed claim over");
    assert.equal(waited.replayed, true);
    assert.deepEqual(waited.order, (await owner).order);
  });

  it("does not take over a claim younger than the stale time: a waiter fails ABORTED naming the key at its deadline or wait limit", async () => {
    const a = await replica();
    const b = await replica({ waitMs: 100 });
    const gate = deferred<void>();
    let isCreating = false;
    const owner = a.store.placeOnce("cust-abort", "abort-1", async (id) => {
      isCreating = true;
      await gate.promise;
      return anOrder(id, "cust-abort", "abort-1");
    });
    await waitFor("replica A to start creating", () => isCreating);
    const { create, calls } = counted("cust-abort", "abort-1");
    const aborted = (error: unknown) =>
      error instanceof MeshError &&
      error.code === status.ABORTED &&
      /^idempotency_key "abort-1": another call is still placing this order after \d+ ms; retry with the same key$/.test(error.details);
    await assert.rejects(b.store.placeOnce("cust-abort", "abort-1", create), aborted, "at B's wait limit");
    await assert.rejects(a.store.placeOnce("cust-abort", "abort-1", create, { deadlineMs: Date.now() + 100 }), aborted, "at the call's deadline");
    assert.deepEqual(calls, []);
    gate.resolve();
    assert.equal((await owner).replayed, false);
  });

  it("answers UNAVAILABLE once its database connection is gone, and logs why", async () => {
    const a = await replica();
    await a.store.close();
    open.splice(open.indexOf(a.store), 1);
    await assert.rejects(a.store.list(""), (error) => error instanceof MeshError && error.code === status.UNAVAILABLE);
    assert.ok(a.log.lines.some((line) => line.msg === "order store failed" && line.err !== undefined));
  });
}

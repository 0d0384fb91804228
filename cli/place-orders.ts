import { randomUUID } from "node:crypto";
import { Metadata, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { OrderServiceClient } from "../generated/ts/shop/orders/v1/orders";
import type { ListOrdersResponse, PlaceOrderResponse } from "../generated/ts/shop/orders/v1/orders";
import { createClient } from "../mesh/client";
import type { MeshClientOptions } from "../mesh/client";
import { createLogger } from "../mesh/logger";
import { previousAttemptsOf } from "../mesh/observer-client";
import { SEED_PRODUCTS } from "../services/catalog/seed";

/**
 * `protomesh place-orders`: orders placed as a mesh client places them (by name over xDS, with the
 * orders service's policy from the control plane: its retries of UNAVAILABLE and
 * RESOURCE_EXHAUSTED), and what came of them, so that the README's walkthrough can show the mesh
 * riding through a fault: how many calls succeeded, how many needed a retry, and whether any
 * idempotency key got two orders.
 */

/** Orders placed at once. */
const CONCURRENCY = 4;
/** Deadline of each PlaceOrder. */
const DEADLINE_MS = 5_000;

/** What came of the orders. */
export interface PlaceOrdersReport {
  calls: number;
  /** Calls by final status ("OK", "UNAVAILABLE"). */
  codes: Record<string, number>;
  /** Calls that took more than one attempt (retried by grpc-js). */
  retried: number;
  /** Orders the store holds for the run's customer. */
  stored: number;
  /** Idempotency keys with more than one order (should be none). */
  duplicated: number;
}

/** Places `count` orders through `controlPlane`'s mesh, each with a new key, then lists them back. */
export async function placeOrders(
  controlPlane: string,
  count: number,
  security: Pick<MeshClientOptions, "tls" | "xdsServer"> = {},
): Promise<PlaceOrdersReport> {
  const logger = createLogger({ name: "place-orders", level: "error" });
  const client = createClient(OrderServiceClient, "orders", { controlPlane, logger, defaultDeadlineMs: DEADLINE_MS, ...security });
  const customerId = `walkthrough-${randomUUID().slice(0, 8)}`;
  const report: PlaceOrdersReport = { calls: 0, codes: {}, retried: 0, stored: 0, duplicated: 0 };
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next += 1;
      const { error, attempts } = await placeOne(client, customerId, `key-${next}`, productFor(next));
      const code = status[error?.code ?? status.OK];
      report.calls += 1;
      report.codes[code] = (report.codes[code] ?? 0) + 1;
      if (attempts > 1) report.retried += 1;
    }
  };
  try {
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const keys = new Map<string, number>();
    for (const order of await listAll(client, customerId)) keys.set(order.idempotencyKey, (keys.get(order.idempotencyKey) ?? 0) + 1);
    report.stored = [...keys.values()].reduce((sum, orders) => sum + orders, 0);
    report.duplicated = [...keys.values()].filter((orders) => orders > 1).length;
    return report;
  } finally {
    client.close();
  }
}

/**
 * The product of order `n`: one unit of each of the catalog's products in turn, so that a run
 * spreads over the inventory's stock (1000 units of each) instead of emptying one product's.
 */
function productFor(n: number): string {
  return SEED_PRODUCTS[(n - 1) % SEED_PRODUCTS.length].id;
}

function placeOne(client: OrderServiceClient, customerId: string, idempotencyKey: string, productId: string): Promise<{ error?: ServiceError; attempts: number }> {
  let previous = 0;
  const note = (metadata: Metadata | undefined) => {
    previous = Math.max(previous, previousAttemptsOf(metadata));
  };
  return new Promise((resolve) => {
    const call = client.placeOrder(
      { customerId, idempotencyKey, items: [{ productId, quantity: 1 }] },
      (error: ServiceError | null, _response: PlaceOrderResponse) => {
        note(error?.metadata);
        resolve({ error: error ?? undefined, attempts: previous + 1 });
      },
    );
    call.on("metadata", note);
  });
}

/** Every order of `customerId`, all pages. */
export async function listAll(client: OrderServiceClient, customerId: string): Promise<ListOrdersResponse["orders"]> {
  const orders: ListOrdersResponse["orders"] = [];
  let pageToken = "";
  do {
    const page = await new Promise<ListOrdersResponse>((resolve, reject) =>
      client.listOrders({ customerId, pageSize: 100, pageToken }, (error, response) => (error ? reject(error) : resolve(response))),
    );
    orders.push(...page.orders);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return orders;
}

/** The report as the command prints it. */
export function formatReport(report: PlaceOrdersReport): string {
  const codes = Object.entries(report.codes)
    .map(([code, calls]) => `${code} ${calls}`)
    .join(", ");
  return [
    `placed ${report.calls} orders: ${codes}`,
    `retried by grpc-js (more than one attempt): ${report.retried}`,
    `orders stored: ${report.stored}; idempotency keys with more than one order: ${report.duplicated}`,
  ].join("\n");
}

import { Metadata, status } from "@grpc/grpc-js";
import type { CatalogServiceClient, GetProductResponse, Product } from "../../generated/ts/shop/catalog/v1/catalog";
import type { InventoryServiceClient, ReserveStockResponse } from "../../generated/ts/shop/inventory/v1/inventory";
import {
  OrderStatus,
  type GetOrderRequest,
  type GetOrderResponse,
  type ListOrdersRequest,
  type ListOrdersResponse,
  type Order,
  type OrderLine,
  type OrderServiceServer,
  type PlaceOrderRequest,
  type PlaceOrderResponse,
} from "../../generated/ts/shop/orders/v1/orders";
import type { PricingServiceClient, QuoteBasketResponse } from "../../generated/ts/shop/pricing/v1/pricing";
import type { Logger } from "../../mesh";
import { MeshError, deadlineMs, detached, invalidArgument, isServiceError, nextPageToken, parsePage, unary } from "../../mesh";
import type { OrderStore } from "./order-store";
import { validatePlaceOrder } from "./validation";

/** The services orders calls: the catalog always; inventory and pricing where the mesh has them. */
export interface OrdersDownstream {
  catalog: CatalogServiceClient;
  /** Holds an order's stock before it is recorded (ReserveStock), and gives it back if placing fails. */
  inventory?: InventoryServiceClient;
  /** Prices the basket (QuoteBasket); without it a line costs the catalog's price, with no discount. */
  pricing?: PricingServiceClient;
  /** Where a reservation that could not be released is reported. */
  logger?: Logger;
}

/** Deadline of the ReleaseStock that gives back a failed order's stock, outside the failed call's budget. */
export const RELEASE_DEADLINE_MS = 2_000;

/**
 * The orders service's handlers, keeping orders in `store` (shared by the replicas opened on the same
 * database). A new order's lines are named by GetProduct calls to the catalog. With an inventory,
 * its stock is reserved first (ReserveStock, keyed by the order's id, so a retried placement holds
 * it once); with pricing, the basket is quoted (QuoteBasket) beside the catalog calls. When naming
 * or pricing fails, the reservation is released before the failure goes back to the caller.
 */
export function ordersService(downstream: OrdersDownstream, store: OrderStore, now: () => number = Date.now): OrderServiceServer {
  const { catalog, inventory, pricing } = downstream;
  return {
    placeOrder: unary<PlaceOrderRequest, PlaceOrderResponse>(async (request, call) => {
      validatePlaceOrder(request);
      const create = async (id: string): Promise<Order> => {
        const reservation = inventory ? await reserveStock(inventory, id, request) : undefined;
        try {
          const [products, quote] = await Promise.all([
            Promise.all(request.items.map((item, index) => fetchProduct(catalog, item.productId, `items[${index}].product_id`))),
            pricing ? quoteBasket(pricing, request) : undefined,
          ]);
          const lines: OrderLine[] = request.items.map((item, index) => {
            const quoted = quote?.lines[index];
            const unitPriceCents = quoted?.unitPriceCents ?? products[index].priceCents;
            const discountCents = quoted?.discountCents ?? 0;
            return {
              productId: item.productId,
              productName: products[index].name,
              quantity: item.quantity,
              unitPriceCents,
              lineTotalCents: quoted?.lineTotalCents ?? unitPriceCents * item.quantity,
              discountCents,
            };
          });
          const linesTotalCents = lines.reduce((sum, line) => sum + line.lineTotalCents, 0);
          return {
            id,
            customerId: request.customerId,
            lines,
            totalCents: quote?.totalCents ?? linesTotalCents,
            currency: quote?.currency ?? products[0].currency,
            status: OrderStatus.ORDER_STATUS_PLACED,
            createdAtMs: now(),
            idempotencyKey: request.idempotencyKey,
            // pricing's discount is the lines' and the basket's together; the order's is the basket's alone.
            discountCents: quote ? linesTotalCents - quote.totalCents : 0,
            reservationId: reservation?.reservationId ?? "",
          };
        } catch (error) {
          if (reservation) await releaseStock(inventory!, reservation.reservationId, id, downstream.logger);
          throw error;
        }
      };
      // A call that finds the key being placed by another waits for it, within this call's deadline.
      return store.placeOnce(request.customerId, request.idempotencyKey, create, { deadlineMs: deadlineMs(call.getDeadline()) });
    }),

    getOrder: unary<GetOrderRequest, GetOrderResponse>(async ({ id }) => {
      if (id === "") throw invalidArgument("id", "is required");
      const order = await store.get(id);
      if (!order) throw new MeshError(status.NOT_FOUND, `order ${JSON.stringify(id)} not found`);
      return { order };
    }),

    listOrders: unary<ListOrdersRequest, ListOrdersResponse>(async ({ customerId, pageSize, pageToken }) => {
      const page = parsePage(pageSize, pageToken);
      const orders = await store.list(customerId);
      return { orders: orders.slice(page.offset, page.offset + page.size), nextPageToken: nextPageToken(page, orders.length) };
    }),
  };
}

/** Reserves the order's items, keyed by its id; the inventory's failures keep their status, named "inventory: ...". */
function reserveStock(inventory: InventoryServiceClient, orderId: string, request: PlaceOrderRequest): Promise<ReserveStockResponse> {
  return new Promise((resolve, reject) => {
    inventory.reserveStock({ orderId, items: itemsOf(request) }, (error, response) => (error ? reject(downstreamError("inventory", error)) : resolve(response)));
  });
}

/** Prices the basket; pricing's failures keep their status, named "pricing: ...". */
function quoteBasket(pricing: PricingServiceClient, request: PlaceOrderRequest): Promise<QuoteBasketResponse> {
  return new Promise((resolve, reject) => {
    const lines = itemsOf(request);
    pricing.quoteBasket({ customerId: request.customerId, lines, currency: "" }, (error, response) => {
      if (error) return reject(downstreamError("pricing", error));
      if (response.lines.length !== lines.length) {
        return reject(new MeshError(status.INTERNAL, `pricing: quoted ${response.lines.length} lines for ${lines.length}`));
      }
      resolve(response);
    });
  });
}

/**
 * Gives a failed order's stock back. Detached from the failed call (which may have run out of
 * budget: that is often why it failed), on a deadline of its own; a release that fails is logged,
 * and the caller sees the failure that made the order fail.
 */
function releaseStock(inventory: InventoryServiceClient, reservationId: string, orderId: string, logger: Logger | undefined): Promise<void> {
  return detached(
    () =>
      new Promise<void>((resolve) => {
        inventory.releaseStock({ reservationId }, new Metadata(), { deadline: Date.now() + RELEASE_DEADLINE_MS }, (error) => {
          if (error) logger?.warn({ err: error, order: orderId, reservationId }, "could not release the stock of a failed order");
          resolve();
        });
      }),
  );
}

/** The order's items as the inventory's and pricing's messages take them (product and quantity). */
function itemsOf(request: PlaceOrderRequest): Array<{ productId: string; quantity: number }> {
  return request.items.map(({ productId, quantity }) => ({ productId, quantity }));
}

function downstreamError(service: string, error: Error): MeshError {
  if (isServiceError(error)) return new MeshError(error.code, `${service}: ${error.details}`, { cause: error });
  return new MeshError(status.INTERNAL, `${service}: ${error.message}`, { cause: error });
}

/**
 * Looks a product up in the catalog. Made while handling PlaceOrder, the call inherits its deadline,
 * its cancellation and its request id from the kit (mesh/call-context.ts), and nothing else of its
 * metadata (no credentials or cookies leak downstream). NOT_FOUND names the request field; other
 * catalog failures keep their status.
 */
function fetchProduct(catalog: CatalogServiceClient, productId: string, field: string): Promise<Product> {
  return new Promise((resolve, reject) => {
    catalog.getProduct({ id: productId }, (error, response: GetProductResponse) => {
      if (!error && response.product) return resolve(response.product);
      if (error && error.code === status.NOT_FOUND) {
        return reject(new MeshError(status.NOT_FOUND, `${field}: product ${JSON.stringify(productId)} not found`));
      }
      reject(error ? downstreamError("catalog", error) : new MeshError(status.INTERNAL, "catalog returned no product"));
    });
  });
}

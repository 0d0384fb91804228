import { status } from "@grpc/grpc-js";
import type { CatalogServiceClient, GetProductResponse, Product } from "../../generated/ts/shop/catalog/v1/catalog";
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
import { MeshError, deadlineMs, invalidArgument, isServiceError, nextPageToken, parsePage, unary } from "../../mesh";
import type { OrderStore } from "./order-store";
import { validatePlaceOrder } from "./validation";

/**
 * The orders service's handlers, keeping orders in `store` (shared by the replicas opened on the same
 * database). Every line of a new order is priced by a GetProduct call to the catalog.
 */
export function ordersService(catalog: CatalogServiceClient, store: OrderStore, now: () => number = Date.now): OrderServiceServer {
  return {
    placeOrder: unary<PlaceOrderRequest, PlaceOrderResponse>(async (request, call) => {
      validatePlaceOrder(request);
      const create = async (id: string): Promise<Order> => {
        const products = await Promise.all(
          request.items.map((item, index) => fetchProduct(catalog, item.productId, `items[${index}].product_id`)),
        );
        const lines: OrderLine[] = request.items.map((item, index) => ({
          productId: item.productId,
          productName: products[index].name,
          quantity: item.quantity,
          unitPriceCents: products[index].priceCents,
          lineTotalCents: products[index].priceCents * item.quantity,
        }));
        return {
          id,
          customerId: request.customerId,
          lines,
          totalCents: lines.reduce((sum, line) => sum + line.lineTotalCents, 0),
          currency: products[0].currency,
          status: OrderStatus.ORDER_STATUS_PLACED,
          createdAtMs: now(),
          idempotencyKey: request.idempotencyKey,
        };
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
      if (error && isServiceError(error)) {
        return reject(new MeshError(error.code, `catalog: ${error.details}`, { cause: error }));
      }
      reject(new MeshError(status.INTERNAL, "catalog returned no product", { cause: error }));
    });
  });
}

import type { PlaceOrderRequest } from "../../generated/ts/shop/orders/v1/orders";
import { invalidArgument } from "../../mesh";

/** Bounds of a PlaceOrder request; each check names the field it refuses. */
export const ORDER_LIMITS = Object.freeze({
  maxCustomerIdLength: 64,
  maxItems: 100,
  maxQuantity: 1000,
  maxIdempotencyKeyLength: 128,
  maxProductIdLength: 64,
});

/** Throws INVALID_ARGUMENT naming the first field of `request` that is not acceptable. */
export function validatePlaceOrder(request: PlaceOrderRequest): void {
  requireText("customer_id", request.customerId, ORDER_LIMITS.maxCustomerIdLength);
  requireText("idempotency_key", request.idempotencyKey, ORDER_LIMITS.maxIdempotencyKeyLength);
  if (request.items.length === 0) throw invalidArgument("items", "must hold at least one item");
  if (request.items.length > ORDER_LIMITS.maxItems) {
    throw invalidArgument("items", `must hold at most ${ORDER_LIMITS.maxItems} items`);
  }
  const seen = new Set<string>();
  request.items.forEach((item, index) => {
    requireText(`items[${index}].product_id`, item.productId, ORDER_LIMITS.maxProductIdLength);
    if (seen.has(item.productId)) {
      throw invalidArgument(`items[${index}].product_id`, `${JSON.stringify(item.productId)} appears twice`);
    }
    seen.add(item.productId);
    if (!Number.isInteger(item.quantity) || item.quantity < 1 || item.quantity > ORDER_LIMITS.maxQuantity) {
      throw invalidArgument(`items[${index}].quantity`, `must be between 1 and ${ORDER_LIMITS.maxQuantity}`);
    }
  });
}

function requireText(field: string, value: string, maxLength: number): void {
  if (value.trim() === "") throw invalidArgument(field, "is required");
  if (value.length > maxLength) throw invalidArgument(field, `must be at most ${maxLength} characters`);
}

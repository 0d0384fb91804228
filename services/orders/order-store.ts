import type { Order } from "../../generated/ts/shop/orders/v1/orders";

/**
 * In-memory orders with idempotency: the first PlaceOrder with a (customer, key) pair creates the
 * order; every later one, even while the first is still being priced, gets that same order.
 */
export class OrderStore {
  private readonly orders = new Map<string, Order>();
  private readonly newestFirst: Order[] = [];
  private readonly byIdempotencyKey = new Map<string, Promise<Order>>();
  private sequence = 0;

  /**
   * Returns the order for the key, creating it with `create` only if the key is new. `replayed`
   * tells whether the order already existed. A failed creation frees the key for a retry.
   */
  async placeOnce(
    customerId: string,
    idempotencyKey: string,
    create: (id: string) => Promise<Order>,
  ): Promise<{ order: Order; replayed: boolean }> {
    const key = JSON.stringify([customerId, idempotencyKey]);
    const existing = this.byIdempotencyKey.get(key);
    if (existing) return { order: await existing, replayed: true };
    this.sequence += 1;
    const id = `ord-${String(this.sequence).padStart(6, "0")}`;
    const pending = create(id).then((order) => {
      this.orders.set(order.id, order);
      this.newestFirst.unshift(order);
      return order;
    });
    this.byIdempotencyKey.set(key, pending);
    try {
      return { order: await pending, replayed: false };
    } catch (error) {
      this.byIdempotencyKey.delete(key);
      throw error;
    }
  }

  /** The order with `id`, if any. */
  get(id: string): Order | undefined {
    return this.orders.get(id);
  }

  /** Orders, newest first, optionally of one customer only. */
  list(customerId: string): Order[] {
    return customerId === "" ? this.newestFirst : this.newestFirst.filter((order) => order.customerId === customerId);
  }
}

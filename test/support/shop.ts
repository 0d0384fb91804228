import { promisify } from "node:util";
import { Metadata } from "@grpc/grpc-js";
import { CatalogServiceClient, CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import type { GetProductRequest, GetProductResponse } from "../../generated/ts/shop/catalog/v1/catalog";
import { OrderServiceClient, OrderServiceService } from "../../generated/ts/shop/orders/v1/orders";
import { createClient } from "../../mesh/client";
import { unary } from "../../mesh/handler";
import type { Logger } from "../../mesh/logger";
import { createServer } from "../../mesh/server";
import type { MeshServer } from "../../mesh/server";
import { catalogService } from "../../services/catalog/catalog-service";
import { openOrderStore } from "../../services/orders/order-store-url";
import { ordersService } from "../../services/orders/orders-service";
import { captureLog } from "./log-capture";
import type { CapturedLog } from "./log-capture";

/** Catalog and orders servers on 127.0.0.1 ephemeral ports, orders calling the catalog. */
export interface Shop {
  catalogServer: MeshServer;
  ordersServer: MeshServer;
  catalogAddress: string;
  ordersAddress: string;
  log: CapturedLog;
  /** Drains both servers, closes the clients and the store. */
  stop(): Promise<void>;
}

/** Starts the reference services in this process, with their log lines captured. */
export async function startShop(options: { drainGraceMs?: number } = {}): Promise<Shop> {
  const log = captureLog();
  const catalogServer = createServer({ name: "catalog", logger: log.logger, drainGraceMs: options.drainGraceMs });
  catalogServer.addService(CatalogServiceService, catalogService());
  const catalogAddress = `127.0.0.1:${await catalogServer.listen()}`;
  const catalogClient = createClient(CatalogServiceClient, catalogAddress, { logger: log.logger });
  const ordersServer = createServer({ name: "orders", logger: log.logger, drainGraceMs: options.drainGraceMs });
  // In memory: one process, one orders server.
  const store = await openOrderStore({ kind: "sqlite", file: ":memory:" }, { logger: log.logger });
  ordersServer.addService(OrderServiceService, ordersService({ catalog: catalogClient }, store));
  const ordersAddress = `127.0.0.1:${await ordersServer.listen()}`;
  return {
    catalogServer,
    ordersServer,
    catalogAddress,
    ordersAddress,
    log,
    async stop() {
      await Promise.all([ordersServer.drain(), catalogServer.drain()]);
      catalogClient.close();
      await store.close();
    },
  };
}

/** Typed clients to a running shop, with protomesh's deadlines and logging. */
export function shopClients(shop: Shop): { catalog: CatalogServiceClient; orders: OrderServiceClient; close(): void } {
  const catalog = createClient(CatalogServiceClient, shop.catalogAddress, { logger: shop.log.logger });
  const orders = createClient(OrderServiceClient, shop.ordersAddress, { logger: shop.log.logger });
  return {
    catalog,
    orders,
    close() {
      catalog.close();
      orders.close();
    },
  };
}

/**
 * A catalog server whose GetProduct never answers, so only the caller's deadline ends the call;
 * it records the deadline (ms since the epoch) each call arrived with.
 */
export async function stalledCatalog(logger: Logger): Promise<{ server: MeshServer; address: string; deadlines: number[] }> {
  const deadlines: number[] = [];
  const server = createServer({ name: "catalog", logger });
  server.addService(CatalogServiceService, {
    ...catalogService(),
    getProduct: unary<GetProductRequest, GetProductResponse>((_request, call) => {
      const deadline = call.getDeadline();
      deadlines.push(deadline instanceof Date ? deadline.getTime() : deadline);
      return new Promise<GetProductResponse>(() => undefined);
    }),
  });
  const address = `127.0.0.1:${await server.listen()}`;
  return { server, address, deadlines };
}

/** Mocha hooks that start a shop and its clients before the suite and stop them after it. */
export function useShop(): { shop: Shop; clients: ReturnType<typeof shopClients> } {
  const context = {} as { shop: Shop; clients: ReturnType<typeof shopClients> };
  before(async () => {
    context.shop = await startShop();
    context.clients = shopClients(context.shop);
  });
  after(async () => {
    context.clients.close();
    await context.shop.stop();
  });
  return context;
}

/** One GetProduct call with a deadline of `deadlineMs`. */
export function getProduct(client: CatalogServiceClient, deadlineMs = 2_000): Promise<GetProductResponse> {
  const call = promisify<{ id: string }, Metadata, { deadline: number }, GetProductResponse>(client.getProduct.bind(client) as never);
  return call({ id: "sku-1001" }, new Metadata(), { deadline: Date.now() + deadlineMs });
}

import { CatalogServiceClient } from "../../generated/ts/shop/catalog/v1/catalog";
import { OrderServiceService } from "../../generated/ts/shop/orders/v1/orders";
import { createClient } from "../../mesh/client";
import { createLogger } from "../../mesh/logger";
import { createServer } from "../../mesh/server";
import { drainOnSignals } from "../../mesh/shutdown";
import { listenAddress } from "../../mesh/listen-address";
import { controlPlaneAddress } from "../../mesh/xds-bootstrap";
import { ordersService } from "./orders-service";

/** Port the orders service listens on unless PORT says otherwise. */
export const ORDERS_DEFAULT_PORT = 50052;
/** Where orders finds the catalog unless CATALOG_TARGET says otherwise, or a control plane is set (then by name). */
export const CATALOG_DEFAULT_TARGET = "127.0.0.1:50051";
/** Deadline of one GetProduct call to the catalog (ms); also bounded by the inbound call's deadline. */
export const CATALOG_GET_PRODUCT_DEADLINE_MS = 1_000;

async function main(): Promise<void> {
  const logger = createLogger({ name: "orders" });
  const catalogTarget = process.env.CATALOG_TARGET ?? (controlPlaneAddress() ? "catalog" : CATALOG_DEFAULT_TARGET);
  const catalog = createClient(CatalogServiceClient, catalogTarget, {
    logger,
    methodDeadlinesMs: { GetProduct: CATALOG_GET_PRODUCT_DEADLINE_MS },
  });
  const server = createServer({ name: "orders", logger });
  server.addService(OrderServiceService, ordersService(catalog));
  await server.listen(listenAddress(ORDERS_DEFAULT_PORT));
  drainOnSignals(async () => {
    await server.drain();
    catalog.close();
  }, logger);
}

main().catch((error: unknown) => {
  createLogger({ name: "orders" }).fatal({ err: error }, "orders failed to start");
  process.exit(1);
});

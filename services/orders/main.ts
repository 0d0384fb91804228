import { CatalogServiceClient } from "../../generated/ts/shop/catalog/v1/catalog";
import { OrderServiceService } from "../../generated/ts/shop/orders/v1/orders";
import { createClient } from "../../mesh/client";
import { createLogger, exitAfterFlush } from "../../mesh/logger";
import { routeGrpcLogs } from "../../mesh/grpc-log";
import { createServer } from "../../mesh/server";
import { drainOnSignals } from "../../mesh/shutdown";
import { listenAddress } from "../../mesh/listen-address";
import { controlPlaneAddress } from "../../mesh/xds-bootstrap";
import { CATALOG_DEFAULT_PORT, ORDERS_DEFAULT_PORT } from "../stack";
import { ordersService } from "./orders-service";

/** Where orders finds the catalog unless CATALOG_TARGET says otherwise, or a control plane is set (then by name). */
export const CATALOG_DEFAULT_TARGET = `127.0.0.1:${CATALOG_DEFAULT_PORT}`;
/** Deadline of one GetProduct call to the catalog (ms); also bounded by the inbound call's deadline. */
export const CATALOG_GET_PRODUCT_DEADLINE_MS = 1_000;

async function main(): Promise<void> {
  const logger = createLogger({ name: "orders" });
  routeGrpcLogs(logger);
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
  const logger = createLogger({ name: "orders" });
  logger.fatal({ err: error }, "orders failed to start");
  exitAfterFlush(logger, 1);
});

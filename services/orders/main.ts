import { CatalogServiceClient } from "../../generated/ts/shop/catalog/v1/catalog";
import { InventoryServiceClient } from "../../generated/ts/shop/inventory/v1/inventory";
import { PricingServiceClient } from "../../generated/ts/shop/pricing/v1/pricing";
import { OrderServiceService } from "../../generated/ts/shop/orders/v1/orders";
import {
  clientOptionsFrom,
  createClient,
  createLogger,
  createServer,
  drainOnSignals,
  exitAfterFlush,
  listenAddress,
  loadSettings,
  routeGrpcLogs,
  serverOptionsFrom,
  tracingFromEnvironment,
} from "../../mesh";
import { CATALOG_DEFAULT_PORT, ORDERS_DEFAULT_PORT } from "../default-ports";
import { ORDERS_STORE_URL_ENV, openOrderStore, parseOrderStoreUrl, storeLogFields } from "./order-store-url";
import { ordersService } from "./orders-service";

/** The catalog when there is no control plane and CATALOG_TARGET names none: the default catalog on this host. */
export const CATALOG_FALLBACK_TARGET = `127.0.0.1:${CATALOG_DEFAULT_PORT}`;

async function main(): Promise<void> {
  const settings = loadSettings(process.env);
  const logger = createLogger({ name: "orders", level: settings.logLevel });
  routeGrpcLogs(logger);
  // Every replica opened on the same database shares the orders and their idempotency keys.
  const location = parseOrderStoreUrl(process.env[ORDERS_STORE_URL_ENV]);
  const store = await openOrderStore(location, { logger });
  logger.info(storeLogFields(location), "order store open");
  // By name through the mesh; CATALOG_TARGET, when set, names another target outright. The calls'
  // deadlines are the inbound PlaceOrder's remaining budget, no longer than the catalog's timeout in
  // the mesh config (deploy/mesh.yaml, sent over xDS).
  // Traces when the standard OTEL_* variables point at a collector (none otherwise).
  const tracing = tracingFromEnvironment(process.env, "orders");
  const clientOptions = {
    logger,
    ...clientOptionsFrom(settings),
    metrics: settings.adminAddress !== undefined,
    tracer: tracing?.tracer,
  };
  const catalog = createClient(CatalogServiceClient, process.env.CATALOG_TARGET || "catalog", { ...clientOptions, fallbackTarget: CATALOG_FALLBACK_TARGET });
  // Stock and prices, where the mesh has them: INVENTORY_TARGET and PRICING_TARGET name a mesh
  // service ("inventory", dialled by name through the control plane) or any grpc target. Unset,
  // orders reserves no stock and prices each line at the catalog's price.
  const inventoryTarget = process.env.INVENTORY_TARGET || undefined;
  const pricingTarget = process.env.PRICING_TARGET || undefined;
  const inventory = inventoryTarget ? createClient(InventoryServiceClient, inventoryTarget, clientOptions) : undefined;
  const pricing = pricingTarget ? createClient(PricingServiceClient, pricingTarget, clientOptions) : undefined;
  logger.info({ inventory: inventoryTarget ?? "not used", pricing: pricingTarget ?? "not used" }, "downstream services");
  const server = createServer({
    name: "orders",
    logger,
    ...serverOptionsFrom(settings, "orders"),
    tracer: tracing?.tracer,
  });
  server.addService(OrderServiceService, ordersService({ catalog, inventory, pricing, logger }, store));
  await server.listen(listenAddress(settings, ORDERS_DEFAULT_PORT));
  drainOnSignals(async () => {
    await server.drain();
    catalog.close();
    inventory?.close();
    pricing?.close();
    await store.close();
    await tracing?.shutdown();
  }, logger);
}

main().catch((error: unknown) => {
  const logger = createLogger({ name: "orders" });
  logger.fatal({ err: error }, "orders failed to start");
  exitAfterFlush(logger, 1);
});

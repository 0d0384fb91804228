import { CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import type { CatalogServiceServer } from "../../generated/ts/shop/catalog/v1/catalog";
import { createLogger, createServer, drainOnSignals, exitAfterFlush, listenAddress, loadSettings } from "../../mesh";
import { catalogService } from "../../services/catalog/catalog-service";
import { CATALOG_DEFAULT_PORT } from "../../services/default-ports";

/**
 * A test program: the catalog service exactly as services/catalog/main.ts runs it (the same
 * settings from the environment, registration, drain on SIGTERM), except that GetProduct waits
 * CATALOG_DELAY_MS before the real handler answers, so that a chaos test can have calls in flight
 * on a replica when it dies, or make one replica slower than the others. The headers go with the
 * response, as for every unary handler of the kit: a call is not committed (gRFC A6) before then.
 * A knob of the tests, kept out of the real service.
 */

/** Milliseconds GetProduct waits before answering (default 0). */
export const DELAY_ENV = "CATALOG_DELAY_MS";

/** The catalog's handlers, GetProduct answering `delayMs` late (a cancelled call stops waiting). */
export function delayedCatalog(delayMs: number): CatalogServiceServer {
  const catalog = catalogService();
  return {
    ...catalog,
    getProduct: (call, callback) => {
      const timer = setTimeout(() => catalog.getProduct(call, callback), delayMs);
      call.once("cancelled", () => clearTimeout(timer));
    },
  };
}

async function main(): Promise<void> {
  const settings = loadSettings(process.env);
  const delayMs = Number(process.env[DELAY_ENV] ?? "0");
  if (!Number.isFinite(delayMs) || delayMs < 0) throw new Error(`${DELAY_ENV}: must be a number of ms >= 0`);
  const logger = createLogger({ name: "catalog", level: settings.logLevel });
  const server = createServer({
    name: "catalog",
    logger,
    controlPlane: settings.controlPlane,
    zone: settings.zone,
    advertiseHost: settings.advertiseHost,
  });
  server.addService(CatalogServiceService, delayedCatalog(delayMs));
  await server.listen(listenAddress(settings, CATALOG_DEFAULT_PORT));
  drainOnSignals(() => server.drain(), logger);
}

if (require.main === module) {
  main().catch((error: unknown) => {
    const logger = createLogger({ name: "catalog" });
    logger.fatal({ err: error }, "delayed catalog failed to start");
    exitAfterFlush(logger, 1);
  });
}

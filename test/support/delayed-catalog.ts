import { CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import type { CatalogServiceServer } from "../../generated/ts/shop/catalog/v1/catalog";
import type { status } from "@grpc/grpc-js";
import { MeshError, createLogger, createServer, drainOnSignals, exitAfterFlush, listenAddress, loadSettings } from "../../mesh";
import { catalogService } from "../../services/catalog/catalog-service";
import { CATALOG_DEFAULT_PORT } from "../../services/default-ports";

/**
 * A test program: the catalog service exactly as services/catalog/main.ts runs it (the same
 * settings from the environment, registration, drain on SIGTERM), except that GetProduct waits
 * CATALOG_DELAY_MS before the real handler answers, so that a chaos test can have calls in flight
 * on a replica when it dies, or make one replica slower than the others. The headers go with the
 * response, as for every unary handler of the kit: a call is not committed (gRFC A6) before then.
 * It can also shed beyond a fixed limit (CATALOG_MAX_CONCURRENT_CALLS) and fail every GetProduct
 * while its health stays SERVING (CATALOG_FAIL_CODE, until SIGUSR2). Knobs of the tests, kept out
 * of the real service.
 */

/** Milliseconds GetProduct waits before answering (default 0). */
export const DELAY_ENV = "CATALOG_DELAY_MS";
/** When set, the server sheds calls beyond this many in flight (its load shedding's fixed limit). */
export const MAX_CONCURRENT_ENV = "CATALOG_MAX_CONCURRENT_CALLS";
/** When set, GetProduct fails with this gRPC code, health still SERVING, until the process gets SIGUSR2. */
export const FAIL_CODE_ENV = "CATALOG_FAIL_CODE";

/**
 * The catalog's handlers, GetProduct answering `delayMs` late (a cancelled call stops waiting), and
 * failing with `failure.code` while `failure.code` is set.
 */
export function delayedCatalog(delayMs: number, failure: { code?: status } = {}): CatalogServiceServer {
  const catalog = catalogService();
  return {
    ...catalog,
    getProduct: (call, callback) => {
      const timer = setTimeout(() => {
        if (failure.code !== undefined) callback(new MeshError(failure.code, "injected failure"));
        else catalog.getProduct(call, callback);
      }, delayMs);
      call.once("cancelled", () => clearTimeout(timer));
    },
  };
}

async function main(): Promise<void> {
  const settings = loadSettings(process.env);
  const delayMs = Number(process.env[DELAY_ENV] ?? "0");
  if (!Number.isFinite(delayMs) || delayMs < 0) throw new Error(`${DELAY_ENV}: must be a number of ms >= 0`);
  const maxConcurrentCalls = process.env[MAX_CONCURRENT_ENV] ? Number(process.env[MAX_CONCURRENT_ENV]) : undefined;
  const failure: { code?: status } = { code: process.env[FAIL_CODE_ENV] ? (Number(process.env[FAIL_CODE_ENV]) as status) : undefined };
  process.on("SIGUSR2", () => {
    failure.code = undefined;
  });
  const logger = createLogger({ name: "catalog", level: settings.logLevel });
  const server = createServer({
    name: "catalog",
    logger,
    controlPlane: settings.controlPlane,
    zone: settings.zone,
    advertiseHost: settings.advertiseHost,
    ...(maxConcurrentCalls !== undefined ? { loadShedding: { maxConcurrentCalls, adaptive: false } } : {}),
  });
  server.addService(CatalogServiceService, delayedCatalog(delayMs, failure));
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

import { CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import {
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
import { CATALOG_DEFAULT_PORT } from "../default-ports";
import { catalogService } from "./catalog-service";

async function main(): Promise<void> {
  const settings = loadSettings(process.env);
  const logger = createLogger({ name: "catalog", level: settings.logLevel });
  routeGrpcLogs(logger);
  // Traces when the standard OTEL_* variables point at a collector (none otherwise).
  const tracing = tracingFromEnvironment(process.env, "catalog");
  const server = createServer({
    name: "catalog",
    logger,
    ...serverOptionsFrom(settings, "catalog"),
    tracer: tracing?.tracer,
  });
  server.addService(CatalogServiceService, catalogService());
  await server.listen(listenAddress(settings, CATALOG_DEFAULT_PORT));
  drainOnSignals(async () => {
    await server.drain();
    await tracing?.shutdown();
  }, logger);
}

main().catch((error: unknown) => {
  const logger = createLogger({ name: "catalog" });
  logger.fatal({ err: error }, "catalog failed to start");
  exitAfterFlush(logger, 1);
});

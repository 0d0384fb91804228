import { CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import { createLogger, exitAfterFlush } from "../../mesh/logger";
import { routeGrpcLogs } from "../../mesh/grpc-log";
import { createServer } from "../../mesh/server";
import { drainOnSignals } from "../../mesh/shutdown";
import { listenAddress } from "../../mesh/listen-address";
import { CATALOG_DEFAULT_PORT } from "../stack";
import { catalogService } from "./catalog-service";

async function main(): Promise<void> {
  const logger = createLogger({ name: "catalog" });
  routeGrpcLogs(logger);
  const server = createServer({ name: "catalog", logger });
  server.addService(CatalogServiceService, catalogService());
  await server.listen(listenAddress(CATALOG_DEFAULT_PORT));
  drainOnSignals(() => server.drain(), logger);
}

main().catch((error: unknown) => {
  const logger = createLogger({ name: "catalog" });
  logger.fatal({ err: error }, "catalog failed to start");
  exitAfterFlush(logger, 1);
});

import { format } from "node:util";
import { setLogger } from "@grpc/grpc-js";
import type { Logger } from "./logger";

/**
 * Sends grpc-js's own diagnostics (dropped metadata, connection errors, GRPC_TRACE output) to the
 * process's pino logger instead of stderr, so that every line a service writes is structured.
 * grpc-js has one logger per process: call this once, from a service's entry point.
 */
export function routeGrpcLogs(logger: Logger): void {
  const log = logger.child({ component: "grpc-js" });
  setLogger({
    error: (...args: unknown[]) => log.error(format(...args)),
    warn: (...args: unknown[]) => log.warn(format(...args)),
    info: (...args: unknown[]) => log.info(format(...args)),
    debug: (...args: unknown[]) => log.debug(format(...args)),
  });
}

import pino from "pino";
import type { Logger, LoggerOptions, DestinationStream } from "pino";

export type { Logger } from "pino";

/** Log level of a logger created without one (a program passes its settings' level). */
export const DEFAULT_LOG_LEVEL = "info";

/**
 * Creates the root pino logger of a process at `options.level` (default `info`; a program passes the
 * level of its settings, PROTOMESH_LOG_LEVEL). Pass `destination` to capture lines (tests).
 *
 * By default lines go to stdout synchronously, pino's default: a line is written, in order, before
 * the call that logged it returns, and nothing is lost when the process exits or crashes. (An
 * asynchronous destination costs less per line but was seen to reorder a process's last lines.)
 */
export function createLogger(
  options: { name?: string; level?: string; destination?: DestinationStream } = {},
): Logger {
  const pinoOptions: LoggerOptions = {
    name: options.name,
    level: options.level ?? DEFAULT_LOG_LEVEL,
    base: { pid: process.pid },
  };
  return pino(pinoOptions, options.destination ?? pino.destination({ dest: 1, sync: true }));
}

let sharedLogger: Logger | undefined;

/**
 * The process's default logger, made on first use, for servers and clients created without one:
 * one stdout destination per process rather than one per server or client.
 */
export function defaultLogger(): Logger {
  sharedLogger ??= createLogger();
  return sharedLogger;
}

/** Longest wait for buffered log lines before an exit goes ahead without them. */
export const EXIT_FLUSH_TIMEOUT_MS = 2_000;

/**
 * Exits the process with `code` once every buffered line of `logger` has been written (bounded by
 * EXIT_FLUSH_TIMEOUT_MS). Exiting at once could leave a write in flight behind lines flushed at
 * exit, printing the last lines out of order.
 */
export function exitAfterFlush(logger: Logger, code: number): void {
  const timer = setTimeout(() => process.exit(code), EXIT_FLUSH_TIMEOUT_MS);
  logger.flush(() => {
    clearTimeout(timer);
    process.exit(code);
  });
}

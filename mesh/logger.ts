import pino from "pino";
import type { Logger, LoggerOptions, DestinationStream } from "pino";

export type { Logger } from "pino";

/** Log level used when neither an option nor PROTOMESH_LOG_LEVEL says otherwise. */
export const DEFAULT_LOG_LEVEL = "info";

/**
 * Creates the root pino logger of a process. The level comes from `options.level`, then the
 * PROTOMESH_LOG_LEVEL environment variable, then `info`. Pass `destination` to capture lines (tests).
 *
 * By default lines go to stdout through an asynchronous sonic-boom destination: under load, lines
 * of many calls leave in one write instead of one system call per line (pino's own advice for
 * throughput). A process that exits on purpose calls {@link exitAfterFlush}, so that its last lines
 * are written, and in order; on an abrupt exit pino flushes what is buffered.
 */
export function createLogger(
  options: { name?: string; level?: string; destination?: DestinationStream } = {},
): Logger {
  const pinoOptions: LoggerOptions = {
    name: options.name,
    level: options.level ?? process.env.PROTOMESH_LOG_LEVEL ?? DEFAULT_LOG_LEVEL,
    base: { pid: process.pid },
  };
  return pino(pinoOptions, options.destination ?? pino.destination({ dest: 1, sync: false }));
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

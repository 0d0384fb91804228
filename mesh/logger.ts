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
 * throughput), and pino flushes what is buffered when the process exits.
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

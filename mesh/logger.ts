import pino from "pino";
import type { Logger, LoggerOptions, DestinationStream } from "pino";

export type { Logger } from "pino";

/** Log level used when neither an option nor PROTOMESH_LOG_LEVEL says otherwise. */
export const DEFAULT_LOG_LEVEL = "info";

/**
 * Creates the root pino logger of a process. The level comes from `options.level`, then the
 * PROTOMESH_LOG_LEVEL environment variable, then `info`. Pass `destination` to capture lines (tests).
 */
export function createLogger(
  options: { name?: string; level?: string; destination?: DestinationStream } = {},
): Logger {
  const pinoOptions: LoggerOptions = {
    name: options.name,
    level: options.level ?? process.env.PROTOMESH_LOG_LEVEL ?? DEFAULT_LOG_LEVEL,
    base: { pid: process.pid },
  };
  return options.destination ? pino(pinoOptions, options.destination) : pino(pinoOptions);
}

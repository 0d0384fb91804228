import { exitAfterFlush } from "./logger";
import type { Logger } from "./logger";

/** Signals that start a drain: SIGTERM from orchestrators, SIGINT from Ctrl-C. */
export const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ["SIGTERM", "SIGINT"];

/**
 * Runs `drain` once on the first SIGTERM or SIGINT, then exits the process (0 when the drain
 * succeeded, 1 otherwise). A second signal during the drain exits at once with 130.
 * Returns a function that removes the handlers.
 */
export function drainOnSignals(drain: () => Promise<void>, logger: Logger): () => void {
  let isDraining = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (isDraining) {
      logger.warn({ signal }, "second signal; exiting without waiting for the drain");
      process.exit(130);
    }
    isDraining = true;
    logger.info({ signal }, "shutdown requested");
    drain().then(
      () => exitAfterFlush(logger, 0),
      (error: unknown) => {
        logger.error({ err: error }, "drain failed");
        exitAfterFlush(logger, 1);
      },
    );
  };
  for (const signal of SHUTDOWN_SIGNALS) process.on(signal, onSignal);
  return () => {
    for (const signal of SHUTDOWN_SIGNALS) process.off(signal, onSignal);
  };
}

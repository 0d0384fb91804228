import { exitAfterFlush } from "./logger";
import type { Logger } from "./logger";

/** Signals that start a drain: SIGTERM from orchestrators, SIGINT from Ctrl-C. */
export const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ["SIGTERM", "SIGINT"];

/**
 * A second Ctrl-C sooner than this after the first is the same request to stop. One keypress or one
 * `kill -TERM -- -<pgid>` can reach a process more than once: directly, and again through a parent
 * that forwards it (GNU make passes SIGTERM on to its children).
 */
export const REPEAT_SIGNAL_WINDOW_MS = 1_000;

/**
 * Whether `signal`, arriving `sinceFirstMs` after the first stop signal, asks to stop at once
 * instead of finishing the drain: only a deliberate second Ctrl-C does (SIGINT, once the window
 * has passed). SIGTERM and SIGHUP never escalate, however often they come: orchestrators escalate
 * with SIGKILL (Kubernetes, systemd), and a group-wide SIGTERM may arrive once from the sender and
 * again from a parent.
 */
export function isEscalation(signal: NodeJS.Signals, sinceFirstMs: number): boolean {
  return signal === "SIGINT" && sinceFirstMs >= REPEAT_SIGNAL_WINDOW_MS;
}

/**
 * Runs `drain` once on the first SIGTERM or SIGINT, then exits the process (0 when the drain
 * succeeded, 1 otherwise). A later signal is the same request ({@link isEscalation}) unless it is a
 * second Ctrl-C, which exits at once with 130. Returns a function that removes the handlers.
 */
export function drainOnSignals(drain: () => Promise<void>, logger: Logger): () => void {
  let firstAt: number | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstAt !== undefined) {
      if (isEscalation(signal, Date.now() - firstAt)) {
        logger.warn({ signal }, "second signal; exiting without waiting for the drain");
        process.exit(130);
      }
      logger.info({ signal }, "already draining (a second Ctrl-C exits at once)");
      return;
    }
    firstAt = Date.now();
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

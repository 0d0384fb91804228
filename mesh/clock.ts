/** Cancels a scheduled callback; calling it again, or after the callback ran, does nothing. */
export type Cancel = () => void;

/**
 * Time as the kit's own timers see it: the current time and one-shot timers. The registry, the
 * lease, the prober and the registry watch take one, so that a test can pin time and step through
 * it. Deadlines of real gRPC calls stay on the wall clock: grpc-js enforces them there.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /**
   * Runs `callback` once, `delayMs` from now, unless the returned function cancels it first. With
   * `unref`, the timer alone does not keep the process alive.
   */
  schedule(callback: () => void, delayMs: number, options?: { unref?: boolean }): Cancel;
}

/** The process's clock: Date.now and setTimeout. */
export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  schedule(callback: () => void, delayMs: number, options?: { unref?: boolean }): Cancel {
    const timer = setTimeout(callback, delayMs);
    if (options?.unref) timer.unref();
    return () => clearTimeout(timer);
  },
});

/**
 * Exponential backoff with jitter, as gRPC's connection backoff defines it
 * (grpc/grpc doc/connection-backoff.md): the first wait INITIAL_BACKOFF, each next one MULTIPLIER
 * times longer up to MAX_BACKOFF, each randomised by ±JITTER so that many clients failing at one
 * moment (a control plane restarting under every replica) do not retry together.
 *
 * grpc-js ships the same algorithm as `experimental.BackoffTimeout`, but that one schedules on the
 * global timers with Math.random, which a test cannot pin; this computes the delays from an
 * injected `random`, and the caller schedules them on its injected clock. One difference, on
 * purpose: grpc-js and grpc-go leave the first wait unjittered, which keeps the first retry of
 * replicas that failed together in lockstep; here every wait is jittered.
 */

/** The tunables of a backoff. */
export interface BackoffOptions {
  /** First wait (connection-backoff.md INITIAL_BACKOFF, 1 s). */
  initialMs: number;
  /** Growth of each wait over the last (MULTIPLIER, 1.6). */
  multiplier: number;
  /** Spread of each wait, a fraction of it either way (JITTER, 0.2). */
  jitter: number;
  /** Longest wait before jitter (MAX_BACKOFF, 120 s). */
  maxMs: number;
}

/** gRPC's connection backoff parameters. */
export const CONNECTION_BACKOFF: Readonly<BackoffOptions> = Object.freeze({
  initialMs: 1_000,
  multiplier: 1.6,
  jitter: 0.2,
  maxMs: 120_000,
});

/** The waits between the attempts of one thing that keeps failing; `reset` after a success. */
export class Backoff {
  private readonly options: BackoffOptions;
  private currentMs: number;

  /** `random` returns a number in [0, 1), as Math.random does; a test passes a seeded one. */
  constructor(options: Partial<BackoffOptions> = {}, private readonly random: () => number = Math.random) {
    this.options = { ...CONNECTION_BACKOFF, ...options };
    const { initialMs, multiplier, jitter, maxMs } = this.options;
    if (!(initialMs > 0) || !(multiplier >= 1) || !(jitter >= 0 && jitter < 1) || !(maxMs >= initialMs)) {
      throw new TypeError(`backoff: needs initialMs > 0, multiplier >= 1, 0 <= jitter < 1, maxMs >= initialMs; got ${JSON.stringify(this.options)}`);
    }
    this.currentMs = initialMs;
  }

  /** The wait before the next attempt, in whole ms; the one after will be longer, up to the maximum. */
  next(): number {
    const { multiplier, jitter, maxMs } = this.options;
    const delayMs = this.currentMs * (1 + jitter * (2 * this.random() - 1));
    this.currentMs = Math.min(this.currentMs * multiplier, maxMs);
    return Math.max(1, Math.round(delayMs));
  }

  /** Starts over from the first wait (after an attempt succeeded). */
  reset(): void {
    this.currentMs = this.options.initialMs;
  }
}

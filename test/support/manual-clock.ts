import type { Cancel, Clock } from "../../mesh/clock";

interface Timer {
  at: number;
  order: number;
  callback: () => void;
  isCancelled: boolean;
}

/**
 * A Clock that stands still until a test moves it: `advance` runs the timers that fall due, in
 * time order, including timers they schedule within the step. A fake of protomesh's own Clock
 * interface (mesh/clock.ts), never of grpc-js: calls still go over real sockets on real time.
 */
export class ManualClock implements Clock {
  private time: number;
  private order = 0;
  private timers: Timer[] = [];

  /** Starts at `start` ms since the epoch (default: the real now, so that logs read sensibly). */
  constructor(start = Date.now()) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  schedule(callback: () => void, delayMs: number): Cancel {
    const timer: Timer = { at: this.time + Math.max(0, delayMs), order: this.order++, callback, isCancelled: false };
    this.timers.push(timer);
    return () => {
      timer.isCancelled = true;
    };
  }

  /** Moves time forward by `ms`, running every timer due by then, earliest first. */
  advance(ms: number): void {
    const until = this.time + ms;
    for (;;) {
      const next = this.nextDue(until);
      if (!next) break;
      this.time = next.at;
      this.timers = this.timers.filter((timer) => timer !== next);
      next.callback();
    }
    this.time = until;
  }

  /** Delays (ms from now) of the timers still pending, soonest first. */
  pendingDelays(): number[] {
    return this.live().map((timer) => timer.at - this.time);
  }

  private live(): Timer[] {
    this.timers = this.timers.filter((timer) => !timer.isCancelled);
    return [...this.timers].sort((a, b) => a.at - b.at || a.order - b.order);
  }

  private nextDue(until: number): Timer | undefined {
    const [first] = this.live();
    return first !== undefined && first.at <= until ? first : undefined;
  }
}

/** A random source that always returns `value` (0.5: no jitter at all). */
export function fixedRandom(value = 0.5): () => number {
  return () => value;
}

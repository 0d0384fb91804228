import { monitorEventLoopDelay } from "node:perf_hooks";
import type { IntervalHistogram } from "node:perf_hooks";

/** Sampling interval of the event-loop delay monitor (Node's default; a 100 Hz timer costs nothing). */
export const EVENT_LOOP_RESOLUTION_MS = 10;

/** What a benchmark process reports about itself over one measured window (B1 CPU, B6 memory, B8). */
export interface ProcessSample {
  /** Wall time since the last mark (ms). */
  elapsedMs: number;
  /** User + system CPU time of the process since the last mark (ms). */
  cpuMs: number;
  /** Event-loop delay p99 and max since the last mark (ms), beyond the monitor's own interval. */
  eventLoopDelayP99Ms: number;
  eventLoopDelayMaxMs: number;
  rssBytes: number;
  heapUsedBytes: number;
}

/**
 * Measures the process it runs in: CPU time (process.cpuUsage), event-loop delay
 * (perf_hooks.monitorEventLoopDelay, the figure B8 asks for) and memory, over windows that start at
 * `mark()`. Owned by the process's control loop; `close()` stops the monitor's timer.
 */
export class ProcessProbe {
  private readonly delay: IntervalHistogram = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
  private markedAt = performance.now();
  private markedCpu = process.cpuUsage();

  constructor() {
    this.delay.enable();
  }

  /** Starts a new measurement window. */
  mark(): void {
    this.delay.reset();
    this.markedAt = performance.now();
    this.markedCpu = process.cpuUsage();
  }

  /** The figures of the window started by the last `mark()`. */
  read(): ProcessSample {
    const cpu = process.cpuUsage(this.markedCpu);
    const memory = process.memoryUsage();
    // The histogram records whole timer intervals, so subtract the interval to get the delay.
    const beyondInterval = (ns: number) => Math.max(0, ns / 1e6 - EVENT_LOOP_RESOLUTION_MS);
    const hasSamples = this.delay.count > 0;
    return {
      elapsedMs: performance.now() - this.markedAt,
      cpuMs: (cpu.user + cpu.system) / 1000,
      eventLoopDelayP99Ms: hasSamples ? beyondInterval(this.delay.percentile(99)) : 0,
      eventLoopDelayMaxMs: hasSamples ? beyondInterval(this.delay.max) : 0,
      rssBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
    };
  }

  /** Stops the monitor. */
  close(): void {
    this.delay.disable();
  }
}

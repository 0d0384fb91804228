import { monitorEventLoopDelay } from "node:perf_hooks";
import type { IntervalHistogram } from "node:perf_hooks";
import { Metadata, status } from "@grpc/grpc-js";
import type { StatusObject } from "@grpc/grpc-js";
import { ORCA_STREAM_PATH } from "./load-report";

/**
 * Load shedding, which grpc-js lacks: a server refuses a call with RESOURCE_EXHAUSTED and retry
 * pushback, before its handler runs, when it already has as many calls in flight as its limit, so
 * that an overloaded replica sheds to its peers (clients retry elsewhere; the mesh config retries
 * `resource-exhausted`) instead of queueing until every caller times out.
 *
 * Two limits, the lower of which applies:
 * - `maxConcurrentCalls`, a fixed limit (none unless set);
 * - an adaptive limit, AIMD as in Netflix's concurrency-limits (AIMDLimit), with the event loop's
 *   delay as the congestion signal in place of a latency sample: a Node server is saturated when
 *   its event loop falls behind, whatever its CPU says (toobusy-js sheds on the same signal, at a
 *   70 ms lag). Every `sampleIntervalMs` the loop's delay over the interval (p99, from
 *   perf_hooks' monitorEventLoopDelay) is compared with `targetDelayMs`: above it, the limit drops
 *   to `backoffRatio` × the calls in flight (at least `minLimit`), so the excess is shed at once;
 *   below it, with the limit in use (at least half of it in flight), it grows by one, back up to
 *   `maxLimit`. The limit starts at `maxLimit`: a healthy server sheds nothing.
 *
 * Never shed: health checks (the control plane's probes and clients' A17 watches), reflection and
 * ORCA load reports, which must answer most when a server is busiest.
 */

/** Methods that are never shed. */
const EXEMPT_PREFIXES = ["/grpc.health.v1.Health/", "/grpc.reflection.", ORCA_STREAM_PATH];

/** Options of the load shedder (MeshServerOptions.loadShedding). */
export interface LoadSheddingOptions {
  /** A fixed limit of calls in flight; none unless set. */
  maxConcurrentCalls?: number;
  /** The adaptive limit; on unless false. */
  adaptive?: boolean | Partial<AdaptiveLimitOptions>;
  /** The `grpc-retry-pushback-ms` sent with a shed call: how soon the client may try again (elsewhere). */
  retryPushbackMs?: number;
}

/** Settings of the adaptive limit. */
export interface AdaptiveLimitOptions {
  /** Event-loop delay (p99 over an interval) above which the server counts as saturated (ms). */
  targetDelayMs: number;
  sampleIntervalMs: number;
  minLimit: number;
  maxLimit: number;
  backoffRatio: number;
}

export const DEFAULT_ADAPTIVE_LIMIT: AdaptiveLimitOptions = Object.freeze({
  targetDelayMs: 70,
  sampleIntervalMs: 100,
  minLimit: 10,
  maxLimit: 1_000,
  backoffRatio: 0.9,
});
/** Retry pushback of a shed call (ms): the next attempt goes out soon, to another replica. */
export const DEFAULT_RETRY_PUSHBACK_MS = 25;

/**
 * Refuses what goes beyond the limits; one per server, consulted by its in-flight tracker
 * (interceptor-inflight.ts) as each call's metadata arrives, so shedding adds no interceptor.
 */
export class LoadShedder {
  private inflight = 0;
  private shedCount = 0;
  private adaptiveLimit: number;
  private readonly fixedLimit: number;
  private readonly adaptive: AdaptiveLimitOptions | undefined;
  private readonly pushbackMs: number;
  private histogram: IntervalHistogram | undefined;
  /** Whether each method seen is exempt, worked out on its first call. */
  private readonly exempt = new Map<string, boolean>();
  private timer: NodeJS.Timeout | undefined;

  constructor(options: LoadSheddingOptions = {}) {
    this.fixedLimit = positive(options.maxConcurrentCalls, "loadShedding.maxConcurrentCalls") ?? Infinity;
    this.adaptive = options.adaptive === false ? undefined : adaptiveOptions(options.adaptive === true ? {} : (options.adaptive ?? {}));
    this.adaptiveLimit = this.adaptive?.maxLimit ?? Infinity;
    this.pushbackMs = options.retryPushbackMs ?? DEFAULT_RETRY_PUSHBACK_MS;
    if (!Number.isInteger(this.pushbackMs) || this.pushbackMs < 0) {
      throw new TypeError(`loadShedding.retryPushbackMs must be an integer >= 0, got ${String(options.retryPushbackMs)}`);
    }
  }

  /** The limit that applies now. */
  get limit(): number {
    return Math.min(this.fixedLimit, this.adaptiveLimit);
  }

  /** Calls admitted and not yet ended. */
  get inflightCalls(): number {
    return this.inflight;
  }

  /** Calls shed since the server started. */
  get shed(): number {
    return this.shedCount;
  }

  /** Starts sampling the event loop (the adaptive limit). */
  start(): void {
    if (!this.adaptive || this.timer) return;
    const adaptive = this.adaptive;
    this.histogram = monitorEventLoopDelay({ resolution: 10 });
    this.histogram.enable();
    this.timer = setInterval(() => this.sample(adaptive), adaptive.sampleIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.histogram?.disable();
  }

  /** One interval's decision (AIMD on the event loop's delay). */
  private sample(adaptive: AdaptiveLimitOptions): void {
    const histogram = this.histogram!;
    const delayMs = histogram.count > 0 ? histogram.percentile(99) / 1e6 : 0;
    histogram.reset();
    if (delayMs > adaptive.targetDelayMs) {
      const base = Math.min(this.adaptiveLimit, this.inflight);
      this.adaptiveLimit = Math.max(adaptive.minLimit, Math.floor(base * adaptive.backoffRatio));
    } else if (this.inflight * 2 >= this.adaptiveLimit) {
      this.adaptiveLimit = Math.min(adaptive.maxLimit, this.adaptiveLimit + 1);
    } else if (this.adaptiveLimit < adaptive.maxLimit) {
      // Idle well below the limit: nothing to learn from, so recover towards the start.
      this.adaptiveLimit = Math.min(adaptive.maxLimit, Math.max(this.adaptiveLimit + 1, this.inflight * 2));
    }
  }

  /** Whether calls to `path` are never shed (health, reflection, load reports). */
  isExempt(path: string): boolean {
    let isExempt = this.exempt.get(path);
    if (isExempt === undefined) {
      isExempt = EXEMPT_PREFIXES.some((prefix) => path.startsWith(prefix));
      this.exempt.set(path, isExempt);
    }
    return isExempt;
  }

  /** Admits one more call, counting it in flight until {@link release}; false when it must be shed. */
  tryAdmit(): boolean {
    if (this.inflight >= this.limit) {
      this.shedCount += 1;
      return false;
    }
    this.inflight += 1;
    return true;
  }

  /** Ends an admitted call. */
  release(): void {
    this.inflight -= 1;
  }

  /** The status a shed call gets: RESOURCE_EXHAUSTED, with retry pushback. */
  shedStatus(): StatusObject {
    const trailers = new Metadata();
    trailers.set("grpc-retry-pushback-ms", String(this.pushbackMs));
    return {
      code: status.RESOURCE_EXHAUSTED,
      details: `server overloaded: ${this.inflight} calls in flight, limit ${this.limit}; try another replica`,
      metadata: trailers,
    };
  }
}

function positive(value: number | undefined, field: string): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 1) throw new TypeError(`${field} must be an integer >= 1, got ${String(value)}`);
  return value;
}

function adaptiveOptions(given: Partial<AdaptiveLimitOptions>): AdaptiveLimitOptions {
  const options = { ...DEFAULT_ADAPTIVE_LIMIT, ...given };
  for (const key of ["targetDelayMs", "sampleIntervalMs", "minLimit", "maxLimit"] as const) {
    positive(options[key], `loadShedding.adaptive.${key}`);
  }
  if (options.minLimit > options.maxLimit) throw new TypeError("loadShedding.adaptive.minLimit must be <= maxLimit");
  if (!(options.backoffRatio > 0 && options.backoffRatio < 1)) {
    throw new TypeError(`loadShedding.adaptive.backoffRatio must be between 0 and 1, got ${String(options.backoffRatio)}`);
  }
  return options;
}

/**
 * Per-client rate limits at the gateway: a token bucket per client key (the token's subject, else
 * the caller's address), refilled at `requestsPerSecond` up to `burst`. A request that finds its
 * bucket empty is refused with how long until a token is back (the 429's Retry-After).
 */

/** Rate-limit settings of the gateway config (`rate_limit`). */
export interface RateLimitSettings {
  /** Tokens added per second to every client's bucket. */
  requestsPerSecond: number;
  /** Most tokens a bucket holds: how many requests a client may send at once after a pause. */
  burst: number;
}

interface Bucket {
  tokens: number;
  updatedMs: number;
}

/** Most client buckets kept; beyond it the least recently used are dropped (a full bucket again). */
const MAX_BUCKETS = 10_000;

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly settings: RateLimitSettings,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes a token for `key`: undefined when it had one, else the ms until it will. */
  take(key: string): number | undefined {
    const now = this.now();
    const { requestsPerSecond, burst } = this.settings;
    const bucket = this.buckets.get(key) ?? { tokens: burst, updatedMs: now };
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.updatedMs) / 1000) * requestsPerSecond);
    bucket.updatedMs = now;
    // Re-inserted: the Map's order is then least recently used first.
    this.buckets.delete(key);
    this.buckets.set(key, bucket);
    if (this.buckets.size > MAX_BUCKETS) this.buckets.delete(this.buckets.keys().next().value!);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return undefined;
    }
    return Math.ceil(((1 - bucket.tokens) / requestsPerSecond) * 1000);
  }
}

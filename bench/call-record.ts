import { percentileOf } from "./pair-statistics";

/**
 * What the open-loop client (open-loop-process.ts) records of each call, and the arithmetic the
 * scenarios of the control plane (B3, B4, B7) do on those records. Times are epoch milliseconds
 * with sub-millisecond precision, from the same clock in every process of the machine, so a change
 * timestamped in a replica or in the harness can be set against the calls a client made.
 */

/** Request header the open-loop client sets to a random key: what ring_hash hashes in the bench. */
export const KEY_HEADER = "x-bench-key";

/** One call. */
export interface CallRecord {
  /** When the client issued it (epoch ms). */
  t: number;
  /** Latency (ms) from when the open loop meant to issue it to its status, so a late timer counts too. */
  ms: number;
  /** gRPC status code (0 = OK). */
  code: number;
  /**
   * The replica the call went to, named by the peer address of the attempt grpc-js committed
   * (OpenLoad.replicas); "" when it reached none (no endpoint picked, or an address not named).
   * A call that timed out on a frozen replica is that replica's.
   */
  replica: string;
}

/** Wall-clock time in epoch ms with the monotonic clock's resolution. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Calls issued in [from, to). */
export function issuedBetween(records: readonly CallRecord[], from: number, to = Infinity): CallRecord[] {
  return records.filter((record) => record.t >= from && record.t < to);
}

/** Latency percentile (ms) over `records`, failed calls included at the time their status came. */
export function latencyPercentile(records: readonly CallRecord[], percentile: number): number {
  return percentileOf(
    records.map((record) => record.ms),
    percentile,
  );
}

/** Share (0–1) of `records` that match; 0 for none. */
export function shareOf(records: readonly CallRecord[], matches: (record: CallRecord) => boolean): number {
  return records.length === 0 ? 0 : records.filter(matches).length / records.length;
}

/** The first call issued at or after `from` that `replica` answered, or undefined. */
export function firstCallTo(records: readonly CallRecord[], replica: string, from: number): CallRecord | undefined {
  return records.filter((record) => record.replica === replica && record.t >= from).sort((a, b) => a.t - b.t)[0];
}

/** The last call issued at or after `from` (and before `to`) that `replica` answered, or undefined. */
export function lastCallTo(
  records: readonly CallRecord[],
  replica: string,
  from: number,
  to = Infinity,
): CallRecord | undefined {
  return issuedBetween(records, from, to)
    .filter((record) => record.replica === replica)
    .sort((a, b) => b.t - a.t)[0];
}

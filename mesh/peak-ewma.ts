/**
 * Peak-sensitive EWMA of one endpoint's latency, the load metric of Finagle's `PeakEwma`
 * (finagle-core loadbalancer/PeakEwma.scala, "Aperture/P2C with peak EWMA") as linkerd2-proxy
 * uses it through tower (`tower::load::PeakEwma`):
 *
 * - a sample above the estimate replaces it at once (the peak), so a replica that turns slow is
 *   seen as slow on its first slow answer;
 * - a sample below is blended in with weight 1 − e^(−Δt/τ), Δt the time since the last update
 *   and τ the decay time (Finagle's `decayTime`, Envoy PeakEwma's `decay_time`, 10 s);
 * - between samples the estimate decays toward zero the same way (Finagle observes 0 when it
 *   reads the load; tower decays on read), so a replica that stopped getting picks after a bad
 *   spell earns a probe back instead of being starved for ever;
 * - before its first sample an endpoint is assumed to answer in the default RTT (tower's
 *   `default_rtt`, Envoy's `default_rtt`).
 *
 * Times are in milliseconds, from an injected monotonic clock.
 */
export class PeakEwma {
  private estimateMs: number;
  private stampMs: number;

  constructor(
    /** τ of the decay (ms). */
    private readonly decayMs: number,
    defaultRttMs: number,
    nowMs: number,
  ) {
    this.estimateMs = defaultRttMs;
    this.stampMs = nowMs;
  }

  /** Records one call's latency, ended at `nowMs` (Finagle's `observe`). */
  observe(rttMs: number, nowMs: number): void {
    const keep = Math.exp(-Math.max(0, nowMs - this.stampMs) / this.decayMs);
    this.estimateMs = rttMs > this.estimateMs ? rttMs : this.estimateMs * keep + rttMs * (1 - keep);
    this.stampMs = nowMs;
  }

  /** The estimate at `nowMs` (ms): reading decays it, as observing a zero would. */
  estimate(nowMs: number): number {
    this.observe(0, nowMs);
    return this.estimateMs;
  }
}

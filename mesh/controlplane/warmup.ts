import { HealthState } from "../../generated/ts/protomesh/registry/v1/registry";
import type { Cancel, Clock } from "../clock";
import type { Registry } from "./registry";

/** How often a warming-up control plane looks again at the services it still holds back. */
const CHECK_EVERY_MS = 250;

/**
 * The warm-up after a control plane (re)starts. Its registry starts empty and fills as the
 * replicas register again, each at its next keep-alive or retry, over several seconds; an
 * endpoint is HEALTHY only once probed. Clients still hold the endpoints the previous control
 * plane sent them, so an EDS answer sent meanwhile would replace a whole list with part of it.
 *
 * A service's EDS is therefore held back from a *resuming* stream (one whose first EDS request
 * names the version it holds, as grpc-js-xds and Envoy send after a reconnect: the client keeps
 * its cached resource, and no does-not-exist timer runs for it) until the service has settled:
 * - at least `minMs` (the lease TTL by default: every live lease renews within it) has passed;
 * - no endpoint of the service has registered for `quietMs` (half the minimum);
 * - every endpoint registered has been probed (none PENDING);
 * or, whatever the above, once `maxMs` (three times the minimum) has passed. A stream that holds
 * nothing (a client started meanwhile) is held back only while the service has no HEALTHY
 * endpoint, then sent what there is. When a service settles, `onSettled` pushes it to the streams
 * held back; after the last one (or `maxMs`), nothing is held.
 */
export class Warmup {
  private readonly startedAt: number;
  private readonly sizes = new Map<string, number>();
  private readonly lastGrowthAt = new Map<string, number>();
  private readonly settled = new Set<string>();
  private isOver: boolean;
  private cancelCheck: Cancel | undefined;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly registry: Registry,
    private readonly clock: Clock,
    private readonly minMs: number,
    private readonly onSettled: (service: string | undefined) => void,
  ) {
    this.startedAt = clock.now();
    this.isOver = minMs <= 0;
    this.unsubscribe = registry.onChange((service) => this.observe(service));
    if (!this.isOver) this.scheduleCheck();
  }

  /** True while `service`'s endpoints are held back from a stream (`isResuming`: it holds them). */
  holdsBack(service: string, isResuming: boolean): boolean {
    if (this.isOver || this.settled.has(service)) return false;
    if (isResuming) return true;
    return !this.registry.entries(service).some((entry) => entry.health === HealthState.HEALTH_STATE_HEALTHY);
  }

  /** True until every service has settled (or the longest warm-up has passed). */
  get isWarmingUp(): boolean {
    return !this.isOver;
  }

  /** Ends the warm-up now without announcing it (the control plane stops). */
  close(): void {
    this.isOver = true;
    this.unsubscribe();
    this.cancelCheck?.();
  }

  private get quietMs(): number {
    return this.minMs / 2;
  }

  private get maxMs(): number {
    return this.minMs * 3;
  }

  /** Notes when a service's registrations grew: its replicas are still coming back. */
  private observe(service: string | undefined): void {
    if (this.isOver) return;
    const names = service === undefined ? this.registry.serviceNames() : [service];
    for (const name of names) {
      const size = this.registry.entries(name).length;
      if (size > (this.sizes.get(name) ?? 0)) this.lastGrowthAt.set(name, this.clock.now());
      this.sizes.set(name, size);
    }
  }

  private scheduleCheck(): void {
    this.cancelCheck = this.clock.schedule(() => this.check(), CHECK_EVERY_MS, { unref: true });
  }

  private check(): void {
    if (this.isOver) return;
    const now = this.clock.now();
    const elapsed = now - this.startedAt;
    if (elapsed >= this.maxMs) {
      this.close();
      this.onSettled(undefined);
      return;
    }
    if (elapsed >= this.minMs) {
      for (const service of this.registry.serviceNames()) {
        if (this.settled.has(service) || !this.isSettled(service, now)) continue;
        this.settled.add(service);
        this.onSettled(service);
      }
      if (this.registry.serviceNames().every((service) => this.settled.has(service))) {
        this.close();
        this.onSettled(undefined); // services with no endpoint, held back from their new streams
        return;
      }
    }
    this.scheduleCheck();
  }

  private isSettled(service: string, now: number): boolean {
    if (now - (this.lastGrowthAt.get(service) ?? this.startedAt) < this.quietMs) return false;
    return this.registry.entries(service).every((entry) => entry.health !== HealthState.HEALTH_STATE_PENDING);
  }
}

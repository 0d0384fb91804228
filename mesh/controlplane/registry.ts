import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { HealthState } from "../../generated/ts/protomesh/registry/v1/registry";
import type { Endpoint, Service } from "../../generated/ts/protomesh/registry/v1/registry";
import { MeshError, invalidArgument } from "../errors";
import { systemClock } from "../clock";
import type { Cancel, Clock } from "../clock";
import type { Logger } from "../logger";
import { endpointId, validateEndpoint } from "./registry-validation";

/** Lease time to live when a Register request names none. Keep-alives go every third of it. */
export const DEFAULT_LEASE_TTL_MS = 10_000;
/** Shortest lease granted: below it a keep-alive round trip and a GC pause could expire a live lease. */
export const MIN_LEASE_TTL_MS = 300;
/** Longest lease granted, so that a vanished endpoint is never remembered for long. */
export const MAX_LEASE_TTL_MS = 300_000;

/** One endpoint the registry knows, with its lease (none for static entries) and health. */
export interface RegistryEntry {
  readonly id: string;
  endpoint: Endpoint;
  leaseId: string | undefined;
  health: HealthState;
  healthDetail: string;
}

interface Lease {
  leaseId: string;
  service: string;
  id: string;
  ttlMs: number;
  /** Cancels the expiry. */
  cancelExpiry: Cancel;
}

/** What a Register call grants. */
export interface Registration {
  leaseId: string;
  leaseTtlMs: number;
  endpointId: string;
}

/**
 * The control plane's view of the mesh: services, their endpoints, leases and health. Registered
 * endpoints leave when their lease expires or is deregistered; static ones come from the mesh config.
 * Every change is announced to `onChange` listeners at once, with the service whose endpoints it
 * touched, so that the xDS server pushes that service's endpoints and the prober looks at them only.
 */
export class Registry {
  private readonly services = new Map<string, Map<string, RegistryEntry>>();
  private readonly leases = new Map<string, Lease>();
  private readonly listeners = new Set<(service: string | undefined) => void>();
  private readonly logger: Logger;
  private readonly clock: Clock;
  private defaultTtlMs: number;

  /** `clock` times the leases (default: the system clock). */
  constructor(options: { logger: Logger; defaultLeaseTtlMs?: number; clock?: Clock }) {
    this.logger = options.logger.child({ component: "controlplane.registry" });
    this.clock = options.clock ?? systemClock;
    this.defaultTtlMs = options.defaultLeaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
  }

  /** The lease TTL granted to registrations that ask for none. */
  get defaultLeaseTtlMs(): number {
    return this.defaultTtlMs;
  }

  /**
   * Changes the lease TTL granted to registrations that ask for none (a reloaded mesh config).
   * Leases granted before keep theirs until they are renewed by a new Register.
   */
  setDefaultLeaseTtl(ttlMs: number): void {
    this.defaultTtlMs = ttlMs;
  }

  /**
   * Calls `listener` after every change with the service it touched (its endpoints, their details
   * or health), or undefined when it may have touched any (`setStatic`); returns a function that
   * removes it.
   */
  onChange(listener: (service: string | undefined) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Registers an endpoint (validated; INVALID_ARGUMENT names the field) under a lease. The same
   * service, address and port again keeps its lease and health, renews it, and takes the new details.
   */
  register(input: Endpoint | undefined, requestedTtlMs = 0): Registration {
    const endpoint = validateEndpoint(input);
    const ttlMs = this.leaseTtl(requestedTtlMs);
    const id = endpointId(endpoint);
    const entries = this.entriesOf(endpoint.service, true);
    const existing = entries.get(id);
    if (existing && existing.leaseId === undefined) {
      throw new MeshError(status.ALREADY_EXISTS, `endpoint: ${id} of ${endpoint.service} is static in the mesh config`);
    }
    const lease = existing?.leaseId ? this.leases.get(existing.leaseId) : undefined;
    if (existing && lease) {
      existing.endpoint = endpoint;
      lease.ttlMs = ttlMs;
      this.renew(lease);
      this.logger.debug({ service: endpoint.service, endpoint: id }, "endpoint registered again");
    } else {
      const leaseId = randomUUID();
      const newLease: Lease = { leaseId, service: endpoint.service, id, ttlMs, cancelExpiry: this.expireAfter(leaseId, ttlMs) };
      this.leases.set(leaseId, newLease);
      entries.set(id, { id, endpoint, leaseId, health: HealthState.HEALTH_STATE_PENDING, healthDetail: "not probed yet" });
      this.logger.info({ service: endpoint.service, endpoint: id, zone: endpoint.zone, leaseTtlMs: ttlMs }, "endpoint registered");
    }
    this.changed(endpoint.service);
    const leaseId = entries.get(id)!.leaseId!;
    return { leaseId, leaseTtlMs: ttlMs, endpointId: id };
  }

  /** Renews a lease; NOT_FOUND when it is unknown or expired. Returns the time to live granted. */
  keepAlive(leaseId: string): number {
    const lease = this.lease(leaseId);
    this.renew(lease);
    return lease.ttlMs;
  }

  /** The service a lease holds an endpoint of; NOT_FOUND when it is unknown or expired. */
  serviceOfLease(leaseId: string): string {
    return this.lease(leaseId).service;
  }

  /** Removes the endpoint of a lease at once; NOT_FOUND when the lease is unknown. */
  deregister(leaseId: string): void {
    const lease = this.lease(leaseId);
    this.remove(leaseId, lease, "endpoint deregistered");
  }

  /**
   * Replaces the static endpoints (from the mesh config) with `endpoints`, already validated, and
   * announces a change of every service: a new config, which alters every resource anyway.
   */
  setStatic(endpoints: Endpoint[]): void {
    const wanted = new Map(endpoints.map((endpoint) => [`${endpoint.service}/${endpointId(endpoint)}`, endpoint]));
    for (const [service, entries] of this.services) {
      for (const [id, entry] of entries) {
        if (entry.leaseId === undefined && !wanted.has(`${service}/${id}`)) entries.delete(id);
      }
      if (entries.size === 0) this.services.delete(service);
    }
    for (const endpoint of wanted.values()) {
      const id = endpointId(endpoint);
      const entries = this.entriesOf(endpoint.service, true);
      const existing = entries.get(id);
      if (existing?.leaseId !== undefined) continue; // a live registration wins over a static entry
      if (existing) {
        existing.endpoint = endpoint;
      } else {
        entries.set(id, { id, endpoint, leaseId: undefined, health: HealthState.HEALTH_STATE_PENDING, healthDetail: "not probed yet" });
      }
    }
    this.changed(undefined);
  }

  /** Records what the prober saw. Ignored when the endpoint has left meanwhile or nothing changed. */
  setHealth(service: string, id: string, health: HealthState, detail: string): void {
    const entry = this.services.get(service)?.get(id);
    if (!entry || (entry.health === health && entry.healthDetail === detail)) return;
    const wasHealthy = entry.health === HealthState.HEALTH_STATE_HEALTHY;
    entry.health = health;
    entry.healthDetail = detail;
    if (wasHealthy !== (health === HealthState.HEALTH_STATE_HEALTHY)) {
      this.logger.info({ service, endpoint: id, healthy: !wasHealthy, detail }, "endpoint health changed");
    }
    this.changed(service);
  }

  /** Names of the services with at least one endpoint, sorted. */
  serviceNames(): string[] {
    return [...this.services.keys()].sort();
  }

  /** The endpoints of `service`, sorted by id (empty when unknown). */
  entries(service: string): RegistryEntry[] {
    return [...(this.services.get(service)?.values() ?? [])].sort((a, b) => a.id.localeCompare(b.id));
  }

  /** The registry as the API shows it: every service (or only `service`) with its endpoints. */
  list(service = ""): Service[] {
    const names = service === "" ? this.serviceNames() : this.services.has(service) ? [service] : [];
    return names.map((name) => ({
      name,
      endpoints: this.entries(name).map((entry) => ({
        endpoint: entry.endpoint,
        endpointId: entry.id,
        health: entry.health,
        healthDetail: entry.healthDetail,
        isStatic: entry.leaseId === undefined,
      })),
    }));
  }

  /** Stops every lease timer. The registry is unusable afterwards. */
  close(): void {
    for (const lease of this.leases.values()) lease.cancelExpiry();
    this.leases.clear();
    this.listeners.clear();
  }

  private leaseTtl(requestedMs: number): number {
    if (requestedMs === 0) return this.defaultTtlMs;
    if (!Number.isInteger(requestedMs) || requestedMs < MIN_LEASE_TTL_MS || requestedMs > MAX_LEASE_TTL_MS) {
      throw invalidArgument("lease_ttl_ms", `must be 0 (the default) or from ${MIN_LEASE_TTL_MS} to ${MAX_LEASE_TTL_MS}`);
    }
    return requestedMs;
  }

  private lease(leaseId: string): Lease {
    if (leaseId === "") throw invalidArgument("lease_id", "required");
    const lease = this.leases.get(leaseId);
    if (!lease) throw new MeshError(status.NOT_FOUND, "lease_id: unknown or expired lease; register again");
    return lease;
  }

  private renew(lease: Lease): void {
    lease.cancelExpiry();
    lease.cancelExpiry = this.expireAfter(lease.leaseId, lease.ttlMs);
  }

  private expireAfter(leaseId: string, ttlMs: number): Cancel {
    const expire = () => {
      const lease = this.leases.get(leaseId);
      if (lease) this.remove(leaseId, lease, "lease expired");
    };
    return this.clock.schedule(expire, ttlMs, { unref: true });
  }

  private remove(leaseId: string, lease: Lease, why: string): void {
    lease.cancelExpiry();
    this.leases.delete(leaseId);
    const entries = this.services.get(lease.service);
    entries?.delete(lease.id);
    if (entries?.size === 0) this.services.delete(lease.service);
    this.logger.info({ service: lease.service, endpoint: lease.id }, why);
    this.changed(lease.service);
  }

  private entriesOf(service: string, create: boolean): Map<string, RegistryEntry> {
    let entries = this.services.get(service);
    if (!entries) {
      entries = new Map();
      if (create) this.services.set(service, entries);
    }
    return entries;
  }

  private changed(service: string | undefined): void {
    for (const listener of this.listeners) listener(service);
  }
}

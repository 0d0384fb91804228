import { isIP } from "node:net";
import { Metadata, credentials, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { RegistryServiceClient } from "../generated/ts/protomesh/registry/v1/registry";
import type { Endpoint } from "../generated/ts/protomesh/registry/v1/registry";
import { Backoff, CONNECTION_BACKOFF } from "./backoff";
import { systemClock } from "./clock";
import type { Cancel, Clock } from "./clock";
import type { Logger } from "./logger";
import { CONTROL_PLANE_SERVICE } from "./names";
import { clientTls } from "./tls";
import type { MeshTlsOptions } from "./tls";

/** Deadline of one registry call: the control plane answers from memory. */
export const REGISTRY_CALL_DEADLINE_MS = 2_000;
/** Keep-alives go every this fraction of the lease TTL, so two may be lost before it expires (as etcd clients do). */
export const KEEPALIVE_FRACTION = 1 / 3;
/**
 * Longest wait between registration attempts before any lease was granted: a third of the control
 * plane's default 10 s lease. A control plane holds back empty endpoint lists for one lease TTL
 * after it starts (its warm-up), so a replica that retries at least this often is back in time.
 */
export const REGISTER_RETRY_MAX_MS = 3_000;

/** Options of a {@link RegistryLease} beyond what it registers. */
export interface LeaseOptions {
  /** Lease TTL to ask for (ms); 0 takes the control plane's default. */
  leaseTtlMs?: number;
  /** Times keep-alives and retries (default: the system clock). */
  clock?: Clock;
  /** Randomness of the retry backoff's jitter, in [0, 1) (default Math.random). */
  random?: () => number;
  /**
   * Call the control plane over mTLS with these files (the workload's own identity), requiring it
   * to be spiffe://<trust domain>/service/control-plane.
   */
  tls?: MeshTlsOptions;
}

/**
 * One endpoint's membership in the mesh: registers with the control plane, keeps the lease alive
 * every third of its TTL, registers again when the lease is gone (NOT_FOUND, e.g. after a control
 * plane restart) and deregisters on `stop()`. Failures are retried with gRPC's connection backoff
 * (mesh/backoff.ts; never longer than a keep-alive interval, so the lease outlives a short outage),
 * never thrown: a service keeps serving while the control plane is away. The log has one line per
 * change of state (registered, failing, restored, lost), not one per attempt.
 */
export class RegistryLease {
  private readonly client: RegistryServiceClient;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly leaseTtlMs: number;
  private backoff: Backoff;
  private leaseId: string | undefined;
  private cancelTimer: Cancel | undefined;
  private failuresInARow = 0;
  private isStopped = false;

  constructor(
    controlPlane: string,
    private readonly endpoint: Endpoint,
    logger: Logger,
    options: LeaseOptions = {},
  ) {
    this.logger = logger.child({ component: "registry-lease", controlPlane, service: endpoint.service });
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.leaseTtlMs = options.leaseTtlMs ?? 0;
    const retryMaxMs = this.leaseTtlMs > 0 ? this.leaseTtlMs * KEEPALIVE_FRACTION : REGISTER_RETRY_MAX_MS;
    this.backoff = this.backoffUpTo(retryMaxMs);
    // The channel's own reconnect backoff is bounded the same way (grpc-js grows it to 120 s), so
    // that a replica reaches a restarted control plane within a keep-alive interval, before the
    // control plane's warm-up (one lease TTL) ends and it serves the registrations it has.
    const tls = options.tls && clientTls(options.tls, CONTROL_PLANE_SERVICE, this.logger);
    this.client = new RegistryServiceClient(controlPlane, tls?.credentials ?? credentials.createInsecure(), {
      "grpc.initial_reconnect_backoff_ms": Math.min(CONNECTION_BACKOFF.initialMs, Math.round(retryMaxMs)),
      "grpc.max_reconnect_backoff_ms": Math.round(retryMaxMs),
      ...tls?.channelOptions,
    });
  }

  /** Registers once (resolves whether or not that worked) and keeps the lease from then on. */
  async start(): Promise<void> {
    await this.register();
  }

  /** True while the control plane holds a lease for this endpoint, as far as this process knows. */
  get isRegistered(): boolean {
    return this.leaseId !== undefined;
  }

  /** Stops the keep-alives and deregisters (bounded by a deadline); closes the channel. */
  async stop(): Promise<void> {
    if (this.isStopped) return;
    this.isStopped = true;
    this.cancelTimer?.();
    const leaseId = this.leaseId;
    this.leaseId = undefined;
    if (leaseId) {
      try {
        await new Promise<void>((resolve, reject) =>
          this.client.deregister({ leaseId }, new Metadata(), { deadline: Date.now() + REGISTRY_CALL_DEADLINE_MS }, (error) =>
            error ? reject(error) : resolve(),
          ),
        );
        this.logger.info("deregistered");
      } catch (error) {
        this.logger.warn({ ...statusOf(error) }, "deregistration failed; the lease will expire");
      }
    }
    this.client.close();
  }

  private async register(): Promise<void> {
    if (this.isStopped) return;
    try {
      const response = await new Promise<{ leaseId: string; leaseTtlMs: number }>((resolve, reject) =>
        this.client.register(
          { endpoint: this.endpoint, leaseTtlMs: this.leaseTtlMs },
          new Metadata(),
          { deadline: Date.now() + REGISTRY_CALL_DEADLINE_MS },
          (error, value) => (error ? reject(error) : resolve(value)),
        ),
      );
      if (this.isStopped) return; // stop() raced the answer: the lease simply expires
      this.leaseId = response.leaseId;
      const keepAliveMs = response.leaseTtlMs * KEEPALIVE_FRACTION;
      this.backoff = this.backoffUpTo(keepAliveMs);
      this.logger.info(
        { endpoint: `${this.endpoint.address}:${this.endpoint.port}`, leaseTtlMs: response.leaseTtlMs, ...this.afterFailures() },
        "registered",
      );
      this.schedule(() => this.keepAlive(), keepAliveMs);
    } catch (error) {
      this.retry(() => this.register(), error, "registration failed; retrying with backoff");
    }
  }

  private async keepAlive(): Promise<void> {
    const leaseId = this.leaseId;
    if (this.isStopped || !leaseId) return;
    try {
      const response = await new Promise<{ leaseTtlMs: number }>((resolve, reject) =>
        this.client.keepAlive({ leaseId }, new Metadata(), { deadline: Date.now() + REGISTRY_CALL_DEADLINE_MS }, (error, value) =>
          error ? reject(error) : resolve(value),
        ),
      );
      if (this.failuresInARow > 0) this.logger.info(this.afterFailures(), "keep-alive restored");
      this.schedule(() => this.keepAlive(), response.leaseTtlMs * KEEPALIVE_FRACTION);
    } catch (error) {
      if ((error as ServiceError).code === status.NOT_FOUND) {
        this.logger.warn("lease lost (the control plane restarted or let it expire); registering again");
        this.leaseId = undefined;
        this.failuresInARow = 0;
        await this.register();
        return;
      }
      this.retry(() => this.keepAlive(), error, "keep-alive failed; retrying with backoff");
    }
  }

  /** Schedules `task` after the next backoff; logs the first failure of a run at warn, the rest at debug. */
  private retry(task: () => Promise<void>, error: unknown, message: string): void {
    this.failuresInARow += 1;
    const retryInMs = this.backoff.next();
    const fields = { ...statusOf(error), retryInMs, failuresInARow: this.failuresInARow };
    if (this.failuresInARow === 1) this.logger.warn(fields, message);
    else this.logger.debug(fields, message);
    this.schedule(task, retryInMs);
  }

  /** The fields of a success that ends a run of failures (and resets the count and the backoff). */
  private afterFailures(): { failedAttempts?: number } {
    const failedAttempts = this.failuresInARow;
    this.failuresInARow = 0;
    this.backoff.reset();
    return failedAttempts > 0 ? { failedAttempts } : {};
  }

  private backoffUpTo(maxMs: number): Backoff {
    const capMs = Math.max(1, Math.round(maxMs));
    return new Backoff({ initialMs: Math.min(CONNECTION_BACKOFF.initialMs, capMs), maxMs: capMs }, this.random);
  }

  private schedule(task: () => Promise<void>, delayMs: number): void {
    if (this.isStopped) return;
    this.cancelTimer?.();
    this.cancelTimer = this.clock.schedule(() => void task(), delayMs);
  }
}

/** A failed call as log fields: its status code name and details, no stack (the cause is the network). */
function statusOf(error: unknown): { code: string; details: string } {
  const serviceError = error as Partial<ServiceError>;
  if (typeof serviceError.code === "number") {
    return { code: status[serviceError.code] ?? String(serviceError.code), details: serviceError.details ?? "" };
  }
  return { code: "UNKNOWN", details: error instanceof Error ? error.message : String(error) };
}

/** What a server registers, beyond its service name and port. */
export interface LeaseEndpoint {
  service: string;
  /** The address the server bound ("127.0.0.1:50051", "0.0.0.0:0", "[::]:0"). */
  listenAddress: string;
  port: number;
  /** Zone (xDS locality); "" is the default. */
  zone?: string;
  /** The address to register instead of the bound host (PROTOMESH_ADVERTISE_HOST). */
  advertiseHost?: string;
  healthServiceName: string;
  /** The server's admin HTTP port (GET /metrics), registered as metadata `admin_port` for the control plane's dashboard. */
  adminPort?: number;
}

/** Endpoint metadata key of a server's admin HTTP port, on the registered address. */
export const ADMIN_PORT_METADATA = "admin_port";

/**
 * The lease of a server that has bound `listenAddress` on `port`, registered with `controlPlane`.
 * The registered address is `advertiseHost`, else the bound host, else 127.0.0.1 for a wildcard bind.
 */
export function leaseForServer(
  controlPlane: string,
  server: LeaseEndpoint,
  logger: Logger,
  options: LeaseOptions = {},
): RegistryLease {
  const boundHost = server.listenAddress.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
  const isWildcard = boundHost === "" || boundHost === "0.0.0.0" || boundHost === "::";
  const address = server.advertiseHost || (isWildcard || isIP(boundHost) === 0 ? "127.0.0.1" : boundHost);
  const endpoint: Endpoint = {
    service: server.service,
    address,
    port: server.port,
    zone: server.zone ?? "",
    weight: 1,
    metadata: { pid: String(process.pid), ...(server.adminPort !== undefined ? { [ADMIN_PORT_METADATA]: String(server.adminPort) } : {}) },
    healthServiceName: server.healthServiceName,
  };
  return new RegistryLease(controlPlane, endpoint, logger, options);
}

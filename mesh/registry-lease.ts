import { isIP } from "node:net";
import { Metadata, credentials, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { RegistryServiceClient } from "../generated/ts/protomesh/registry/v1/registry";
import type { Endpoint } from "../generated/ts/protomesh/registry/v1/registry";
import type { Logger } from "./logger";
import { ZONE_ENV, controlPlaneAddress } from "./xds-bootstrap";

/** Deadline of one registry call: the control plane answers from memory. */
export const REGISTRY_CALL_DEADLINE_MS = 2_000;
/** Keep-alives go every this fraction of the lease TTL, so two may be lost before it expires (as etcd clients do). */
export const KEEPALIVE_FRACTION = 1 / 3;
/** How often registration is retried while the control plane cannot be reached. */
export const REGISTER_RETRY_MS = 1_000;

/**
 * One endpoint's membership in the mesh: registers with the control plane, keeps the lease alive
 * every third of its TTL, registers again when the lease is gone (NOT_FOUND, e.g. after a control
 * plane restart) and deregisters on `stop()`. Failures are logged and retried, never thrown: a
 * service keeps serving when the control plane is away.
 */
export class RegistryLease {
  private readonly client: RegistryServiceClient;
  private readonly logger: Logger;
  private leaseId: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private isStopped = false;

  constructor(
    controlPlane: string,
    private readonly endpoint: Endpoint,
    logger: Logger,
    private readonly leaseTtlMs = 0,
  ) {
    this.client = new RegistryServiceClient(controlPlane, credentials.createInsecure());
    this.logger = logger.child({ component: "registry-lease", controlPlane, service: endpoint.service });
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
    clearTimeout(this.timer);
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
        this.logger.warn({ err: error }, "deregistration failed; the lease will expire");
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
          new Metadata(), { deadline: Date.now() + REGISTRY_CALL_DEADLINE_MS },
          (error, value) => (error ? reject(error) : resolve(value)),
        ),
      );
      if (this.isStopped) return; // stop() raced the answer: the lease simply expires
      this.leaseId = response.leaseId;
      this.logger.info({ endpoint: `${this.endpoint.address}:${this.endpoint.port}`, leaseTtlMs: response.leaseTtlMs }, "registered");
      this.schedule(() => this.keepAlive(), response.leaseTtlMs * KEEPALIVE_FRACTION);
    } catch (error) {
      this.logger.warn({ err: error, retryInMs: REGISTER_RETRY_MS }, "registration failed");
      this.schedule(() => this.register(), REGISTER_RETRY_MS);
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
      this.schedule(() => this.keepAlive(), response.leaseTtlMs * KEEPALIVE_FRACTION);
    } catch (error) {
      if ((error as ServiceError).code === status.NOT_FOUND) {
        this.logger.warn("lease lost; registering again");
        this.leaseId = undefined;
        await this.register();
        return;
      }
      this.logger.warn({ err: error }, "keep-alive failed; retrying");
      this.schedule(() => this.keepAlive(), REGISTER_RETRY_MS);
    }
  }

  private schedule(task: () => Promise<void>, delayMs: number): void {
    if (this.isStopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void task(), delayMs);
  }
}

/** Environment variable with the address this process registers (when it listens on 0.0.0.0 or ::). */
export const ADVERTISE_HOST_ENV = "PROTOMESH_ADVERTISE_HOST";

/**
 * The lease of a server that has bound `listenAddress` on `port`, or undefined when no control
 * plane is configured (option, else PROTOMESH_CONTROL_PLANE). The registered address is
 * PROTOMESH_ADVERTISE_HOST, else the bound host, else 127.0.0.1 for a wildcard bind.
 */
export function leaseForServer(options: {
  controlPlane: string | undefined;
  service: string;
  listenAddress: string;
  port: number;
  zone?: string;
  healthServiceName: string;
  leaseTtlMs?: number;
  logger: Logger;
}): RegistryLease | undefined {
  const controlPlane = controlPlaneAddress(options.controlPlane);
  if (controlPlane === undefined) return undefined;
  const boundHost = options.listenAddress.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
  const isWildcard = boundHost === "" || boundHost === "0.0.0.0" || boundHost === "::";
  const address = process.env[ADVERTISE_HOST_ENV] || (isWildcard || isIP(boundHost) === 0 ? "127.0.0.1" : boundHost);
  const endpoint: Endpoint = {
    service: options.service,
    address,
    port: options.port,
    zone: options.zone ?? process.env[ZONE_ENV] ?? "",
    weight: 1,
    metadata: { pid: String(process.pid) },
    healthServiceName: options.healthServiceName,
  };
  return new RegistryLease(controlPlane, endpoint, options.logger, options.leaseTtlMs);
}

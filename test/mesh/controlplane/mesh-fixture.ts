import { ServerInterceptingCall, credentials } from "@grpc/grpc-js";
import type { Registry } from "prom-client";
import type { ServerInterceptor } from "@grpc/grpc-js";
import { CatalogServiceClient, CatalogServiceService } from "../../../generated/ts/shop/catalog/v1/catalog";
import { FaultServiceClient } from "../../../generated/ts/protomesh/fault/v1/fault";
import { RegistryServiceClient, HealthState } from "../../../generated/ts/protomesh/registry/v1/registry";
import type { Service } from "../../../generated/ts/protomesh/registry/v1/registry";
import { createClient } from "../../../mesh/client";
import { ControlPlane } from "../../../mesh/controlplane/control-plane";
import type { ControlPlaneOptions } from "../../../mesh/controlplane/control-plane";
import { createServer } from "../../../mesh/server";
import type { MeshServer } from "../../../mesh/server";
import { catalogService } from "../../../services/catalog/catalog-service";
import { captureLog } from "../../support/log-capture";
import type { CapturedLog } from "../../support/log-capture";
import { getProduct } from "../../support/shop";
import { waitFor } from "../../support/wait";

export { getProduct };

/** A catalog replica in this process, counting the GetProduct calls it served. */
export interface Replica {
  server: MeshServer;
  port: number;
  calls: number;
}

/** A control plane on loopback plus catalog replicas that register with it, all torn down by `stop`. */
export class MeshFixture {
  readonly log: CapturedLog;
  controlPlane!: ControlPlane;
  address = "";
  readonly replicas: Replica[] = [];
  private readonly clients: { close(): void }[] = [];

  /** Logs are kept from `logLevel` up (TEST_LOG_LEVEL, else warn). */
  constructor(logLevel = process.env.TEST_LOG_LEVEL ?? "warn") {
    this.log = captureLog(logLevel);
  }

  /** Starts the control plane on 127.0.0.1 (a free port unless `port` is given). */
  async startControlPlane(options: ControlPlaneOptions = {}, port = 0): Promise<ControlPlane> {
    this.controlPlane = new ControlPlane({ logger: this.log.logger, ...options });
    const bound = await this.controlPlane.listen(`127.0.0.1:${port}`);
    this.address = `127.0.0.1:${bound}`;
    return this.controlPlane;
  }

  /** Starts a catalog replica that registers as "catalog" with a lease of `leaseTtlMs`. */
  async startReplica(options: { leaseTtlMs?: number; zone?: string; drainGraceMs?: number } = {}): Promise<Replica> {
    const replica = { calls: 0 } as Replica;
    const counter: ServerInterceptor = (descriptor, call) => {
      if (descriptor.path.endsWith("/GetProduct")) replica.calls += 1;
      return new ServerInterceptingCall(call);
    };
    replica.server = createServer({
      name: "catalog",
      logger: this.log.logger,
      controlPlane: this.address,
      leaseTtlMs: options.leaseTtlMs ?? 1_500,
      zone: options.zone,
      drainGraceMs: options.drainGraceMs ?? 2_000,
      interceptors: [counter],
    });
    replica.server.addService(CatalogServiceService, catalogService());
    replica.port = await replica.server.listen("127.0.0.1:0");
    this.replicas.push(replica);
    return replica;
  }

  /** A catalog client that dials "catalog" through this control plane. */
  catalogClient(options: { metrics?: Registry } = {}): CatalogServiceClient {
    const client = createClient(CatalogServiceClient, "catalog", { logger: this.log.logger, controlPlane: this.address, metrics: options.metrics });
    this.clients.push(client);
    return client;
  }

  /** A registry client to this control plane. */
  registryClient(): RegistryServiceClient {
    const client = new RegistryServiceClient(this.address, credentials.createInsecure());
    this.clients.push(client);
    return client;
  }

  /** A fault-injection client to this control plane. */
  faultClient(): FaultServiceClient {
    const client = new FaultServiceClient(this.address, credentials.createInsecure());
    this.clients.push(client);
    return client;
  }

  /** The registry's view of `service`, as the API lists it. */
  endpoints(service = "catalog"): Service["endpoints"] {
    return this.controlPlane.registry.list(service)[0]?.endpoints ?? [];
  }

  /** Resolves once `count` endpoints of catalog are HEALTHY. */
  async waitHealthy(count: number, timeoutMs = 5_000): Promise<void> {
    await waitFor(
      `${count} healthy catalog endpoints`,
      () => this.endpoints().filter((e) => e.health === HealthState.HEALTH_STATE_HEALTHY).length === count,
      timeoutMs,
    );
  }

  /** Resets every replica's call count. */
  resetCounts(): void {
    for (const replica of this.replicas) replica.calls = 0;
  }

  /** Closes the clients, drains the replicas still up, stops the control plane. */
  async stop(): Promise<void> {
    for (const client of this.clients) client.close();
    await Promise.all(this.replicas.map((replica) => replica.server.drain(200)));
    await this.controlPlane?.stop();
  }
}


/** Calls until every replica in `replicas` has served at least one call (bounded by `timeoutMs`). */
export async function callUntilAllServed(
  client: CatalogServiceClient,
  replicas: Replica[],
  timeoutMs = 5_000,
): Promise<void> {
  await waitFor(
    "every replica to serve a call",
    async () => {
      await getProduct(client).catch(() => undefined);
      return replicas.every((replica) => replica.calls > 0);
    },
    timeoutMs,
    0,
  );
}

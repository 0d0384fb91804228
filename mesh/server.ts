import { Server, ServerCredentials, status } from "@grpc/grpc-js";
import type {
  ChannelOptions,
  ServerCredentials as Credentials,
  ServiceDefinition,
  ServerInterceptor,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { defaultLogger } from "./logger";
import type { Logger } from "./logger";
import { HealthReporter } from "./health";
import { createReflection, defaultDescriptorSetPath } from "./reflection";
import { accessLogInterceptor } from "./interceptor-access-log";
import { InflightTracker } from "./interceptor-inflight";
import { guardService } from "./handler-guard";
import { limitsToChannelOptions } from "./server-limits";
import type { ServerLimits } from "./server-limits";
import { splitPath } from "./method-path";
import { leaseForServer } from "./registry-lease";
import type { RegistryLease } from "./registry-lease";

/** How long a drain lets in-flight calls finish before it cancels them (Kubernetes' default is 30 s). */
export const DEFAULT_DRAIN_GRACE_MS = 10_000;

/** Options of {@link createServer}. Everything has a production default. */
export interface MeshServerOptions {
  /** Name of the process in logs, e.g. "catalog". */
  name: string;
  logger?: Logger;
  limits?: Partial<ServerLimits>;
  /** Grace period for in-flight calls on drain. */
  drainGraceMs?: number;
  /** Descriptor set used for reflection; defaults to generated/descriptor.binpb. */
  descriptorSetPath?: string;
  /** Interceptors run after protomesh's own (in-flight tracking, access log). */
  interceptors?: ServerInterceptor[];
  /** Extra grpc-js options; they override the ones derived from `limits`. */
  channelOptions?: ChannelOptions;
  credentials?: Credentials;
  /**
   * Control plane address ("host:port"); defaults to PROTOMESH_CONTROL_PLANE. With one, `listen`
   * registers the server and keeps its lease; `drain` deregisters it before anything else.
   */
  controlPlane?: string;
  /** Mesh service name to register under (what clients dial); defaults to `name`. */
  meshService?: string;
  /** Zone (xDS locality) to register in; defaults to PROTOMESH_ZONE. */
  zone?: string;
  /** Lease TTL to ask for (ms); 0 or unset takes the control plane's default. */
  leaseTtlMs?: number;
}

/**
 * A grpc-js server with what every protomesh service needs: grpc.health.v1, server reflection,
 * one log line per call, explicit limits, handlers that never leak exceptions, and a drain.
 */
export class MeshServer {
  readonly name: string;
  readonly logger: Logger;
  readonly health = new HealthReporter();
  private readonly server: Server;
  private readonly inflight = new InflightTracker();
  private readonly services: string[] = [];
  private readonly options: MeshServerOptions;
  private boundPort: number | undefined;
  private drained: Promise<void> | undefined;
  private lease: RegistryLease | undefined;
  /** The logger without a component, for the parts of this server that name their own. */
  private readonly rootLogger: Logger;

  constructor(options: MeshServerOptions) {
    this.options = options;
    this.name = options.name;
    this.rootLogger = (options.logger ?? defaultLogger()).child({ server: options.name });
    this.logger = this.rootLogger.child({ component: "server" });
    this.server = new Server({
      ...limitsToChannelOptions(options.limits),
      ...options.channelOptions,
      interceptors: [
        this.inflight.interceptor,
        accessLogInterceptor(this.logger),
        ...(options.interceptors ?? []),
      ],
    });
    this.health.addToServer(this.server);
  }

  /** Registers a service (a ts-proto `XxxService` definition and its handlers), guarded. */
  addService<S extends UntypedServiceImplementation>(definition: ServiceDefinition<S>, implementation: S): this {
    if (this.boundPort !== undefined) {
      throw new Error(`${this.name}: addService must be called before listen`);
    }
    const first = Object.values<ServiceDefinition[string]>(definition)[0];
    if (!first) throw new TypeError(`${this.name}: service definition has no methods`);
    const serviceName = splitPath(first.path).service;
    this.server.addService(definition, guardService(definition, implementation, this.logger));
    this.services.push(serviceName);
    this.health.track(serviceName);
    return this;
  }

  /**
   * Adds reflection, binds `address` (port 0 picks a free one), and reports SERVING.
   * Resolves to the bound port.
   */
  async listen(address = "127.0.0.1:0"): Promise<number> {
    if (this.boundPort !== undefined) throw new Error(`${this.name}: already listening`);
    const descriptorSetPath = this.options.descriptorSetPath ?? defaultDescriptorSetPath();
    createReflection(descriptorSetPath, [...this.services, "grpc.health.v1.Health"]).addToServer(this.server);
    const credentials = this.options.credentials ?? ServerCredentials.createInsecure();
    this.boundPort = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(address, credentials, (error, port) => (error ? reject(error) : resolve(port)));
    });
    this.health.setServing(true);
    this.logger.info({ address, port: this.boundPort, services: this.services }, "listening");
    this.lease = leaseForServer({
      controlPlane: this.options.controlPlane,
      service: this.options.meshService ?? this.name,
      listenAddress: address,
      port: this.boundPort,
      zone: this.options.zone,
      healthServiceName: this.services[0] ?? "",
      leaseTtlMs: this.options.leaseTtlMs,
      logger: this.rootLogger,
    });
    await this.lease?.start();
    return this.boundPort;
  }

  /** The bound port; throws before `listen`. */
  get port(): number {
    if (this.boundPort === undefined) throw new Error(`${this.name}: not listening`);
    return this.boundPort;
  }

  /** Fully-qualified names of the application services added to this server. */
  get serviceNames(): string[] {
    return [...this.services];
  }

  /** Calls in flight now, not counting health Watch streams. */
  get inflightCalls(): number {
    return this.inflight.inflight;
  }

  /**
   * Drains the server: deregisters from the control plane (if registered), reports NOT_SERVING (Watch streams see it, then end), stops accepting calls,
   * lets in-flight calls finish within the grace period, cancels what is left, and stops.
   * Idempotent: a second call returns the same promise.
   */
  drain(graceMs = this.options.drainGraceMs ?? DEFAULT_DRAIN_GRACE_MS): Promise<void> {
    this.drained ??= this.runDrain(graceMs);
    return this.drained;
  }

  private async runDrain(graceMs: number): Promise<void> {
    const startedAt = Date.now();
    this.logger.info({ inflight: this.inflight.inflight, graceMs }, "draining");
    // Leave the mesh first, so that clients stop picking this server before it refuses calls.
    await this.lease?.stop();
    this.health.setServing(false);
    this.inflight.endLongLived({ code: status.UNAVAILABLE, details: "server is shutting down" });
    // tryShutdown refuses new streams (GOAWAY) and completes once every open stream has sent its
    // status and its bytes have left: waiting on it, not on a call count, loses no response.
    const closed = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), graceMs);
    });
    const outcome = await Promise.race([closed.then(() => "closed" as const), graceOver]);
    clearTimeout(timer);
    if (outcome === "timeout") {
      this.logger.warn({ inflight: this.inflight.inflight }, "grace period over; cancelling calls in flight");
      this.server.forceShutdown();
      await closed;
    }
    this.logger.info({ durationMs: Date.now() - startedAt }, "stopped");
  }
}

/** Creates a protomesh server. Add services, then `listen`. */
export function createServer(options: MeshServerOptions): MeshServer {
  return new MeshServer(options);
}

import { Server, ServerCredentials, status } from "@grpc/grpc-js";
import type { Tracer } from "@opentelemetry/api";
import type { Registry } from "prom-client";
import type {
  ChannelOptions,
  ServerCredentials as Credentials,
  ServiceDefinition,
  ServerInterceptor,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { systemClock } from "./clock";
import { defaultLogger } from "./logger";
import type { Logger } from "./logger";
import { HealthReporter } from "./health";
import { createReflection, defaultDescriptorSetPath } from "./reflection";
import { InflightTracker } from "./interceptor-inflight";
import { guardService } from "./handler-guard";
import { limitsToChannelOptions } from "./server-limits";
import type { ServerLimits } from "./server-limits";
import { methodOf } from "./method-path";
import type { CallSink } from "./observer";
import { startAdminServer } from "./admin";
import { addAdminServices } from "./admin-services";
import type { AdminRoutes, AdminServer } from "./admin";
import { metricsOf, metricsSink, scrapedGauge } from "./metrics";
import type { MeshMetrics } from "./metrics";
import { serverObserver } from "./observer-server";
import { logSink } from "./sink-log";
import { CertificateRenewer } from "./certificate-renewal";
import { leaseForServer } from "./registry-lease";
import {
  addLoadReportService,
  LoadMeter,
  ORCA_SERVICE_NAME,
} from "./load-report";
import type { LeaseOptions, RegistryLease } from "./registry-lease";
import { LoadShedder } from "./load-shedder";
import type { LoadSheddingOptions } from "./load-shedder";
import { serverTls, trustDomainOfCaFile } from "./tls";
import type { MeshTlsOptions, ServerTls } from "./tls";
import { Authorizer, parseAuthorizationPolicy } from "./authorization";
import type { AuthorizationPolicy } from "./authorization";
import { authorizationInterceptor } from "./interceptor-authorization";
import type { Plain } from "./config-fields";

/** How long a drain lets in-flight calls finish before it cancels them (Kubernetes' default is 30 s). */
export const DEFAULT_DRAIN_GRACE_MS = 10_000;
/** After a drain has forced its connections closed, how long it still waits for them to be gone. */
export const FORCED_CLOSE_WAIT_MS = 1_000;
/** The health service every server hosts, for reflection. */
const HEALTH_SERVICE_NAME = "grpc.health.v1.Health";

/**
 * How a drain ends, once new calls are refused:
 * - "connections": GOAWAY on every connection, then wait until the clients have closed them (grpc-js
 *   tryShutdown), so that no response byte is lost; the default, for services.
 * - "calls": wait until no call is in flight, then close every connection at once (grpc-js
 *   forceShutdown). For servers whose clients hold connections open with no call on them and may
 *   not close them after a GOAWAY (xDS clients of the control plane): a connection closed
 *   gracefully by Node cannot be forced closed later.
 */
export type DrainMode = "connections" | "calls";

/** Options of {@link createServer}. Everything has a production default; nothing is read from the environment. */
export interface MeshServerOptions {
  /** Name of the process in logs, e.g. "catalog". */
  name: string;
  logger?: Logger;
  limits?: Partial<ServerLimits>;
  /** Grace period for in-flight calls on drain. */
  drainGraceMs?: number;
  /**
   * What a drain waits for before it closes the connections (see {@link DrainMode}); "connections"
   * unless given.
   */
  drainMode?: DrainMode;
  /** Descriptor set used for reflection; defaults to generated/descriptor.binpb. */
  descriptorSetPath?: string;
  /**
   * Serialized FileDescriptorProtos for reflection beyond the descriptor set, for services whose
   * contracts are compiled elsewhere (the control plane's envoy protos). Keep one array per set of
   * files: reflection is built once per array.
   */
  extraDescriptorFiles?: readonly Uint8Array[];
  /** Sinks of every call's measurement, after the log line (metrics, traces). */
  sinks?: CallSink[];
  /** Interceptors run after protomesh's own (in-flight tracking, the call observer). */
  interceptors?: ServerInterceptor[];
  /** Extra grpc-js options; they override the ones derived from `limits`. */
  channelOptions?: ChannelOptions;
  credentials?: Credentials;
  /**
   * STRICT mTLS (tls.ts): the server presents `certFile`/`keyFile` and accepts only clients with a
   * certificate from `caFile`'s CA; the files are re-read every `refreshIntervalMs`, so replaced
   * certificates serve new handshakes without a restart. Plaintext unless given; not with
   * `credentials`. With `controlPlane` too, the server registers over mTLS and renews its
   * certificate through the control plane before it expires (`renewCertificate`).
   */
  tls?: MeshTlsOptions;
  /**
   * Per-method authorization of callers by their SPIFFE ID (authorization.ts): a policy from
   * `parseAuthorizationPolicy`, or the raw `authorization` block (validated here, the error naming
   * `authorization.<field>`). Enforced before the handler and `interceptors`: deny wins, default
   * deny, PERMISSION_DENIED; UNAUTHENTICATED without a peer identity; health, reflection and ORCA are
   * never refused. A caller given as a service name matches in the trust domain of `tls` (its
   * `trustDomain`, or its CA's). Needs `tls`: without mTLS no caller has an identity. None unless given.
   */
  authorization?: AuthorizationPolicy | Plain;
  /**
   * Control plane address ("host:port"; a program passes its settings' `controlPlane`). With one,
   * `listen` registers the server and keeps its lease; `drain` deregisters it before anything else.
   */
  controlPlane?: string;
  /**
   * "host:port" of a plaintext port serving grpc.health.v1 alone (the same statuses), for probes
   * that cannot present a mesh certificate (a Kubernetes gRPC probe, a load balancer); none unless
   * given. Nothing but health answers there, so mTLS still guards every application method.
   */
  healthAddress?: string;
  /**
   * With `tls` and `controlPlane`: renew the certificate files through the control plane's
   * CertificateService once half their validity has passed (certificate-renewal.ts). On unless false.
   */
  renewCertificate?: boolean;
  /** Mesh service name to register under (what clients dial); defaults to `name`. */
  meshService?: string;
  /** Zone (xDS locality) to register in; "" (the default locality) unless given. */
  zone?: string;
  /** The address to register when it differs from the bound host (behind NAT, or a wildcard bind). */
  advertiseHost?: string;
  /** Lease TTL to ask for (ms); 0 or unset takes the control plane's default. */
  leaseTtlMs?: number;
  /** Clock and randomness of the lease's keep-alives and retries (tests pin them). */
  lease?: Omit<LeaseOptions, "leaseTtlMs">;
  /**
   * Publish ORCA load reports (mesh/load-report.ts): per call in the trailers, and out of band on
   * xds.service.orca.v3.OpenRcaService, for weighted_round_robin clients. On unless false; an
   * `applicationUtilization` function replaces the event loop's utilisation as the figure
   * clients weigh by (a service that knows better what "busy" means for it).
   */
  loadReports?: boolean | { applicationUtilization?: () => number };
  /**
   * Load shedding (load-shedder.ts): calls beyond a fixed `maxConcurrentCalls` (none unless set) or
   * an adaptive limit driven by the event loop's delay are refused with RESOURCE_EXHAUSTED and
   * retry pushback, before their handler runs. On unless false; health, reflection and ORCA are
   * never shed.
   */
  loadShedding?: false | LoadSheddingOptions;
  /**
   * Prometheus metrics (metrics.ts): go-grpc-prometheus' grpc_server_* per method, shed calls,
   * calls in flight, and Node's own, in prom-client's global registry or the one given. On when
   * `adminAddress` is set, unless false; off otherwise unless true or a registry.
   */
  metrics?: boolean | Registry;
  /** Traces: a server span per call (tracing.ts; `tracingFromEnvironment` makes one from OTEL_*); none unless set. */
  tracer?: Tracer;
  /** "host:port" of the admin HTTP port (admin.ts: GET /metrics), opened by `listen`; none unless set. */
  adminAddress?: string;
  /** More pages of the admin port by path (the control plane's dashboard). */
  adminRoutes?: AdminRoutes;
  /**
   * grpc-js' admin services on the server's gRPC port (admin-services.ts): channelz, and CSDS when
   * the process's xDS client is loaded (make its clients first), for grpcdebug and grpcurl. On when
   * `adminAddress` is set, unless false.
   */
  adminServices?: boolean;
}

/**
 * A grpc-js server with what every protomesh service needs: grpc.health.v1, server reflection,
 * one log line per call, explicit limits, load shedding, handlers that never leak exceptions, and
 * a drain.
 */
export class MeshServer {
  readonly name: string;
  readonly logger: Logger;
  readonly health = new HealthReporter();
  private readonly server: Server;
  private readonly inflight: InflightTracker;
  private readonly services: string[] = [];
  private readonly options: MeshServerOptions;
  private readonly drainingListeners: (() => void)[] = [];
  private boundPort: number | undefined;
  private drained: Promise<void> | undefined;
  private lease: RegistryLease | undefined;
  private renewer: CertificateRenewer | undefined;
  private healthServer: Server | undefined;
  private boundHealthPort: number | undefined;
  /** The logger without a component, for the parts of this server that name their own. */
  private readonly rootLogger: Logger;
  /** This server's load, for its ORCA reports; undefined when they are off. */
  readonly load: LoadMeter | undefined;
  private stopLoadReports: (() => void) | undefined;
  /** This server's load shedder; undefined when shedding is off. */
  readonly shedder: LoadShedder | undefined;
  /** The metrics this server counts into; undefined when they are off. */
  readonly metrics: MeshMetrics | undefined;
  private admin: AdminServer | undefined;
  /** The gRPC admin services on this server's port (channelz, CSDS); undefined when off. */
  readonly adminServices: readonly string[] | undefined;
  private readonly stopGauges: (() => void)[] = [];
  private readonly tls: ServerTls | undefined;
  /** This server's authorization, compiled per method; undefined without a policy. */
  readonly authorizer: Authorizer | undefined;

  constructor(options: MeshServerOptions) {
    if (options.tls && options.credentials) throw new TypeError(`${options.name}: tls and credentials cannot both be given`);
    this.options = options;
    this.name = options.name;
    this.rootLogger = (options.logger ?? defaultLogger()).child({ server: options.name });
    this.logger = this.rootLogger.child({ component: "server" });
    this.tls = options.tls ? serverTls(options.tls, this.rootLogger) : undefined;
    this.authorizer = authorizerOf(options);
    const reports = options.loadReports;
    this.load = reports === false ? undefined : new LoadMeter(systemClock, typeof reports === "object" ? reports.applicationUtilization : undefined);
    this.shedder = options.loadShedding === false ? undefined : new LoadShedder(options.loadShedding);
    this.inflight = new InflightTracker(this.shedder);
    this.metrics = metricsOf(options.metrics, options.adminAddress);
    const metricSinks = this.metrics ? [metricsSink(this.metrics)] : [];
    this.server = new Server({
      ...limitsToChannelOptions(options.limits),
      ...options.channelOptions,
      // One protomesh layer per call (observer-server.ts): it sees every call, a shed one too, and
      // counts, sheds and reports load itself.
      interceptors: [
        serverObserver([logSink(this.logger), ...(this.load ? [this.load] : []), ...metricSinks, ...(options.sinks ?? [])], {
          inflight: this.inflight,
          loadReport: this.load,
          tracer: options.tracer,
        }),
        // Right after the observer, so that a refused call is logged and counted, and neither the
        // handler nor the application's interceptors see it.
        ...(this.authorizer ? [authorizationInterceptor(this.authorizer)] : []),
        ...(options.interceptors ?? []),
      ],
    });
    this.health.addToServer(this.server);
    if (this.load) this.stopLoadReports = addLoadReportService(this.server, this.load);
    if (options.adminServices ?? options.adminAddress !== undefined) this.adminServices = addAdminServices(this.server);
  }

  /**
   * Registers a service (a ts-proto `XxxService` definition, or a @grpc/proto-loader one, and its
   * handlers), guarded, and reports its health under its fully-qualified name.
   */
  addService<S extends UntypedServiceImplementation>(definition: ServiceDefinition<S>, implementation: S): this {
    if (this.boundPort !== undefined) {
      throw new Error(`${this.name}: addService must be called before listen`);
    }
    const first = Object.values<ServiceDefinition[string]>(definition)[0];
    if (!first) throw new TypeError(`${this.name}: service definition has no methods`);
    const serviceName = methodOf(first.path).service;
    this.server.addService(definition, guardService(definition, implementation, this.logger));
    this.services.push(serviceName);
    this.health.track(serviceName);
    return this;
  }

  /**
   * Calls `listener` once a drain has begun (health NOT_SERVING, and in "connections" mode the
   * GOAWAY sent), before it waits: the moment to end the server's own long-lived streams (watches,
   * subscriptions), whose callers then reconnect elsewhere.
   */
  onDraining(listener: () => void): this {
    this.drainingListeners.push(listener);
    return this;
  }

  /**
   * Adds reflection, binds `address` (port 0 picks a free one), and reports SERVING.
   * Resolves to the bound port.
   */
  async listen(address = "127.0.0.1:0"): Promise<number> {
    if (this.boundPort !== undefined) throw new Error(`${this.name}: already listening`);
    const descriptorSetPath = this.options.descriptorSetPath ?? defaultDescriptorSetPath();
    const reflected = [...this.services, HEALTH_SERVICE_NAME, ...(this.load ? [ORCA_SERVICE_NAME] : [])];
    createReflection(descriptorSetPath, reflected, this.options.extraDescriptorFiles).addToServer(this.server);
    const credentials = this.tls?.credentials ?? this.options.credentials ?? ServerCredentials.createInsecure();
    this.boundPort = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(address, credentials, (error, port) => (error ? reject(error) : resolve(port)));
    });
    // grpc-js reads the certificate files after the bind and drops connections until then: serve
    // once they are in use, or fail naming the file.
    await this.tls?.files.firstRead().catch((error: unknown) => {
      this.server.forceShutdown();
      throw error;
    });
    if (this.options.healthAddress !== undefined) {
      // The same limits as the main port: this one is unauthenticated.
      const healthServer = new Server(limitsToChannelOptions(this.options.limits));
      this.health.addToServer(healthServer);
      this.boundHealthPort = await new Promise<number>((resolve, reject) => {
        healthServer.bindAsync(this.options.healthAddress!, ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port)));
      }).catch((error: unknown) => {
        this.server.forceShutdown();
        throw new Error(`${this.name}: healthAddress ${this.options.healthAddress}: ${(error as Error).message}`, { cause: error });
      });
      this.healthServer = healthServer;
    }
    if (this.metrics) this.addGauges(this.metrics);
    if (this.options.adminAddress !== undefined) {
      this.admin = await startAdminServer({
        address: this.options.adminAddress,
        registry: this.metrics?.registry,
        logger: this.logger,
        routes: this.options.adminRoutes,
      });
    }
    this.health.setServing(true);
    this.load?.start();
    this.shedder?.start();
    this.logger.info({ address, port: this.boundPort, services: this.services, tls: this.tls !== undefined, healthPort: this.boundHealthPort }, "listening");
    if (this.options.controlPlane) {
      this.lease = leaseForServer(
        this.options.controlPlane,
        {
          service: this.options.meshService ?? this.name,
          listenAddress: address,
          port: this.boundPort,
          zone: this.options.zone,
          advertiseHost: this.options.advertiseHost,
          healthServiceName: this.services[0] ?? "",
          adminPort: this.admin?.port,
        },
        this.rootLogger,
        { ...this.options.lease, leaseTtlMs: this.options.leaseTtlMs, tls: this.options.tls },
      );
      if (this.options.tls && this.options.renewCertificate !== false) {
        this.renewer = CertificateRenewer.throughControlPlane(this.options.controlPlane, this.options.tls, this.rootLogger);
        await this.renewer.start();
      }
      await this.lease.start();
    }
    return this.boundPort;
  }

  /** The bound port; throws before `listen`. */
  get port(): number {
    if (this.boundPort === undefined) throw new Error(`${this.name}: not listening`);
    return this.boundPort;
  }

  /** The bound port of the plaintext health port; undefined without `healthAddress` or before `listen`. */
  get healthPort(): number | undefined {
    return this.boundHealthPort;
  }

  /** The bound admin HTTP port (GET /metrics); undefined without `adminAddress` or before `listen`. */
  get adminPort(): number | undefined {
    return this.admin?.port;
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
   * Drains the server: deregisters from the control plane (if registered), reports NOT_SERVING,
   * stops accepting calls, ends the long-lived streams (health Watch streams see NOT_SERVING, then
   * end; `onDraining` listeners end the rest), lets in-flight calls finish within the grace period,
   * cancels what is left, and stops. Idempotent: a second call returns the same promise.
   */
  drain(graceMs = this.options.drainGraceMs ?? DEFAULT_DRAIN_GRACE_MS): Promise<void> {
    this.drained ??= this.runDrain(graceMs);
    return this.drained;
  }

  private async runDrain(graceMs: number): Promise<void> {
    const startedAt = Date.now();
    this.logger.info({ inflight: this.inflight.inflight, graceMs }, "draining");
    // Leave the mesh first, so that clients stop picking this server before it refuses calls.
    this.renewer?.stop();
    await this.lease?.stop();
    this.health.setServing(false);
    const isGraceful = (this.options.drainMode ?? "connections") === "connections";
    // tryShutdown refuses new streams (GOAWAY) and completes once every open stream has sent its
    // status and its bytes have left: waiting on it, not on a call count, loses no response.
    const closed = isGraceful ? new Promise<void>((resolve) => this.server.tryShutdown(() => resolve())) : undefined;
    // Long-lived streams end after the GOAWAY, so that a caller re-opening one goes elsewhere
    // instead of holding this server open for the whole grace period.
    this.inflight.endLongLived({ code: status.UNAVAILABLE, details: "server is shutting down" });
    this.stopLoadReports?.();
    this.load?.stop();
    this.shedder?.stop();
    for (const listener of this.drainingListeners) listener();
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), graceMs);
    });
    const done = closed ?? this.inflight.idle();
    const outcome = await Promise.race([done.then(() => "done" as const), graceOver]);
    clearTimeout(timer);
    if (outcome === "timeout") {
      this.logger.warn({ inflight: this.inflight.inflight }, "grace period over; cancelling calls in flight");
    }
    if (outcome === "timeout" || !isGraceful) {
      this.server.forceShutdown();
      if (closed && !(await settlesWithin(closed, FORCED_CLOSE_WAIT_MS))) {
        this.logger.warn("a client has not closed its connection after the GOAWAY; not waiting for it");
      }
    }
    for (const stop of this.stopGauges.splice(0)) stop();
    // Probes of the plaintext health port have seen NOT_SERVING since the drain began.
    this.healthServer?.forceShutdown();
    await this.admin?.close();
    this.logger.info({ durationMs: Date.now() - startedAt }, "stopped");
  }

  /** This server's calls in flight and concurrency limit, read at each scrape, labelled by its name. */
  private addGauges(metrics: MeshMetrics): void {
    const server = this.name;
    this.stopGauges.push(
      scrapedGauge(metrics.registry, "protomesh_server_inflight_calls", "Calls in flight on the server, health Watch streams apart.", ["server"], (gauge) =>
        gauge.inc({ server }, this.inflight.inflight),
      ),
    );
    const shedder = this.shedder;
    if (shedder) {
      this.stopGauges.push(
        scrapedGauge(
          metrics.registry,
          "protomesh_server_concurrency_limit",
          "The load shedder's limit of calls in flight (the lower of the fixed and the adaptive limit).",
          ["server"],
          (gauge) => {
            if (Number.isFinite(shedder.limit)) gauge.inc({ server }, shedder.limit);
          },
        ),
      );
    }
  }
}


/** The server's authorizer from its `authorization` option, in its `tls` trust domain; refused without `tls`. */
function authorizerOf(options: MeshServerOptions): Authorizer | undefined {
  if (options.authorization === undefined) return undefined;
  if (options.tls === undefined) {
    throw new TypeError(`${options.name}: authorization needs tls: without mTLS no caller has an identity to authorize`);
  }
  const policy = parseAuthorizationPolicy(options.authorization, "authorization");
  return new Authorizer(policy, options.tls.trustDomain ?? authorizationTrustDomain(options.tls.caFile));
}

/**
 * The trust domain the CA certificate's SPIFFE SAN names, or undefined when it names none (a caller
 * given as a service name then matches in any trust domain the CA signs for).
 */
function authorizationTrustDomain(caFile: string): string | undefined {
  try {
    return trustDomainOfCaFile(caFile);
  } catch (error) {
    throw new TypeError(`authorization: tls.caFile (${caFile}) must be a readable CA certificate, to learn the trust domain (or give tls.trustDomain)`, {
      cause: error,
    });
  }
}

/** True when `promise` settles within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Creates a protomesh server. Add services, then `listen`. */
export function createServer(options: MeshServerOptions): MeshServer {
  return new MeshServer(options);
}


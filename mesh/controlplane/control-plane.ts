import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { chmod, rm } from "node:fs/promises";
import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Registry as PromRegistry } from "prom-client";
import { CertificateServiceService } from "../../generated/ts/protomesh/certificate/v1/certificate";
import { FaultServiceService } from "../../generated/ts/protomesh/fault/v1/fault";
import { RegistryServiceService } from "../../generated/ts/protomesh/registry/v1/registry";
import { systemClock } from "../clock";
import type { Clock } from "../clock";
import type { HealthReporter } from "../health";
import { defaultLogger } from "../logger";
import type { Logger } from "../logger";
import { isServiceName } from "../names";
import { register } from "../register";
import { createServer } from "../server";
import type { MeshServer } from "../server";
import type { ServerLimits } from "../server-limits";
import { CertificateRenewer } from "../certificate-renewal";
import type { CertificateSigner } from "../certificate-renewal";
import { otherNamesOf, signCertificateRequest, spiffeIdOf } from "../identity";
import type { MeshCa } from "../identity";
import { trustDomainOfCaFile } from "../tls";
import type { MeshTlsOptions } from "../tls";
import { OPEN_ACCESS, meshAccess } from "./access";
import { certificateService } from "./certificate-service";
import { EMPTY_MESH_CONFIG, loadMeshConfig, policyFor } from "./config";
import type { MeshConfig } from "./config";
import { faultService } from "./fault-service";
import { FaultStore } from "./faults";
import { HealthProber } from "./prober";
import { DEFAULT_LEASE_TTL_MS, Registry } from "./registry";
import { registryService } from "./registry-service";
import {
  clusterLoadAssignmentResource,
  clusterResource,
  listenerResource,
  routeConfigurationResource,
} from "./resources";
import type { XdsResource } from "./resources";
import { Dashboard } from "./dashboard";
import { addControlPlaneMetrics } from "./metrics";
import { Warmup } from "./warmup";
import { XdsServer } from "./xds-server";
import type { ResourceSource } from "./xds-server";
import {
  CLUSTER_LOAD_ASSIGNMENT_TYPE_URL,
  CLUSTER_TYPE_URL,
  LISTENER_TYPE_URL,
  ROUTE_CONFIGURATION_TYPE_URL,
  loadXdsProtos,
} from "./xds-protos";

/** Port the control plane listens on unless told otherwise (the services use 50051 and up). */
export const CONTROL_PLANE_DEFAULT_PORT = 50050;
/** How long `stop` lets registry calls in flight finish before it closes every connection. */
export const STOP_GRACE_MS = 1_000;
/** Full name of the registry service, for health and reflection. */
export const REGISTRY_SERVICE_NAME = "protomesh.registry.v1.RegistryService";
/** The name the control plane's server has in logs. */
export const CONTROL_PLANE_NAME = "control-plane";

/** Options of {@link ControlPlane}. */
export interface ControlPlaneOptions {
  logger?: Logger;
  /** Mesh config file (YAML); read at start and by `reloadConfig()`. */
  configPath?: string;
  /** A config given directly (tests); `configPath` wins when both are set. */
  config?: MeshConfig;
  /** Lease TTL when neither the Register request nor the config names one. */
  defaultLeaseTtlMs?: number;
  /**
   * After a (re)start, the shortest time a service's EDS answer is held back from clients that
   * hold its endpoints from before, so that they keep them while the replicas register again
   * (warmup.ts: until registrations have been quiet for half of it and all are probed, at most
   * three times it). 0 turns the warm-up off. Defaults to the lease TTL.
   */
  warmupMs?: number;
  /** Descriptor set for reflection; defaults to generated/descriptor.binpb. */
  descriptorSetPath?: string;
  /** Limits of the control plane's server (the kit's defaults otherwise). */
  limits?: Partial<ServerLimits>;
  /** Times leases, probes and the warm-up (default: the system clock). */
  clock?: Clock;
  /** Randomness of the probes' retry jitter, in [0, 1) (default Math.random). */
  random?: () => number;
  /**
   * Prometheus metrics: its server's (MeshServerOptions.metrics) and its own (controlplane/metrics.ts:
   * endpoints per state, xDS streams, responses and NACKs). On when `adminAddress` is set, unless false.
   */
  metrics?: boolean | PromRegistry;
  /**
   * "host:port" of its admin HTTP port: GET /metrics, and the live mesh dashboard (dashboard.ts: `/`,
   * `/events`, `/api/mesh`); none unless set.
   */
  adminAddress?: string;
  /**
   * STRICT mTLS on its port (issue 13): every caller must present a certificate from the mesh CA,
   * the prober probes endpoints over mTLS (each must prove the SPIFFE ID of the service it
   * registered as), a workload registers only itself and only an admin identity injects faults
   * (access.ts). Its own certificate should be spiffe://<trust domain>/service/control-plane, with
   * the host clients dial as a DNS or IP SAN (xDS clients in Go and Python verify it, gRFC A65).
   */
  tls?: MeshTlsOptions;
  /**
   * The mesh CA's private key (the CA certificate is `tls.caFile`): with it the control plane serves
   * protomesh.certificate.v1.CertificateService, workloads' renewals. Needs `tls`.
   */
  caKeyFile?: string;
  /** Longest (and default) lifetime of a certificate CertificateService signs (ms); an hour unless given. */
  workloadTtlMs?: number;
  /**
   * A unix socket path to serve ADS on, plaintext, with mode 0600 (only this user's processes may
   * connect): no registry, fault or certificate API there, only what every kit server serves
   * beside it (grpc.health.v1, reflection, ORCA). For grpc-js-xds, which speaks to an xDS server
   * in plaintext only (it has no gRFC A65 channel credentials); Go and Python xDS clients use the
   * mTLS port.
   */
  xdsSocket?: string;
}

/**
 * The mesh control plane: the registry API, health probing of every endpoint, the mesh policy
 * config, the fault injection API, and an ADS server that turns all of it into xDS resources for
 * gRPC clients. It is a kit server (createServer): the same limits, call observer, guarded
 * handlers, grpc.health.v1 and reflection (its envoy protos included) as every service, so
 * grpcurl can inspect it. It never proxies a call.
 */
export class ControlPlane {
  readonly logger: Logger;
  readonly registry: Registry;
  readonly xds: XdsServer;
  readonly server: MeshServer;
  /** The plaintext ADS server on `xdsSocket` (no registry, fault or certificate API); undefined without one. */
  readonly xdsSocketServer: MeshServer | undefined;
  /** The faults injected through protomesh.fault.v1.FaultService, in force until they expire. */
  readonly faults: FaultStore;
  private readonly prober: HealthProber;
  private readonly registryHandlers: ReturnType<typeof registryService>;
  private readonly options: ControlPlaneOptions;
  private readonly clock: Clock;
  private config: MeshConfig;
  private warmup: Warmup | undefined;
  private stopMetrics: (() => void) | undefined;
  /** The live dashboard on the admin port; undefined without one. */
  private readonly dashboard: Dashboard | undefined;
  private stopped: Promise<void> | undefined;
  private readonly renewer: CertificateRenewer | undefined;

  constructor(options: ControlPlaneOptions = {}) {
    this.options = options;
    this.clock = options.clock ?? systemClock;
    const rootLogger = options.logger ?? defaultLogger();
    this.logger = rootLogger.child({ component: "controlplane" });
    // A Cluster names its LB policy from the registry (mesh/balancer.ts); parsing a config registers
    // them, a control plane started without one must too.
    register();
    this.config = options.configPath ? loadMeshConfig(options.configPath) : (options.config ?? EMPTY_MESH_CONFIG);
    // The registry, the xDS server and the prober name their own components.
    this.registry = new Registry({ logger: rootLogger, defaultLeaseTtlMs: this.defaultLeaseTtlMs, clock: this.clock });
    this.xds = new XdsServer(this.resourceSource(), rootLogger);
    this.registry.setStatic([...this.config.services.values()].flatMap((policy) => policy.endpoints));
    // Each change names the resources it can alter (what resourceSource() reads): a service's
    // endpoints only its ClusterLoadAssignment, its faults its Listener (the fault filter) and
    // RouteConfiguration (the overrides). New static entries come with a new config, which alters
    // everything (setConfig), as does the end of the warm-up.
    this.registry.onChange((service) =>
      this.xds.update(service === undefined ? undefined : [{ typeUrl: CLUSTER_LOAD_ASSIGNMENT_TYPE_URL, name: service }]),
    );
    this.faults = new FaultStore({ logger: rootLogger, clock: this.clock });
    this.faults.onChange((service) =>
      this.xds.update([
        { typeUrl: LISTENER_TYPE_URL, name: service },
        { typeUrl: ROUTE_CONFIGURATION_TYPE_URL, name: service },
      ]),
    );
    if (options.caKeyFile !== undefined && options.tls === undefined) {
      throw new TypeError("control plane: caKeyFile needs tls: certificates are issued to callers who prove their identity");
    }
    const trustDomain = options.tls && (options.tls.trustDomain ?? trustDomainOfCaFile(options.tls.caFile));
    if (options.tls && trustDomain === undefined) {
      throw new TypeError(`control plane: tls.caFile (${options.tls.caFile}) names no spiffe:// trust domain; give tls.trustDomain`);
    }
    const access = trustDomain === undefined ? OPEN_ACCESS : meshAccess(trustDomain);
    this.prober = new HealthProber(this.registry, rootLogger, { clock: this.clock, random: options.random, tls: options.tls });
    this.registryHandlers = registryService(this.registry, access);
    const xdsProtos = loadXdsProtos();
    if (options.adminAddress !== undefined) {
      this.dashboard = new Dashboard({
        registry: this.registry,
        faults: this.faults,
        lbPolicyOf: (service) => policyFor(this.config, service).lbPolicy,
        logger: this.logger,
      });
    }
    // What the TCP server and the xDS socket's server share.
    const serverBase = {
      logger: rootLogger,
      limits: options.limits,
      // Its xDS clients keep their connections open, idle, and may not close them after a GOAWAY.
      drainMode: "calls",
      // Every xDS client and every registered server holds a stream open here for as long as it
      // lives: they are the mesh, not load to shed.
      loadShedding: false,
      descriptorSetPath: options.descriptorSetPath,
      extraDescriptorFiles: xdsProtos.fileDescriptorProtos,
    } as const;
    this.server = createServer({
      ...serverBase,
      name: CONTROL_PLANE_NAME,
      metrics: options.metrics,
      adminAddress: options.adminAddress,
      adminRoutes: this.dashboard?.routes,
      tls: options.tls,
    });
    if (this.server.metrics) this.stopMetrics = addControlPlaneMetrics(this.server.metrics, this.registry, this.xds);
    this.server.addService(RegistryServiceService, this.registryHandlers.implementation);
    this.server.addService(FaultServiceService, faultService(this.faults, access));
    this.server.addService(this.xds.definition, this.xds.implementation as unknown as UntypedServiceImplementation);
    if (options.caKeyFile !== undefined && options.tls !== undefined) {
      const ca = { trustDomain: trustDomain!, certFile: options.tls.caFile, keyFile: options.caKeyFile, certPem: readFileSync(options.tls.caFile, "utf8") };
      this.server.addService(CertificateServiceService, certificateService({ ca, access, workloadTtlMs: options.workloadTtlMs }));
      // Its own certificate too, at half its life, signed by the CA it holds, with the same names.
      this.renewer = new CertificateRenewer(options.tls, rootLogger, selfSigner(ca, options.tls.certFile));
    }
    this.xdsSocketServer =
      options.xdsSocket === undefined
        ? undefined
        : createServer({ ...serverBase, name: `${CONTROL_PLANE_NAME}-xds` });
    this.xdsSocketServer?.addService(this.xds.definition, this.xds.implementation as unknown as UntypedServiceImplementation);
    // Once a stop begins: clients keep what they have and reconnect (to the next control plane).
    this.server.onDraining(() => {
      this.xds.endStreams();
      this.registryHandlers.endWatches();
    });
  }

  /** grpc.health.v1 of the control plane's server (the registry, fault and ADS services, and ""). */
  get health(): HealthReporter {
    return this.server.health;
  }

  /** Binds `address` (port 0 picks a free one), reports SERVING, and resolves to the port. */
  async listen(address = `127.0.0.1:${CONTROL_PLANE_DEFAULT_PORT}`): Promise<number> {
    const port = await this.server.listen(address);
    await this.renewer?.start();
    if (this.xdsSocketServer && this.options.xdsSocket !== undefined) {
      const socket = this.options.xdsSocket;
      // A socket file left by a control plane that was killed would refuse the bind.
      await rm(socket, { force: true });
      await this.xdsSocketServer.listen(`unix:${socket}`);
      await chmod(socket, 0o600);
    }
    const warmupMs = this.warmupMs;
    this.warmup?.close();
    const listenedAt = this.clock.now();
    this.warmup = new Warmup(this.registry, this.clock, warmupMs, (service) => {
      if (service !== undefined) {
        this.logger.debug({ service, afterMs: this.clock.now() - listenedAt }, "service settled after the warm-up; its endpoints are sent");
        this.xds.update([{ typeUrl: CLUSTER_LOAD_ASSIGNMENT_TYPE_URL, name: service }]);
        return;
      }
      this.logger.info({ afterMs: this.clock.now() - listenedAt }, "warm-up over");
      this.xds.update();
    });
    this.logger.info(
      { address, port, warmupMs, services: this.config.services.size, tls: this.options.tls !== undefined, xdsSocket: this.options.xdsSocket },
      "control plane listening",
    );
    return port;
  }

  /** The bound port; throws before `listen`. */
  get port(): number {
    return this.server.port;
  }

  /** The mesh config in force. */
  get meshConfig(): MeshConfig {
    return this.config;
  }

  /**
   * Puts a new mesh config in force and pushes the resulting changes to clients. Nothing of it
   * is applied unless all of it is valid (parse it with `parseMeshConfig` or `loadMeshConfig`).
   */
  setConfig(config: MeshConfig): void {
    this.config = config;
    this.registry.setDefaultLeaseTtl(this.defaultLeaseTtlMs);
    this.registry.setStatic([...config.services.values()].flatMap((policy) => policy.endpoints));
    this.xds.update();
    this.logger.info({ services: config.services.size, leaseTtlMs: this.registry.defaultLeaseTtlMs }, "mesh config applied");
  }

  /**
   * Reads the config file again. An invalid file is refused with the field named (the error is
   * logged and thrown) and the config in force stays, so nothing bad reaches clients.
   */
  reloadConfig(): MeshConfig {
    if (!this.options.configPath) throw new Error("control plane: no config file to reload");
    try {
      this.setConfig(loadMeshConfig(this.options.configPath));
    } catch (error) {
      this.logger.error({ file: this.options.configPath, err: error }, "mesh config refused; the previous one stays in force");
      throw error;
    }
    return this.config;
  }

  /**
   * Stops: reports NOT_SERVING, refuses new calls, ends the ADS and watch streams (clients keep
   * what they have), lets registry calls in flight finish (bounded by STOP_GRACE_MS), stops probing,
   * leases and fault expiries, and closes the server. Idempotent.
   */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.warmup?.close();
      this.renewer?.stop();
      this.stopMetrics?.();
      this.dashboard?.close();
      await Promise.all([this.server.drain(STOP_GRACE_MS), this.xdsSocketServer?.drain(STOP_GRACE_MS)]);
      this.prober.close();
      this.registry.close();
      this.faults.close();
      this.logger.info("control plane stopped");
    })();
    return this.stopped;
  }

  /** The lease TTL of registrations that ask for none: the config's, else the option, else 10 s. */
  private get defaultLeaseTtlMs(): number {
    return this.config.leaseTtlMs ?? this.options.defaultLeaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
  }

  private get warmupMs(): number {
    return this.options.warmupMs ?? this.defaultLeaseTtlMs;
  }

  private resourceSource(): ResourceSource {
    return {
      resource: (typeUrl, name): XdsResource | undefined => {
        if (!isServiceName(name)) return undefined;
        const policy = policyFor(this.config, name);
        switch (typeUrl) {
          case LISTENER_TYPE_URL:
            return listenerResource(name, this.faults.list(name));
          case ROUTE_CONFIGURATION_TYPE_URL:
            return routeConfigurationResource(name, policy, this.faults.list(name));
          case CLUSTER_TYPE_URL:
            return clusterResource(name, policy);
          case CLUSTER_LOAD_ASSIGNMENT_TYPE_URL:
            return clusterLoadAssignmentResource(name, this.registry.entries(name), policy);
          default:
            return undefined;
        }
      },
      holdsBack: (typeUrl, name, isResuming) =>
        typeUrl === CLUSTER_LOAD_ASSIGNMENT_TYPE_URL && (this.warmup?.holdsBack(name, isResuming) ?? false),
      names: () => [...new Set([...this.registry.serviceNames(), ...this.config.services.keys()])].sort(),
    };
  }
}

/**
 * Signs the control plane's own renewals with the CA it holds, naming what its current certificate
 * names (its SPIFFE ID, DNS names and IP addresses), read again at each renewal.
 */
function selfSigner(ca: MeshCa, certFile: string): CertificateSigner {
  return async (csrPem, lifetimeMs) => {
    const current = new X509Certificate(readFileSync(certFile));
    const spiffeId = spiffeIdOf(current.raw);
    if (spiffeId === undefined) throw new Error(`control plane: its certificate ${certFile} names no SPIFFE ID to renew`);
    const signed = await signCertificateRequest(ca, { csrPem, spiffeId, ttlMs: lifetimeMs, ...otherNamesOf(current.subjectAltName) });
    return signed.certPem;
  };
}

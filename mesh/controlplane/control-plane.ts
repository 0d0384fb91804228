import * as fs from "node:fs";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import type { UntypedServiceImplementation } from "@grpc/grpc-js";
import type { PackageDefinition } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { RegistryServiceService } from "../../generated/ts/protomesh/registry/v1/registry";
import { HealthState } from "../../generated/ts/protomesh/registry/v1/registry";
import { guardService } from "../handler-guard";
import { HealthReporter } from "../health";
import { accessLogInterceptor } from "../interceptor-access-log";
import { InflightTracker } from "../interceptor-inflight";
import { defaultLogger } from "../logger";
import type { Logger } from "../logger";
import { defaultDescriptorSetPath, splitDescriptorSet } from "../reflection";
import { EMPTY_MESH_CONFIG, loadMeshConfig, policyFor } from "./config";
import type { MeshConfig } from "./config";
import { HealthProber } from "./prober";
import { DEFAULT_LEASE_TTL_MS, Registry } from "./registry";
import { registryService } from "./registry-service";
import { SERVICE_NAME_PATTERN } from "./registry-validation";
import {
  clusterLoadAssignmentResource,
  clusterResource,
  listenerResource,
  routeConfigurationResource,
} from "./resources";
import type { XdsResource } from "./resources";
import { XdsServer } from "./xds-server";
import type { ResourceSource } from "./xds-server";
import {
  ADS_SERVICE_NAME,
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
   * After a (re)start, how long an EDS answer for a service with no healthy endpoint is held back,
   * so that clients keep their last known endpoints while the replicas register again (they do
   * within one keep-alive interval). Defaults to the lease TTL.
   */
  warmupMs?: number;
  /** Descriptor set for reflection; defaults to generated/descriptor.binpb. */
  descriptorSetPath?: string;
}

/**
 * The mesh control plane: the registry API, health probing of every endpoint, the mesh policy
 * config, and an ADS server that turns all of it into xDS resources for gRPC clients; plus
 * grpc.health.v1 and reflection, so grpcurl can inspect it. It never proxies a call.
 */
export class ControlPlane {
  readonly logger: Logger;
  readonly registry: Registry;
  readonly xds: XdsServer;
  readonly health = new HealthReporter();
  private readonly server: Server;
  private readonly prober: HealthProber;
  private readonly inflight = new InflightTracker();
  private readonly registryHandlers: ReturnType<typeof registryService>;
  private readonly options: ControlPlaneOptions;
  private config: MeshConfig;
  private startedAt = Date.now();
  private warmupTimer: NodeJS.Timeout | undefined;
  private boundPort: number | undefined;
  private stopped: Promise<void> | undefined;

  constructor(options: ControlPlaneOptions = {}) {
    this.options = options;
    this.logger = (options.logger ?? defaultLogger()).child({ component: "controlplane" });
    this.config = options.configPath ? loadMeshConfig(options.configPath) : (options.config ?? EMPTY_MESH_CONFIG);
    this.registry = new Registry({
      logger: this.logger,
      defaultLeaseTtlMs: this.config.leaseTtlMs ?? options.defaultLeaseTtlMs ?? DEFAULT_LEASE_TTL_MS,
    });
    this.xds = new XdsServer(this.resourceSource(), this.logger);
    this.registry.setStatic([...this.config.services.values()].flatMap((policy) => policy.endpoints));
    this.registry.onChange(() => this.xds.update());
    this.prober = new HealthProber(this.registry, this.logger);
    this.registryHandlers = registryService(this.registry);
    this.server = new Server({ interceptors: [this.inflight.interceptor, accessLogInterceptor(this.logger)] });
    this.server.addService(
      RegistryServiceService,
      guardService(RegistryServiceService, this.registryHandlers.implementation, this.logger),
    );
    const xdsProtos = loadXdsProtos();
    this.server.addService(xdsProtos.adsService, this.xds.implementation as unknown as UntypedServiceImplementation);
    this.health.addToServer(this.server);
    this.health.track(REGISTRY_SERVICE_NAME);
    this.health.track(ADS_SERVICE_NAME);
    this.reflection(xdsProtos.packageDefinition).addToServer(this.server);
  }

  /** Binds `address` (port 0 picks a free one), reports SERVING, and resolves to the port. */
  async listen(address = `127.0.0.1:${CONTROL_PLANE_DEFAULT_PORT}`): Promise<number> {
    this.boundPort = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(address, ServerCredentials.createInsecure(), (error, port) =>
        error ? reject(error) : resolve(port),
      );
    });
    this.startedAt = Date.now();
    const warmupMs = this.warmupMs;
    if (warmupMs > 0) {
      this.warmupTimer = setTimeout(() => this.xds.update(), warmupMs);
      this.warmupTimer.unref();
    }
    this.health.setServing(true);
    this.logger.info({ address, port: this.boundPort, warmupMs, services: this.config.services.size }, "control plane listening");
    return this.boundPort;
  }

  /** The bound port; throws before `listen`. */
  get port(): number {
    if (this.boundPort === undefined) throw new Error("control plane: not listening");
    return this.boundPort;
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
    this.registry.setStatic([...config.services.values()].flatMap((policy) => policy.endpoints));
    this.xds.update();
    this.logger.info({ services: config.services.size }, "mesh config applied");
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
   * Stops: reports NOT_SERVING, ends the ADS and watch streams (clients keep what they have),
   * stops probing and leases, and closes the server. Idempotent.
   */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.health.setServing(false);
      clearTimeout(this.warmupTimer);
      this.xds.endStreams();
      this.registryHandlers.endWatches();
      this.prober.close();
      this.registry.close();
      // Registry calls are short: let those in flight finish (bounded), then close every
      // connection. (tryShutdown would wait on idle xDS client connections that never close.)
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.inflight.idle(),
        new Promise((resolve) => (timer = setTimeout(resolve, STOP_GRACE_MS))),
      ]);
      clearTimeout(timer);
      this.server.forceShutdown();
      this.logger.info("control plane stopped");
    })();
    return this.stopped;
  }

  private get warmupMs(): number {
    return this.options.warmupMs ?? this.config.leaseTtlMs ?? this.options.defaultLeaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
  }

  private resourceSource(): ResourceSource {
    return {
      resource: (typeUrl, name): XdsResource | undefined => {
        if (!SERVICE_NAME_PATTERN.test(name)) return undefined;
        const policy = policyFor(this.config, name);
        switch (typeUrl) {
          case LISTENER_TYPE_URL:
            return listenerResource(name);
          case ROUTE_CONFIGURATION_TYPE_URL:
            return routeConfigurationResource(name, policy);
          case CLUSTER_TYPE_URL:
            return clusterResource(name, policy);
          case CLUSTER_LOAD_ASSIGNMENT_TYPE_URL: {
            const entries = this.registry.entries(name);
            const isWarmingUp = Date.now() - this.startedAt < this.warmupMs;
            if (isWarmingUp && !entries.some((entry) => entry.health === HealthState.HEALTH_STATE_HEALTHY)) {
              return undefined;
            }
            return clusterLoadAssignmentResource(name, entries, policy);
          }
          default:
            return undefined;
        }
      },
      names: () => [...new Set([...this.registry.serviceNames(), ...this.config.services.keys()])].sort(),
    };
  }

  /**
   * Reflection over protomesh's descriptor set plus the xDS protos (first definition of a file
   * wins). Indexing the envoy files takes most of a second, so the service is built once per set.
   */
  private reflection(xdsDefinition: PackageDefinition): ReflectionService {
    const descriptorSetPath = this.options.descriptorSetPath ?? defaultDescriptorSetPath();
    let reflection = reflectionCache.get(descriptorSetPath);
    if (!reflection) {
      reflection = buildReflection(descriptorSetPath, xdsDefinition);
      reflectionCache.set(descriptorSetPath, reflection);
    }
    return reflection;
  }
}

const reflectionCache = new Map<string, ReflectionService>();

function buildReflection(descriptorSetPath: string, xdsDefinition: PackageDefinition): ReflectionService {
  const ours = splitDescriptorSet(fs.readFileSync(descriptorSetPath)).map((file) => Buffer.from(file));
  const xdsFiles = Object.values(xdsDefinition).flatMap(
    (entry) => (entry as { fileDescriptorProtos?: Buffer[] }).fileDescriptorProtos ?? [],
  );
  const definition = { "protomesh.descriptors": { fileDescriptorProtos: [...ours, ...xdsFiles] } };
  return new ReflectionService(definition as unknown as PackageDefinition, {
    services: [REGISTRY_SERVICE_NAME, ADS_SERVICE_NAME, "grpc.health.v1.Health"],
  });
}

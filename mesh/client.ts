import { credentials as grpcCredentials } from "@grpc/grpc-js";
import type { Tracer } from "@opentelemetry/api";
import type { Registry } from "prom-client";
import type { ChannelCredentials, ChannelOptions, Client, ClientOptions, Interceptor, LoadBalancingConfig } from "@grpc/grpc-js";
import { defaultLogger } from "./logger";
import type { Logger } from "./logger";
import { selectGrpcPolicy } from "./balancer";
import { BALANCER_LOGGER_OPTION, withClientHealth } from "./balancer-client-health";
import { propagateInboundCalls } from "./call-context";
import type { ServiceConfigJson } from "./balancer-client-health";
import { deadlinePolicy, deadlineTransformer } from "./deadlines";
import { isServiceName } from "./names";
import type { CallSink } from "./observer";
import { balancerMetrics, metricsOf, metricsSink } from "./metrics";
import { BALANCER_METRICS_OPTION } from "./balancer-endpoint-list";
import { clientObserver } from "./observer-client";
import { register } from "./register";
import { logSink } from "./sink-log";
import { XDS_BOOTSTRAP_CHANNEL_OPTION, xdsBootstrap } from "./xds-bootstrap";
import { clientTls } from "./tls";
import type { MeshTlsOptions } from "./tls";

/** A generated client class, e.g. ts-proto's `CatalogServiceClient`. */
export type ClientConstructor<C extends Client> = new (
  address: string,
  credentials: ChannelCredentials,
  options?: Partial<ClientOptions>,
) => C;

/** Options of {@link createClient}. Nothing is read from the environment. */
export interface MeshClientOptions {
  logger?: Logger;
  /** Deadline of calls that name none (ms); see DEFAULT_DEADLINE_MS. */
  defaultDeadlineMs?: number;
  /** Per-method deadlines (ms), keyed by method name or full path. */
  methodDeadlinesMs?: Record<string, number>;
  /**
   * What a call made while handling an inbound call leaves unused of that call's remaining budget
   * (ms); see DEFAULT_DEADLINE_MARGIN_MS.
   */
  deadlineMarginMs?: number;
  credentials?: ChannelCredentials;
  /**
   * STRICT mTLS (tls.ts): the client presents `certFile`/`keyFile` (re-read every
   * `refreshIntervalMs`) and accepts only a server whose certificate chains to `caFile` and carries
   * the SPIFFE ID of the service it dials (`serverService`, or the mesh service name of the
   * target). Plaintext unless given; not with `credentials`. With a control plane, `xdsServer`
   * names where the xDS stream goes: grpc-js-xds speaks to an xDS server in plaintext only.
   */
  tls?: MeshTlsOptions;
  /** Sinks of every call's measurement, after the log line (metrics, traces). */
  sinks?: CallSink[];
  /** Interceptors run after protomesh's own (the call observer). */
  interceptors?: Interceptor[];
  /**
   * Prometheus metrics (metrics.ts): go-grpc-prometheus' grpc_client_* per method, in prom-client's
   * global registry (true) or the one given; off unless set. A process's admin port
   * (`adminAddress` of its server, or startAdminServer) serves them.
   */
  metrics?: boolean | Registry;
  /** Traces: a client span per call, its traceparent sent along (tracing.ts); none unless set. */
  tracer?: Tracer;
  channelOptions?: ChannelOptions;
  /**
   * Control plane address ("host:port"; a program passes its settings' `controlPlane`). With one,
   * a target that is a bare service name ("catalog") is dialled as `xds:///catalog`, and `xds:`
   * targets get a bootstrap made here (no bootstrap file needed). Without one, an `xds:` target
   * uses grpc-js-xds' own bootstrap (GRPC_XDS_BOOTSTRAP).
   */
  controlPlane?: string;
  /**
   * Where grpc-js-xds reads xDS from, when it is not `controlPlane` itself: the control plane's
   * plaintext ADS socket ("unix:///run/protomesh/xds.sock", ControlPlaneOptions.xdsSocket). Needed
   * with `tls`, as grpc-js-xds has no TLS channel credentials for its xDS server (gRFC A65).
   */
  xdsServer?: string;
  /** This process's zone, the locality its xDS bootstrap names; "" unless given. */
  zone?: string;
  /**
   * The channel's service config (gRFC A2), for targets that are not `xds:` (over xDS the control
   * plane sends the policy): `loadBalancingConfig` may name any grpc-js policy and protomesh's own
   * (`[{ "p2c_ewma": { "decay_time": "10s" } }]`, `least_request`), and A17's
   * `healthCheckConfig: { serviceName }` turns on client-side health checking
   * (balancer-client-health.ts) under whichever policy is named. Takes the place of grpc-js's
   * `grpc.service_config` channel option, which is read the same way when this is unset.
   */
  serviceConfig?: ServiceConfigJson;
  /**
   * What a bare service name dials when no control plane is configured ("127.0.0.1:50051"), so
   * that one line of code works in the mesh and outside it. Without it, a bare name needs a
   * control plane.
   */
  fallbackTarget?: string;
}

/**
 * Creates a typed client whose every call has a deadline (explicit, or the configured default for
 * the method; never none) and is logged when it ends. A call made while handling an inbound call
 * inherits that call's remaining budget (less `deadlineMarginMs`) and its cancellation, with no
 * `parent` passed (call-context.ts); a call whose budget is gone fails DEADLINE_EXCEEDED unsent. It registers protomesh's policies
 * (`register()`), so a service config or the control plane may name them. `target` is any grpc-js target
 * ("127.0.0.1:50051", "dns:///catalog:50051"), or a mesh service name ("catalog"), dialled as
 * `xds:///catalog` through the control plane (see `controlPlane`, `fallbackTarget`). For an `xds:`
 * target it calls `register({ xds: true })` (mesh/register.ts), which loads grpc-js-xds once.
 */
export function createClient<C extends Client>(
  clientClass: ClientConstructor<C>,
  target: string,
  options: MeshClientOptions = {},
): C {
  if (options.tls && options.credentials) throw new TypeError("createClient: tls and credentials cannot both be given");
  const channelTarget = meshTarget(target, options);
  propagateInboundCalls();
  const policy = deadlinePolicy({
    defaultMs: options.defaultDeadlineMs,
    methodsMs: options.methodDeadlinesMs,
    marginMs: options.deadlineMarginMs,
  });
  const channelLogger = (options.logger ?? defaultLogger()).child({ target: channelTarget });
  const logger = channelLogger.child({ component: "client" });
  let xdsOptions: ChannelOptions = {};
  const xdsService = xdsServiceOf(channelTarget);
  const metrics = metricsOf(options.metrics);
  const metricSinks = metrics ? [metricsSink(metrics)] : [];
  // One protomesh layer per call (observer-client.ts); the caller's interceptors run inside it.
  const interceptors = [
    clientObserver([logSink(logger), ...metricSinks, ...(options.sinks ?? [])], { meshService: xdsService, tracer: options.tracer }),
    ...(options.interceptors ?? []),
  ];
  register();
  if (xdsService !== undefined) {
    register({ xds: true });
    // Without a control plane of ours, grpc-js-xds reads its bootstrap from GRPC_XDS_BOOTSTRAP(_CONFIG)
    // as it does for any xDS server (Istio's istiod in proxyless mode, say).
    if (options.controlPlane) {
      if (options.tls && options.xdsServer === undefined) {
        throw new TypeError(
          "createClient: tls with controlPlane needs xdsServer (the control plane's xdsSocket): grpc-js-xds cannot reach an mTLS xDS server",
        );
      }
      xdsOptions = { [XDS_BOOTSTRAP_CHANNEL_OPTION]: xdsBootstrap(options.xdsServer ?? options.controlPlane, { zone: options.zone }) };
    }
  }
  const meshService = isServiceName(target) ? target : xdsService;
  const tls = options.tls ? clientTls(options.tls, meshService, channelLogger) : undefined;
  return new clientClass(channelTarget, tls?.credentials ?? options.credentials ?? grpcCredentials.createInsecure(), {
    ...xdsOptions,
    ...tls?.channelOptions,
    ...options.channelOptions,
    ...serviceConfigOption(options),
    [BALANCER_LOGGER_OPTION]: channelLogger,
    ...(metrics ? { [BALANCER_METRICS_OPTION]: balancerMetrics(metrics, xdsService ?? channelTarget) } : {}),
    callInvocationTransformer: deadlineTransformer(policy),
    interceptors,
  });
}

/**
 * The one rule for what a target dials: a bare service name is `xds:///<name>` with a control
 * plane, `fallbackTarget` without one; anything else is a grpc-js target and is kept.
 */
export function meshTarget(target: string, options: Pick<MeshClientOptions, "controlPlane" | "fallbackTarget">): string {
  if (!isServiceName(target)) return target;
  if (options.controlPlane) return `xds:///${target}`;
  if (options.fallbackTarget !== undefined) return options.fallbackTarget;
  throw new TypeError(
    `createClient: "${target}" is a mesh service name, which needs a control plane (controlPlane, from PROTOMESH_CONTROL_PLANE) or a fallbackTarget`,
  );
}

/**
 * The `grpc.service_config` channel option: the given service config (or the one already in the
 * channel options) with A17's healthCheckConfig turned into protomesh's health-checking policy.
 */
function serviceConfigOption(options: MeshClientOptions): ChannelOptions {
  let config = options.serviceConfig;
  const text = options.channelOptions?.["grpc.service_config"];
  if (config === undefined && typeof text === "string") {
    try {
      config = JSON.parse(text) as ServiceConfigJson;
    } catch {
      throw new TypeError("createClient: channelOptions[\"grpc.service_config\"] is not valid JSON");
    }
  }
  if (config === undefined) return {};
  const rewritten = withClientHealth(config);
  checkPolicies(rewritten.loadBalancingConfig ?? []);
  return { "grpc.service_config": JSON.stringify(rewritten) };
}

/**
 * Refuses at construction a policy list grpc-js would quietly replace by pick_first: a known
 * policy with a bad config, or no known policy at all (a misspelt name, a module never registered).
 */
function checkPolicies(list: readonly LoadBalancingConfig[]): void {
  if (list.length === 0) return;
  try {
    selectGrpcPolicy(list);
  } catch (error) {
    throw new TypeError(`createClient: serviceConfig.loadBalancingConfig${(error as Error).message}`, { cause: error });
  }
}

/** The service an `xds:` target names ("xds:///catalog" → "catalog"), or undefined for other targets. */
function xdsServiceOf(target: string): string | undefined {
  const match = /^xds:(?:\/\/[^/]*\/)?(.*)$/.exec(target);
  return match ? match[1] : undefined;
}

import { credentials as grpcCredentials } from "@grpc/grpc-js";
import type { ChannelCredentials, ChannelOptions, Client, ClientOptions, Interceptor } from "@grpc/grpc-js";
import { defaultLogger } from "./logger";
import type { Logger } from "./logger";
import { deadlinePolicy, deadlineTransformer } from "./deadlines";
import { clientLogInterceptor } from "./interceptor-client-log";
import { XDS_BOOTSTRAP_CHANNEL_OPTION, controlPlaneAddress, registerXds, xdsBootstrap } from "./xds-bootstrap";

/** A bare mesh service name ("catalog"): what a client dials as `xds:///<name>` through the control plane. */
const MESH_SERVICE_NAME = /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** A generated client class, e.g. ts-proto's `CatalogServiceClient`. */
export type ClientConstructor<C extends Client> = new (
  address: string,
  credentials: ChannelCredentials,
  options?: Partial<ClientOptions>,
) => C;

/** Options of {@link createClient}. */
export interface MeshClientOptions {
  logger?: Logger;
  /** Deadline of calls that name none (ms); see DEFAULT_DEADLINE_MS. */
  defaultDeadlineMs?: number;
  /** Per-method deadlines (ms), keyed by method name or full path. */
  methodDeadlinesMs?: Record<string, number>;
  credentials?: ChannelCredentials;
  /** Interceptors run after protomesh's own (deadline, log). */
  interceptors?: Interceptor[];
  channelOptions?: ChannelOptions;
  /**
   * Control plane address ("host:port"); defaults to PROTOMESH_CONTROL_PLANE. With one, a target
   * that is a bare service name ("catalog") is dialled as `xds:///catalog`, and `xds:` targets get
   * a bootstrap made here (no bootstrap file needed).
   */
  controlPlane?: string;
}

/**
 * Creates a typed client whose every call has a deadline (explicit, or the configured default for
 * the method; never none) and is logged when it ends. `target` is any grpc-js target
 * ("127.0.0.1:50051", "dns:///catalog:50051"), or a mesh service name ("catalog") that is
 * resolved through the control plane when one is configured (see `controlPlane`).
 */
export function createClient<C extends Client>(
  clientClass: ClientConstructor<C>,
  target: string,
  options: MeshClientOptions = {},
): C {
  const { channelTarget, xdsOptions } = meshTarget(target, options.controlPlane);
  const policy = deadlinePolicy({ defaultMs: options.defaultDeadlineMs, methodsMs: options.methodDeadlinesMs });
  const logger = (options.logger ?? defaultLogger()).child({ component: "client", target: channelTarget });
  return new clientClass(channelTarget, options.credentials ?? grpcCredentials.createInsecure(), {
    ...xdsOptions,
    ...options.channelOptions,
    callInvocationTransformer: deadlineTransformer(policy),
    interceptors: [clientLogInterceptor(logger), ...(options.interceptors ?? [])],
  });
}

/**
 * Maps a target onto what the channel dials: with a control plane, a bare service name becomes
 * `xds:///<name>` and every `xds:` target gets a generated bootstrap; otherwise the target is kept.
 */
function meshTarget(target: string, explicitControlPlane: string | undefined): {
  channelTarget: string;
  xdsOptions: ChannelOptions;
} {
  const controlPlane = controlPlaneAddress(explicitControlPlane);
  if (controlPlane === undefined) return { channelTarget: target, xdsOptions: {} };
  const channelTarget = MESH_SERVICE_NAME.test(target) ? `xds:///${target}` : target;
  if (!channelTarget.startsWith("xds:")) return { channelTarget, xdsOptions: {} };
  registerXds();
  return { channelTarget, xdsOptions: { [XDS_BOOTSTRAP_CHANNEL_OPTION]: xdsBootstrap(controlPlane) } };
}

import { experimental, status } from "@grpc/grpc-js";
import { selectGrpcPolicy } from "./balancer";
import { WrappingBalancer } from "./balancer-wrapping";
import type { ChannelOptions, LoadBalancingConfig } from "@grpc/grpc-js";
import { knownKeys, objectAt, parseGrpcPolicyConfig } from "./config-fields";
import { invalidArgument, MeshError } from "./errors";
import { HealthCheckedSubchannel } from "./health-checked-subchannel";
import type { HealthMemory } from "./health-checked-subchannel";
import { defaultLogger } from "./logger";
import type { Logger } from "./logger";

/**
 * Client-side health checking (gRFC A17) as a grpc-js load-balancing policy that wraps another:
 * `{ "protomesh.client_health": { "service_name": "shop.catalog.v1.CatalogService",
 * "child_policy": [{ "round_robin": {} }] } }`. Every subchannel the child creates is a
 * HealthCheckedSubchannel (health-checked-subchannel.ts) watching `service_name`, so the child
 * (pick_first, round_robin, p2c_ewma, least_request, weighted_round_robin) never picks an endpoint
 * that is not SERVING. grpc-js has no client-side health checking of its own; this is the wrapping
 * its outlier_detection uses for ejection, with a state instead of a flag.
 *
 * A service config names it the A17 way, `healthCheckConfig.serviceName`: `createClient`
 * rewrites such a config into this policy (see `withClientHealth`); the control plane sends it over
 * xDS as a TypedStruct when a service's mesh config has `client_health_check`.
 */

/**
 * The channel option through which `createClient` hands its logger to the policies of its channel.
 * grpc-js passes every channel option to the policies; under this prefix it keeps the option out
 * of the subchannels' options, so that subchannels stay shared between channels.
 */
export const BALANCER_LOGGER_OPTION = `${experimental.SUBCHANNEL_ARGS_EXCLUDE_KEY_PREFIX}.protomesh.logger`;

/** The policy's grpc-js name (a TypedStruct's type URL ends in it). */
export const TYPE_NAME = "protomesh.client_health";

/** The config of the policy, parsed. */
export class ClientHealthConfig implements experimental.TypedLoadBalancingConfig {
  constructor(
    readonly serviceName: string,
    readonly child: experimental.TypedLoadBalancingConfig,
  ) {}

  getLoadBalancerName(): string {
    return TYPE_NAME;
  }

  toJsonObject(): object {
    return { [TYPE_NAME]: { service_name: this.serviceName, child_policy: [this.child.toJsonObject()] } };
  }

  static createFromJson(block: unknown): ClientHealthConfig {
    return parseGrpcPolicyConfig(TYPE_NAME, (field) => {
      const entries = objectAt(block, field);
      knownKeys(entries, field, ["service_name", "child_policy"]);
      const serviceName = entries.service_name ?? "";
      if (typeof serviceName !== "string") throw invalidArgument(`${field}.service_name`, "must be a string");
      return new ClientHealthConfig(serviceName, childPolicyOf(entries.child_policy, `${field}.child_policy`));
    });
  }
}

/** The policy `child_policy` selects (balancer.ts `selectGrpcPolicy`); errors name the field. */
function childPolicyOf(list: unknown, field: string): experimental.TypedLoadBalancingConfig {
  if (!Array.isArray(list) || list.length === 0) {
    throw invalidArgument(field, "must be a non-empty list of load-balancing configs");
  }
  try {
    return selectGrpcPolicy(list as LoadBalancingConfig[]);
  } catch (error) {
    throw new MeshError(status.INVALID_ARGUMENT, `${field}${(error as Error).message}`, { cause: error });
  }
}

/** The grpc-js load balancer: the child policy, over health-checked subchannels. */
export class ClientHealthBalancer extends WrappingBalancer {
  protected readonly child: experimental.ChildLoadBalancerHandler;
  private readonly subchannels = new Set<HealthCheckedSubchannel>();
  private readonly memory: HealthMemory = new WeakMap();
  private serviceName = "";
  private logger: Logger | undefined;

  constructor(helper: experimental.ChannelControlHelper) {
    super(TYPE_NAME);
    this.child = new experimental.ChildLoadBalancerHandler(
      experimental.createChildChannelControlHelper(helper, {
        createSubchannel: (address, options) => {
          this.logger ??= defaultLogger().child({ component: "balancer.client_health" });
          const subchannel = new HealthCheckedSubchannel(
            helper.createSubchannel(address, options),
            this.serviceName,
            this.logger,
            this.memory,
          );
          this.subchannels.add(subchannel);
          return subchannel;
        },
        updateState: (state, picker, errorMessage) => helper.updateState(state, unwrappingPicker(picker), errorMessage),
      }),
    );
  }

  updateAddressList(
    endpoints: experimental.StatusOr<experimental.Endpoint[]>,
    config: experimental.TypedLoadBalancingConfig,
    options: ChannelOptions,
    resolutionNote: string,
  ): boolean {
    if (!(config instanceof ClientHealthConfig)) return false;
    const channelLogger = options[BALANCER_LOGGER_OPTION] as Logger | undefined;
    this.logger ??= (channelLogger ?? defaultLogger()).child({ component: "balancer.client_health" });
    if (config.serviceName !== this.serviceName) {
      this.serviceName = config.serviceName;
      for (const subchannel of this.subchannels) subchannel.setServiceName(config.serviceName);
    }
    this.forgetReleased();
    return this.child.updateAddressList(endpoints, config.child, options, resolutionNote);
  }

  destroy(): void {
    super.destroy();
    this.subchannels.clear();
  }

  /** Drops subchannels the child no longer holds (their Watch already stopped when released). */
  private forgetReleased(): void {
    for (const subchannel of this.subchannels) if (subchannel.isReleased()) this.subchannels.delete(subchannel);
  }
}

/**
 * Hands the policy above the subchannel it created, not this policy's wrapper: grpc-js's rule for
 * wrapping policies (subchannel-interface.ts), which outlier_detection above relies on.
 */
function unwrappingPicker(picker: experimental.Picker): experimental.Picker {
  return {
    pick(args) {
      const result = picker.pick(args);
      return result.subchannel instanceof HealthCheckedSubchannel
        ? { ...result, subchannel: result.subchannel.getWrappedSubchannel() }
        : result;
    },
  };
}

/** A service config as grpc-js reads it (gRFC A2), with A17's `healthCheckConfig`. */
export interface ServiceConfigJson {
  loadBalancingPolicy?: string;
  loadBalancingConfig?: LoadBalancingConfig[];
  healthCheckConfig?: { serviceName?: string };
  [field: string]: unknown;
}

/**
 * A service config with A17's `healthCheckConfig` rewritten into this policy around the configured
 * one (its `loadBalancingConfig`, else `loadBalancingPolicy`, else gRPC's default pick_first); a
 * config without it is returned unchanged.
 */
export function withClientHealth(config: ServiceConfigJson): ServiceConfigJson {
  if (config.healthCheckConfig === undefined) return config;
  const serviceName = config.healthCheckConfig.serviceName ?? "";
  if (typeof serviceName !== "string") throw invalidArgument("healthCheckConfig.serviceName", "must be a string");
  const child: LoadBalancingConfig[] = config.loadBalancingConfig?.length
    ? config.loadBalancingConfig
    : [{ [(config.loadBalancingPolicy ?? "pick_first").toLowerCase()]: {} }];
  const rewritten: ServiceConfigJson = { ...config, loadBalancingConfig: [{ [TYPE_NAME]: { service_name: serviceName, child_policy: child } }] };
  delete rewritten.healthCheckConfig;
  delete rewritten.loadBalancingPolicy;
  return rewritten;
}

/** Registers the policy with grpc-js. */
export function setup(): void {
  experimental.registerLoadBalancerType(TYPE_NAME, ClientHealthBalancer, ClientHealthConfig);
}

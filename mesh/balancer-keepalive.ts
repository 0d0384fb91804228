import { experimental } from "@grpc/grpc-js";
import type { ChannelOptions, LoadBalancingConfig } from "@grpc/grpc-js";
import { selectGrpcPolicy } from "./balancer";
import { WrappingBalancer } from "./balancer-wrapping";
import { knownKeys, objectAt, optionalDuration, parseGrpcPolicyConfig, durationText } from "./config-fields";
import { invalidArgument } from "./errors";

/**
 * Keepalive (gRFC A8) delivered with a service's load-balancing policy: a grpc-js policy that wraps
 * another and gives every subchannel the child creates grpc-js's keepalive options, `{
 * "protomesh.keepalive": { "time": "10s", "timeout": "5s", "child_policy": [{ "p2c_ewma": {} }] } }`.
 * grpc-js takes keepalive only as channel options, which xDS cannot set; a policy can, since
 * grpc-js creates subchannels with the options a policy passes (they override the channel's). So
 * the control plane sends a service's `keepalive` over xDS this way, and a client that dials the
 * service finds a dead link to one of its endpoints within time + timeout, even with no call on
 * it, and stops picking the endpoint instead of waiting for each call's deadline.
 */

/** The policy's grpc-js name (a TypedStruct's type URL ends in it). */
export const TYPE_NAME = "protomesh.keepalive";

/** Bounds of the two durations, as the mesh config has them. */
const MIN_MS = 100;
const MAX_TIME_MS = 3_600_000;
const MAX_TIMEOUT_MS = 600_000;

/** The config of the policy, parsed. */
export class KeepaliveConfig implements experimental.TypedLoadBalancingConfig {
  constructor(
    readonly timeMs: number,
    readonly timeoutMs: number,
    readonly child: experimental.TypedLoadBalancingConfig,
  ) {}

  getLoadBalancerName(): string {
    return TYPE_NAME;
  }

  toJsonObject(): object {
    return withKeepalive(this.child.toJsonObject() as Record<string, unknown>, this);
  }

  /** The subchannel options this config gives (grpc-js's keepalive channel options). */
  subchannelOptions(): ChannelOptions {
    return {
      "grpc.keepalive_time_ms": this.timeMs,
      "grpc.keepalive_timeout_ms": this.timeoutMs,
      "grpc.keepalive_permit_without_calls": 1,
    };
  }

  static createFromJson(block: unknown): KeepaliveConfig {
    return parseGrpcPolicyConfig(TYPE_NAME, (field) => {
      const entries = objectAt(block, field);
      knownKeys(entries, field, ["time", "timeout", "child_policy"]);
      const timeMs = optionalDuration(entries.time, `${field}.time`, MIN_MS, MAX_TIME_MS);
      const timeoutMs = optionalDuration(entries.timeout, `${field}.timeout`, MIN_MS, MAX_TIMEOUT_MS);
      if (timeMs === undefined) throw invalidArgument(`${field}.time`, "is required");
      if (timeoutMs === undefined) throw invalidArgument(`${field}.timeout`, "is required");
      const list = entries.child_policy;
      if (!Array.isArray(list) || list.length === 0) {
        throw invalidArgument(`${field}.child_policy`, "must be a non-empty list of load-balancing configs");
      }
      let child: experimental.TypedLoadBalancingConfig;
      try {
        child = selectGrpcPolicy(list as LoadBalancingConfig[]);
      } catch (error) {
        throw invalidArgument(`${field}.child_policy`, (error as Error).message.replace(/^:? ?/, ""));
      }
      return new KeepaliveConfig(timeMs, timeoutMs, child);
    });
  }
}

/** The grpc-js load balancer: the child policy, over subchannels with keepalive options. */
export class KeepaliveBalancer extends WrappingBalancer {
  protected readonly child: experimental.ChildLoadBalancerHandler;
  private subchannelOptions: ChannelOptions = {};

  constructor(helper: experimental.ChannelControlHelper) {
    super(TYPE_NAME);
    this.child = new experimental.ChildLoadBalancerHandler(
      experimental.createChildChannelControlHelper(helper, {
        createSubchannel: (address, options) => helper.createSubchannel(address, { ...options, ...this.subchannelOptions }),
      }),
    );
  }

  updateAddressList(
    endpoints: experimental.StatusOr<experimental.Endpoint[]>,
    config: experimental.TypedLoadBalancingConfig,
    options: ChannelOptions,
    resolutionNote: string,
  ): boolean {
    if (!(config instanceof KeepaliveConfig)) return false;
    this.subchannelOptions = config.subchannelOptions();
    return this.child.updateAddressList(endpoints, config.child, options, resolutionNote);
  }
}

/** `child` (a load-balancing config) wrapped in this policy with `keepalive`'s two durations. */
export function withKeepalive(child: Record<string, unknown>, keepalive: { timeMs: number; timeoutMs: number }): Record<string, unknown> {
  return { [TYPE_NAME]: { time: durationText(keepalive.timeMs), timeout: durationText(keepalive.timeoutMs), child_policy: [child] } };
}

/** Registers the policy with grpc-js. */
export function setup(): void {
  experimental.registerLoadBalancerType(TYPE_NAME, KeepaliveBalancer, KeepaliveConfig);
}

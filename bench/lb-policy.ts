import type { ChannelOptions } from "@grpc/grpc-js";

/** Channel options selecting an LB policy through the service config (gRFC A24 loadBalancingConfig). */
export function policyChannelOptions(policy: string): ChannelOptions {
  return { "grpc.service_config": JSON.stringify({ loadBalancingConfig: [{ [policy]: {} }] }) };
}

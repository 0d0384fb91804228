import { experimental } from "@grpc/grpc-js";
import type { ChannelOptions } from "@grpc/grpc-js";

/**
 * A grpc-js policy that wraps one child policy (protomesh.client_health, protomesh.keepalive): it
 * owns the child's handler, changes what the child's channel control helper does, and passes the
 * rest through. A subclass builds `child` in its constructor and says what an address-list update
 * does.
 */
export abstract class WrappingBalancer implements experimental.LoadBalancer {
  protected abstract readonly child: experimental.ChildLoadBalancerHandler;

  constructor(private readonly typeName: string) {}

  abstract updateAddressList(
    endpoints: experimental.StatusOr<experimental.Endpoint[]>,
    config: experimental.TypedLoadBalancingConfig,
    options: ChannelOptions,
    resolutionNote: string,
  ): boolean;

  exitIdle(): void {
    this.child.exitIdle();
  }

  resetBackoff(): void {
    this.child.resetBackoff();
  }

  destroy(): void {
    this.child.destroy();
  }

  getTypeName(): string {
    return this.typeName;
  }
}

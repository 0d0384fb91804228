import { InterceptingCall, status } from "@grpc/grpc-js";
import type { Interceptor } from "@grpc/grpc-js";

/**
 * What grpc-js-xds' balancers answer a call when the control plane lists no healthy endpoint for
 * the service (every endpoint UNHEALTHY, or none registered): its priority policy is left with
 * nothing to pick from.
 */
const NO_ENDPOINT_DETAILS: ReadonlySet<string> = new Set(["priority policy has empty priority list"]);

/**
 * Client interceptor of a channel to a mesh service: a call that failed because the service has no
 * healthy endpoint ends UNAVAILABLE with `<service>: no healthy endpoint`, the mesh's own words
 * (ARCHITECTURE.md: no healthy endpoint → UNAVAILABLE), instead of the balancer's internals. Any
 * other status passes unchanged.
 */
export function meshStatusInterceptor(service: string): Interceptor {
  const details = `${service}: no healthy endpoint`;
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start: (metadata, _listener, next) => {
        next(metadata, {
          onReceiveStatus: (callStatus, nextStatus) => {
            if (callStatus.code === status.UNAVAILABLE && NO_ENDPOINT_DETAILS.has(callStatus.details)) {
              nextStatus({ ...callStatus, details });
            } else {
              nextStatus(callStatus);
            }
          },
        });
      },
    });
}

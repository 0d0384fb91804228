import type { ServerWritableStream } from "@grpc/grpc-js";
import type {
  RegistryServiceServer,
  WatchServicesRequest,
  WatchServicesResponse,
} from "../../generated/ts/protomesh/registry/v1/registry";
import { unary } from "../handler";
import { OPEN_ACCESS } from "./access";
import type { ControlPlaneAccess } from "./access";
import type { Registry } from "./registry";
import { validateEndpoint, validateServiceName } from "./registry-validation";

/** Full names of the gRPC methods whose streams live until the caller or the control plane ends them. */
export const WATCH_SERVICES_PATH = "/protomesh.registry.v1.RegistryService/WatchServices";

/**
 * The protomesh.registry.v1.RegistryService handlers over a {@link Registry}. `endWatches` ends
 * every WatchServices stream (called by the control plane when it stops). Under `access` (mTLS) a
 * caller registers, renews and removes only endpoints of its own service.
 */
export function registryService(
  registry: Registry,
  access: ControlPlaneAccess = OPEN_ACCESS,
): { implementation: RegistryServiceServer; endWatches(): void } {
  const watches = new Set<ServerWritableStream<WatchServicesRequest, WatchServicesResponse>>();
  const filterOf = (service: string): string => {
    if (service !== "") validateServiceName(service, "service");
    return service;
  };
  const implementation: RegistryServiceServer = {
    register: unary((request, call) => {
      // An invalid endpoint is INVALID_ARGUMENT whoever asks; a valid one names the service checked.
      const endpoint = validateEndpoint(request.endpoint);
      access.checkWorkload(call, endpoint.service, "register an endpoint");
      return registry.register(endpoint, request.leaseTtlMs);
    }),
    keepAlive: unary((request, call) => {
      access.checkWorkload(call, registry.serviceOfLease(request.leaseId), "renew a lease");
      return { leaseTtlMs: registry.keepAlive(request.leaseId) };
    }),
    deregister: unary((request, call) => {
      access.checkWorkload(call, registry.serviceOfLease(request.leaseId), "deregister an endpoint");
      registry.deregister(request.leaseId);
      return {};
    }),
    listServices: unary((request) => ({ services: registry.list(filterOf(request.service)) })),
    watchServices: (call) => {
      let service: string;
      try {
        service = filterOf(call.request.service);
      } catch (error) {
        call.emit("error", error);
        return;
      }
      let isScheduled = false;
      // Bursts of changes (several registrations, a probe round) coalesce into one message.
      const send = () => {
        if (isScheduled) return;
        isScheduled = true;
        setImmediate(() => {
          isScheduled = false;
          if (!call.cancelled && call.writable) call.write({ services: registry.list(service) });
        });
      };
      // A watch of one service skips the changes of the others.
      const unsubscribe = registry.onChange((changed) => {
        if (service === "" || changed === undefined || changed === service) send();
      });
      watches.add(call);
      const stop = () => {
        unsubscribe();
        watches.delete(call);
      };
      call.on("cancelled", stop);
      call.on("finish", stop);
      send();
    },
  };
  return {
    implementation,
    endWatches() {
      for (const call of [...watches]) call.end();
    },
  };
}

import type { ServerWritableStream } from "@grpc/grpc-js";
import type {
  RegistryServiceServer,
  WatchServicesRequest,
  WatchServicesResponse,
} from "../../generated/ts/protomesh/registry/v1/registry";
import { unary } from "../handler";
import type { Registry } from "./registry";
import { validateServiceName } from "./registry-validation";

/** Full names of the gRPC methods whose streams live until the caller or the control plane ends them. */
export const WATCH_SERVICES_PATH = "/protomesh.registry.v1.RegistryService/WatchServices";

/**
 * The protomesh.registry.v1.RegistryService handlers over a {@link Registry}. `endWatches` ends
 * every WatchServices stream (called by the control plane when it stops).
 */
export function registryService(registry: Registry): { implementation: RegistryServiceServer; endWatches(): void } {
  const watches = new Set<ServerWritableStream<WatchServicesRequest, WatchServicesResponse>>();
  const filterOf = (service: string): string => {
    if (service !== "") validateServiceName(service, "service");
    return service;
  };
  const implementation: RegistryServiceServer = {
    register: unary((request) => registry.register(request.endpoint, request.leaseTtlMs)),
    keepAlive: unary((request) => ({ leaseTtlMs: registry.keepAlive(request.leaseId) })),
    deregister: unary((request) => {
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

import { status } from "@grpc/grpc-js";
import type { Fault, FaultServiceServer } from "../../generated/ts/protomesh/fault/v1/fault";
import type { Duration } from "../../generated/ts/google/protobuf/duration";
import { invalidArgument, MeshError } from "../errors";
import { unary } from "../handler";
import { OPEN_ACCESS } from "./access";
import type { ControlPlaneAccess } from "./access";
import { validateInjectFault } from "./fault-validation";
import type { ActiveFault, FaultStore } from "./faults";
import { validateServiceName } from "./registry-validation";

/** Full name of the fault service, for health and reflection. */
export const FAULT_SERVICE_NAME = "protomesh.fault.v1.FaultService";

/**
 * The protomesh.fault.v1.FaultService handlers over a {@link FaultStore}. Under `access` (mTLS) only
 * an admin identity injects or clears faults; any workload may list them.
 */
export function faultService(faults: FaultStore, access: ControlPlaneAccess = OPEN_ACCESS): FaultServiceServer {
  const filterOf = (service: string): string => {
    if (service !== "") validateServiceName(service, "service");
    return service;
  };
  const toMessage = (fault: ActiveFault): Fault => ({
    id: fault.id,
    service: fault.service,
    method: fault.method,
    delay: fault.delay && { fixedDelay: durationOf(fault.delay.delayMs), percent: fault.delay.percent },
    abort: fault.abort && { code: fault.abort.code, percent: fault.abort.percent },
    expireTime: new Date(fault.expiresAt),
    remainingTtl: durationOf(faults.remainingMs(fault)),
  });
  return {
    injectFault: unary((request, call) => {
      access.checkAdmin(call, "inject a fault");
      const { fault, replaced } = faults.inject(validateInjectFault(request));
      return { fault: toMessage(fault), replaced: replaced && toMessage(replaced) };
    }),
    listFaults: unary((request) => ({ faults: faults.list(filterOf(request.service)).map(toMessage) })),
    clearFault: unary((request, call) => {
      access.checkAdmin(call, "clear a fault");
      if (request.id === "") throw invalidArgument("id", "required");
      const cleared = faults.clear(request.id);
      if (!cleared) throw new MeshError(status.NOT_FOUND, "id: no active fault has this id (it may have expired or been cleared)");
      return { fault: toMessage(cleared) };
    }),
    clearFaults: unary((request, call) => {
      access.checkAdmin(call, "clear faults");
      return { faults: faults.clearAll(filterOf(request.service)).map(toMessage) };
    }),
  };
}

function durationOf(ms: number): Duration {
  return { seconds: Math.floor(ms / 1000), nanos: Math.round((ms % 1000) * 1e6) };
}

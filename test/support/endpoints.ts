import type { Endpoint } from "../../generated/ts/protomesh/registry/v1/registry";

/** A catalog endpoint on 127.0.0.1 as a Register request carries it, with `changes` applied. */
export function catalogEndpoint(changes: Partial<Endpoint> = {}): Endpoint {
  return { service: "catalog", address: "127.0.0.1", port: 50051, zone: "", weight: 1, metadata: {}, healthServiceName: "", ...changes };
}

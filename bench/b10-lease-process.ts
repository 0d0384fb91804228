import { Server, ServerCredentials } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import type { DestinationStream } from "pino";
import { createLogger } from "../mesh/logger";
import { leaseForServer } from "../mesh/registry-lease";
import type { RegistryLease } from "../mesh/registry-lease";
import { flag, serveControl } from "./control-channel";
import { seededRandom } from "./latency-model";
import { endpointAddress, leaseDialAddress, serviceOf } from "./b10-mesh";

/**
 * Entry point of B10's replicas: one plain grpc-js server with grpc.health.v1 only
 * (grpc-health-check, SERVING), bound to 0.0.0.0 on a free port, and `--count` endpoints
 * `--first`… of the mesh, each registered by a real {@link RegistryLease} (mesh/registry-lease.ts,
 * `leaseForServer`, the control plane's default lease) as a distinct loopback address 127.1.x.y
 * advertised with that port, so the prober reaches this one server for all of them.
 *
 * Each lease dials the control plane (bound to 0.0.0.0:`--port`) at a loopback address of its own
 * (127.3.x.y): grpc-js shares one connection between channels of one target in a process, and
 * 1,000 replicas are 1,000 processes with a connection each. The leases start spread uniformly
 * over `--spread-ms` (seeded), as replicas started at different times are, so their keep-alives
 * are out of phase when the control plane goes away.
 *
 * What each lease did is read from its own log (pino at debug: one line per registration, per
 * failed attempt, per lease lost), never from a patched lease. IPC ops: events (and clear them),
 * registered (how many leases hold a lease), stop.
 */

/** One thing a lease did, from its log line. */
export interface LeaseEvent {
  /** Index of the endpoint in the mesh. */
  g: number;
  kind: "registered" | "registerFailed" | "keepAliveFailed" | "leaseLost" | "keepAliveRestored" | "other";
  atMs: number;
  /** Status code name and details of a failed attempt. */
  code?: string;
  details?: string;
}

const KINDS: Array<[string, LeaseEvent["kind"]]> = [
  ["registered", "registered"],
  ["registration failed", "registerFailed"],
  ["keep-alive failed", "keepAliveFailed"],
  ["lease lost", "leaseLost"],
  ["keep-alive restored", "keepAliveRestored"],
];

/** A pino destination that turns each lease's log line into a {@link LeaseEvent}. */
function eventSink(events: LeaseEvent[]): DestinationStream {
  return {
    write(line: string) {
      const record = JSON.parse(line) as { endpointIndex?: number; msg?: string; time: number; code?: string; details?: string };
      if (record.endpointIndex === undefined || record.msg === undefined) return;
      const kind = KINDS.find(([prefix]) => record.msg!.startsWith(prefix))?.[1] ?? "other";
      events.push({ g: record.endpointIndex, kind, atMs: record.time, ...(record.code ? { code: record.code, details: record.details } : {}) });
    },
  };
}

async function main(): Promise<void> {
  const controlPlanePort = Number(flag("port"));
  const first = Number(flag("first"));
  const count = Number(flag("count"));
  const services = Number(flag("services"));
  const spreadMs = Number(flag("spread-ms"));
  const random = seededRandom(Number(flag("seed", "1")));
  const server = new Server();
  new HealthImplementation({ "": "SERVING" }).addToServer(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("0.0.0.0:0", ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  const events: LeaseEvent[] = [];
  const logger = createLogger({ name: "b10-replicas", level: "debug", destination: eventSink(events) });
  const leases: RegistryLease[] = [];
  const timers: NodeJS.Timeout[] = [];
  for (let g = first; g < first + count; g++) {
    const lease = leaseForServer(
      leaseDialAddress(g, controlPlanePort),
      { service: serviceOf(g, services), listenAddress: `0.0.0.0:${port}`, port, advertiseHost: endpointAddress(g), healthServiceName: "" },
      logger.child({ endpointIndex: g }),
    );
    leases.push(lease);
    timers.push(setTimeout(() => void lease.start(), random() * spreadMs));
  }
  serveControl(
    {
      events: () => events.splice(0),
      registered: () => leases.filter((lease) => lease.isRegistered).length,
      stop: () => {
        // No deregistration: the control plane of the run is stopped with the replicas.
        timers.forEach(clearTimeout);
        setImmediate(() => process.exit(0));
      },
    },
    { port },
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`b10 lease process failed: ${String(error)}\n`);
  process.exit(1);
});

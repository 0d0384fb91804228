import { CatalogServiceService } from "../generated/ts/shop/catalog/v1/catalog";
import type { CatalogServiceServer } from "../generated/ts/shop/catalog/v1/catalog";
import { createLogger } from "../mesh/logger";
import type { Logger } from "../mesh/logger";
import { leaseForServer } from "../mesh/registry-lease";
import type { RegistryLease } from "../mesh/registry-lease";
import { createServer } from "../mesh/server";
import type { MeshServer } from "../mesh/server";
import { HeldStreams, benchCatalog } from "./bench-catalog";
import { epochMs } from "./call-record";
import { flag, serveControl } from "./control-channel";
import { logNormalMs, seededRandom } from "./latency-model";
import { ProcessProbe } from "./process-probe";

/**
 * Entry point of a process hosting mesh replicas of the bench catalog (B3, B4, B7):
 * `--ids r0,r1 --service NAME --control-plane HOST:PORT [--ports 0,0] [--register auto|manual]
 * [--median-ms 20] [--seed 1] [--host 127.0.0.1] [--advertise ADDRESS]`. Each replica is a protomesh
 * server (createServer, every default) on `--host` (registered as `--advertise` when given: a
 * replica in a network namespace binds 0.0.0.0 and registers its veth's address) whose GetProduct answers after a log-normal delay around its median
 * (latency-model.ts; one seeded generator per replica), headers and all, as a real handler does.
 * - auto: the server registers itself in `listen`, as a service does with PROTOMESH_CONTROL_PLANE;
 * - manual: the harness says when each replica registers and deregisters (B7), through the same
 *   RegistryLease, while the server keeps serving.
 * IPC ops: replicas, setMedian, setServing, register, deregister, mark, sample, stop.
 */

interface Replica {
  id: string;
  server: MeshServer;
  port: number;
  medianMs: number;
  lease?: RegistryLease;
}

function delayedCatalog(replica: Replica, random: () => number): CatalogServiceServer {
  const catalog = benchCatalog(new HeldStreams());
  return {
    ...catalog,
    // The headers go with the response, as from every unary handler of the kit: grpc-js commits a
    // call once headers arrive (gRFC A6), so a replica that sent them first would make every call
    // it held when it died unretryable. Clients tell replicas apart by the call's peer address.
    getProduct: (call, callback) => {
      const delayMs = logNormalMs(replica.medianMs, random);
      if (delayMs <= 0) {
        catalog.getProduct(call, callback);
        return;
      }
      const timer = setTimeout(() => catalog.getProduct(call, callback), delayMs);
      call.once("cancelled", () => clearTimeout(timer));
    },
  };
}

interface ReplicaOptions {
  service: string;
  controlPlane: string;
  isAuto: boolean;
  medianMs: number;
  seed: number;
  logger: Logger;
  host: string;
  advertiseHost: string | undefined;
}

async function startReplica(
  id: string,
  port: number,
  options: ReplicaOptions,
): Promise<Replica> {
  const server = createServer({
    name: "bench-catalog",
    meshService: options.service,
    logger: options.logger,
    controlPlane: options.isAuto ? options.controlPlane : undefined,
    advertiseHost: options.advertiseHost,
  });
  const replica: Replica = { id, server, port: 0, medianMs: options.medianMs };
  server.addService(CatalogServiceService, delayedCatalog(replica, seededRandom(options.seed)));
  replica.port = await server.listen(`${options.host}:${port}`);
  return replica;
}

async function main(): Promise<void> {
  const ids = flag("ids").split(",");
  const ports = flag("ports", ids.map(() => "0").join(",")).split(",").map(Number);
  const service = flag("service");
  const controlPlane = flag("control-plane");
  const isAuto = flag("register", "auto") === "auto";
  const medianMs = Number(flag("median-ms", "20"));
  const seed = Number(flag("seed", "1"));
  const host = flag("host", "127.0.0.1");
  const advertiseHost = flag("advertise", "") || undefined;
  const logger = createLogger({ name: "bench-replica" });
  const probe = new ProcessProbe();
  const replicas = new Map<string, Replica>();
  for (const [index, id] of ids.entries()) {
    const options = { service, controlPlane, isAuto, medianMs, seed: seed * 100 + index, logger, host, advertiseHost };
    replicas.set(id, await startReplica(id, ports[index] ?? 0, options));
  }
  const replicaOf = (args: unknown): Replica => {
    const id = (args as { id: string }).id;
    const replica = replicas.get(id);
    if (!replica) throw new Error(`no replica ${id}`);
    return replica;
  };
  serveControl(
    {
      replicas: () => [...replicas.values()].map(({ id, port }) => ({ id, port })),
      setMedian: (args) => {
        replicaOf(args).medianMs = (args as { medianMs: number }).medianMs;
        return epochMs();
      },
      setServing: (args) => {
        const at = epochMs();
        replicaOf(args).server.health.setServing((args as { isServing: boolean }).isServing);
        return at;
      },
      register: async (args) => {
        const replica = replicaOf(args);
        if (replica.lease) throw new Error(`${replica.id} is registered already`);
        replica.lease = leaseForServer(
          controlPlane,
          {
            service,
            listenAddress: `${host}:${replica.port}`,
            port: replica.port,
            advertiseHost,
            healthServiceName: replica.server.serviceNames[0] ?? "",
          },
          logger,
        );
        const at = epochMs();
        await replica.lease.start();
        if (!replica.lease.isRegistered) throw new Error(`${replica.id}: registration failed`);
        return at;
      },
      deregister: async (args) => {
        const replica = replicaOf(args);
        const at = epochMs();
        await replica.lease?.stop();
        replica.lease = undefined;
        return at;
      },
      mark: () => probe.mark(),
      sample: () => probe.read(),
      stop: async () => {
        probe.close();
        await Promise.all([...replicas.values()].map((replica) => replica.lease?.stop()));
        await Promise.all([...replicas.values()].map((replica) => replica.server.drain(200)));
        setImmediate(() => process.exit(0));
      },
    },
    { port: [...replicas.values()][0]?.port },
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`bench replica failed: ${String(error)}\n`);
  process.exit(1);
});

import { Metadata } from "@grpc/grpc-js";
import { CatalogServiceService } from "../generated/ts/shop/catalog/v1/catalog";
import type { CatalogServiceServer } from "../generated/ts/shop/catalog/v1/catalog";
import { createLogger } from "../mesh/logger";
import type { Logger } from "../mesh/logger";
import { leaseForServer } from "../mesh/registry-lease";
import type { RegistryLease } from "../mesh/registry-lease";
import { createServer } from "../mesh/server";
import type { MeshServer } from "../mesh/server";
import { HeldStreams, benchCatalog } from "./bench-catalog";
import { REPLICA_HEADER, epochMs } from "./call-record";
import { flag, serveControl } from "./control-channel";
import { logNormalMs, seededRandom } from "./latency-model";
import { ProcessProbe } from "./process-probe";

/**
 * Entry point of a process hosting mesh replicas of the bench catalog (B3, B4, B7):
 * `--ids r0,r1 --service NAME --control-plane HOST:PORT [--ports 0,0] [--register auto|manual]
 * [--median-ms 20] [--seed 1]`. Each replica is a protomesh server (createServer, every default)
 * on 127.0.0.1 whose GetProduct first sends its id in a response header, then answers after a
 * log-normal delay around its median (latency-model.ts; one seeded generator per replica).
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
    getProduct: (call, callback) => {
      // Headers first: the client learns who answers even when the answer misses its deadline.
      const metadata = new Metadata();
      metadata.set(REPLICA_HEADER, replica.id);
      call.sendMetadata(metadata);
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

async function startReplica(
  id: string,
  port: number,
  options: { service: string; controlPlane: string; isAuto: boolean; medianMs: number; seed: number; logger: Logger },
): Promise<Replica> {
  const server = createServer({
    name: "bench-catalog",
    meshService: options.service,
    logger: options.logger,
    controlPlane: options.isAuto ? options.controlPlane : undefined,
  });
  const replica: Replica = { id, server, port: 0, medianMs: options.medianMs };
  server.addService(CatalogServiceService, delayedCatalog(replica, seededRandom(options.seed)));
  replica.port = await server.listen(`127.0.0.1:${port}`);
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
  const logger = createLogger({ name: "bench-replica" });
  const probe = new ProcessProbe();
  const replicas = new Map<string, Replica>();
  for (const [index, id] of ids.entries()) {
    const options = { service, controlPlane, isAuto, medianMs, seed: seed * 100 + index, logger };
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
            listenAddress: `127.0.0.1:${replica.port}`,
            port: replica.port,
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

import * as path from "node:path";
import { loadMeshConfig, policyFor } from "../mesh/controlplane/config";
import type { MeshConfig } from "../mesh/controlplane/config";
import { CONTROL_PLANE_DEFAULT_PORT } from "../mesh/controlplane/control-plane";
import { isServiceError } from "../mesh/errors";
import { SETTINGS_ENV } from "../mesh/settings";
import type { MeshSettings } from "../mesh/settings";
import { CATALOG_DEFAULT_PORT, ORDERS_DEFAULT_PORT } from "../services/default-ports";
import type { MeshPlan, ProcessSpec } from "./launcher";

export { CATALOG_DEFAULT_PORT, ORDERS_DEFAULT_PORT } from "../services/default-ports";
/** Host the stack binds and is dialled on: loopback only, a local development stack. */
export const STACK_HOST = "127.0.0.1";
/**
 * Under `protomesh up`, replica i of a service listens on its base port + i * this: catalog on
 * 50051, 50061, 50071; orders on 50052, 50062. Fixed ports, so that printed commands keep working.
 */
export const REPLICA_PORT_STRIDE = 10;
/** The mesh config `protomesh up` reads unless PROTOMESH_MESH_CONFIG names another. */
export const DEFAULT_MESH_CONFIG = path.resolve(__dirname, "..", "..", "deploy", "mesh.yaml");
/** Where the compiled reference services are (dist/services, beside this file's dist/cli). */
const SERVICES_DIR = path.resolve(__dirname, "..", "services");
/** Name of the control plane's process (and log file) under `protomesh up`. */
export const CONTROL_PLANE_NAME = "control-plane";

/** The services `protomesh up` can run, in start order (a service's dependencies before it), and their port variables. */
const REFERENCE_SERVICES = [
  { name: "catalog", portVariable: "CATALOG_PORT", defaultPort: CATALOG_DEFAULT_PORT },
  { name: "orders", portVariable: "ORDERS_PORT", defaultPort: ORDERS_DEFAULT_PORT },
] as const;

/** The local mesh as `protomesh up` runs it, and the commands to try once it serves. */
export interface Stack extends MeshPlan {
  /** Services named in the mesh config that `protomesh up` has no program for: not started. */
  notStarted: string[];
  /** Commands that work as printed against this stack, given the pids of its processes by name. */
  tryCommands(pidOf: (name: string) => number | undefined): string[];
}

/**
 * The reference mesh: the control plane on CONTROL_PLANE_PORT (default 50050) with the mesh config
 * (PROTOMESH_MESH_CONFIG, default deploy/mesh.yaml), then `replicas` processes of catalog and of
 * orders as the config says, replica i on CATALOG_PORT / ORDERS_PORT + 10 * i. Every replica
 * registers with the control plane, and orders finds the catalog by name through it. Scripts are
 * the compiled ones in dist/. The port variables come from `env`, the mesh config from `settings`.
 * Throws a TypeError naming the variable, or the config file and field, when something is not usable.
 */
export function referenceStack(settings: Pick<MeshSettings, "meshConfigPath">, env: NodeJS.ProcessEnv = process.env): Stack {
  const controlPlanePort = portFrom(env, "CONTROL_PLANE_PORT", CONTROL_PLANE_DEFAULT_PORT);
  const configPath = path.resolve(settings.meshConfigPath ?? DEFAULT_MESH_CONFIG);
  let config: MeshConfig;
  try {
    config = loadMeshConfig(configPath);
  } catch (error) {
    const problem = isServiceError(error) ? error.details : (error as Error).message;
    throw new TypeError(`mesh config ${configPath}: ${problem}`, { cause: error });
  }
  const controlPlaneAddress = `${STACK_HOST}:${controlPlanePort}`;
  const controlPlane: ProcessSpec = {
    name: CONTROL_PLANE_NAME,
    command: process.execPath,
    args: [path.join(__dirname, "protomesh.js"), "control-plane", configPath],
    env: { [SETTINGS_ENV.port]: String(controlPlanePort), [SETTINGS_ENV.host]: STACK_HOST },
    address: controlPlaneAddress,
  };
  const ports = new Map<number, string>([[controlPlanePort, "CONTROL_PLANE_PORT"]]);
  const stages = REFERENCE_SERVICES.map(({ name, portVariable, defaultPort }) => {
    const basePort = portFrom(env, portVariable, defaultPort);
    return Array.from({ length: policyFor(config, name).replicas }, (_, index) => {
      const port = basePort + REPLICA_PORT_STRIDE * index;
      const origin = index === 0 ? portVariable : `${portVariable} + ${REPLICA_PORT_STRIDE * index}`;
      if (port > 65535) throw new TypeError(`${portVariable}: ${name}-${index} would listen on ${port} (${origin}), beyond 65535`);
      const clash = ports.get(port);
      if (clash !== undefined) {
        throw new TypeError(`${clash} and ${origin} are both port ${port}: pick base ports further apart (replica i listens on base + ${REPLICA_PORT_STRIDE} * i)`);
      }
      ports.set(port, origin);
      return replica(name, index, port, controlPlaneAddress);
    });
  });
  const [catalog, orders] = stages; // in REFERENCE_SERVICES order
  const launchable = new Set<string>(REFERENCE_SERVICES.map((service) => service.name));
  return {
    controlPlane,
    stages,
    notStarted: [...config.services.keys()].filter((name) => !launchable.has(name)),
    tryCommands: (pidOf) => tryCommands(controlPlaneAddress, { catalog, orders }, pidOf),
  };
}

// PlaceOrder is idempotent on idempotency_key: running the printed command twice answers
// `"replayed": true` the second time, which is worth seeing.
const SAMPLE_ORDER = {
  customer_id: "cust-42",
  items: [{ product_id: "sku-1001", quantity: 2 }],
  idempotency_key: "try-it-1",
};

function tryCommands(
  controlPlane: string,
  replicas: { catalog: ProcessSpec[]; orders: ProcessSpec[] },
  pidOf: (name: string) => number | undefined,
): string[] {
  const catalog = replicas.catalog[0]?.address;
  const orders = replicas.orders[0]?.address;
  const commands = [
    `grpcurl -plaintext ${controlPlane} list`,
    `grpcurl -plaintext ${controlPlane} protomesh.registry.v1.RegistryService/ListServices`,
  ];
  if (catalog !== undefined) {
    commands.push(`grpcurl -plaintext -d '{"id":"sku-1001"}' ${catalog} shop.catalog.v1.CatalogService/GetProduct`);
  }
  if (orders !== undefined) {
    commands.push(
      `grpcurl -plaintext -d '${JSON.stringify(SAMPLE_ORDER)}' ${orders} shop.orders.v1.OrderService/PlaceOrder`,
      `grpcurl -plaintext ${orders} grpc.health.v1.Health/Check`,
    );
  }
  // Stop a second replica rather than the first, so that the commands above keep working.
  const stages = [replicas.catalog, replicas.orders];
  const victim = stages.find((stage) => stage.length > 1)?.[1] ?? stages.find((stage) => stage.length > 0)?.[0];
  const pid = victim && pidOf(victim.name);
  if (victim && pid !== undefined) {
    commands.push(`kill ${pid}    # stops ${victim.name} (${victim.address}): it drains, leaves the registry, the table changes`);
  }
  return commands;
}

function replica(service: string, index: number, port: number, controlPlane: string): ProcessSpec {
  return {
    name: `${service}-${index}`,
    command: process.execPath,
    args: [path.join(SERVICES_DIR, service, "main.js")],
    env: {
      // PORT and HOST are what every service reads (mesh/settings.ts); HOST is pinned so that an
      // exported HOST in the user's shell cannot move a service off the address printed for it.
      [SETTINGS_ENV.port]: String(port),
      [SETTINGS_ENV.host]: STACK_HOST,
      [SETTINGS_ENV.controlPlane]: controlPlane,
      // Removed, not inherited: with a control plane and no CATALOG_TARGET, orders dials the catalog
      // by name (xds:///catalog); an advertised host other than the bound one would hide the
      // replica's registry entry from the launcher's table.
      CATALOG_TARGET: undefined,
      [SETTINGS_ENV.advertiseHost]: undefined,
    },
    address: `${STACK_HOST}:${port}`,
  };
}

function portFrom(env: NodeJS.ProcessEnv, variable: string, defaultPort: number): number {
  const text = env[variable];
  if (text === undefined || text.trim() === "") return defaultPort;
  const port = Number(text);
  // Port 0 (any free port) is refused: the launcher must know the address to check and print it.
  if (!/^\s*\d+\s*$/.test(text) || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TypeError(`${variable} must be a port number from 1 to 65535, got ${JSON.stringify(text)}`);
  }
  return port;
}

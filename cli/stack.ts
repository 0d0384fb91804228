import * as fs from "node:fs";
import * as path from "node:path";
import { loadMeshConfig, policyFor } from "../mesh/controlplane/config";
import type { MeshConfig } from "../mesh/controlplane/config";
import { CONTROL_PLANE_DEFAULT_PORT } from "../mesh/controlplane/control-plane";
import { isServiceError } from "../mesh/errors";
import { SETTINGS_ENV } from "../mesh/settings";
import type { MeshSettings } from "../mesh/settings";
import { CATALOG_DEFAULT_PORT, INVENTORY_DEFAULT_PORT, ORDERS_DEFAULT_PORT, PRICING_DEFAULT_PORT } from "../services/default-ports";
import { portFromEnv } from "./env-port";
import { GATEWAY_HTTP_DEFAULT_PORT } from "./gateway/config";
import { GATEWAY_DEFAULT_PORT } from "./gateway/run";
import type { MeshPlan, ProcessSpec } from "./launcher";

export { CATALOG_DEFAULT_PORT, INVENTORY_DEFAULT_PORT, ORDERS_DEFAULT_PORT, PRICING_DEFAULT_PORT } from "../services/default-ports";
/** Host the stack binds and is dialled on: loopback only, a local development stack. */
export const STACK_HOST = "127.0.0.1";
/**
 * Under `protomesh up`, replica i of a service listens on its base port + i * this: catalog on
 * 50051, 50061, 50071; orders on 50052, 50062. Fixed ports, so that printed commands keep working.
 */
export const REPLICA_PORT_STRIDE = 10;
/**
 * A process's admin HTTP port (GET /metrics) is its gRPC port plus this (ADMIN_PORT_OFFSET; 0
 * turns the admin ports off): the control plane's on 51050, catalog-0's on 51051.
 */
export const ADMIN_PORT_OFFSET = 1_000;
/** The mesh config `protomesh up` reads unless PROTOMESH_MESH_CONFIG names another. */
export const DEFAULT_MESH_CONFIG = path.resolve(__dirname, "..", "..", "deploy", "mesh.yaml");
/** The repository (this file runs from dist/cli). */
const ROOT = path.resolve(__dirname, "..", "..");
/** Where the compiled reference services are (dist/services, beside this file's dist/cli). */
const SERVICES_DIR = path.resolve(__dirname, "..", "services");
/** Name of the control plane's process (and log file) under `protomesh up`. */
export const CONTROL_PLANE_NAME = "control-plane";

/** How a reference service is run, or why it cannot be here. */
type Program = { command: string; args: string[]; env?: (index: number) => Record<string, string> } | { missing: string };

/**
 * The services `protomesh up` can run, in start order (a service's dependencies before it), their
 * port variables, and their programs: catalog and orders in TypeScript (dist/services), inventory
 * in Go (dist/go/inventory, `make go-build`), pricing in Python (the project virtualenv, `make
 * python-env`).
 */
const REFERENCE_SERVICES: ReadonlyArray<{
  name: string;
  portVariable: string;
  defaultPort: number;
  program: (root: string, ports: { gatewayHttp: number }) => Program;
  /** Run only when the mesh config names it (catalog and orders run whatever it says). */
  optional?: boolean;
}> = [
  { name: "catalog", portVariable: "CATALOG_PORT", defaultPort: CATALOG_DEFAULT_PORT, program: () => nodeProgram("catalog") },
  {
    name: "inventory",
    portVariable: "INVENTORY_PORT",
    defaultPort: INVENTORY_DEFAULT_PORT,
    optional: true,
    program: (root) => {
      const binary = path.join(root, "dist", "go", "inventory");
      return fs.existsSync(binary) ? { command: binary, args: [] } : { missing: `${path.relative(root, binary)} is not built (Go is needed: install Go, then \`make up\` builds it)` };
    },
  },
  {
    name: "pricing",
    portVariable: "PRICING_PORT",
    defaultPort: PRICING_DEFAULT_PORT,
    optional: true,
    program: (root) => {
      const python = path.join(root, ".venv", "bin", "python");
      return fs.existsSync(python)
        ? { command: python, args: [path.join(root, "services", "pricing", "main.py")] }
        : { missing: `${path.relative(root, python)} is missing (Python 3.10 or later is needed: install python3 and python3-venv, then \`make up\` makes it)` };
    },
  },
  { name: "orders", portVariable: "ORDERS_PORT", defaultPort: ORDERS_DEFAULT_PORT, program: () => nodeProgram("orders") },
  {
    // HTTP/JSON and gRPC-Web on GATEWAY_HTTP_PORT (default 8080) + 10·i, a kit server on GATEWAY_PORT.
    name: "gateway",
    portVariable: "GATEWAY_PORT",
    defaultPort: GATEWAY_DEFAULT_PORT,
    optional: true,
    program: (root, ports) => ({
      command: process.execPath,
      args: [path.join(__dirname, "protomesh.js"), "gateway", path.join(root, "deploy", "gateway.yaml")],
      env: (index) => ({ GATEWAY_HTTP_PORT: String(ports.gatewayHttp + REPLICA_PORT_STRIDE * index) }),
    }),
  },
];


function nodeProgram(service: string): Program {
  return { command: process.execPath, args: [path.join(SERVICES_DIR, service, "main.js")] };
}

/** The local mesh as `protomesh up` runs it, and the commands to try once it serves. */
export interface Stack extends MeshPlan {
  /** Services named in the mesh config that `protomesh up` has no program for: not started. */
  notStarted: string[];
  /** The gateway's HTTP address when it runs ("127.0.0.1:8080"). */
  gatewayHttp: string | undefined;
  /** The control plane's live dashboard ("http://127.0.0.1:51050/"), on its admin port; none without admin ports. */
  dashboardUrl: string | undefined;
  /** Reference services whose language is missing here, and why: not started, the rest runs without them. */
  unavailable: Array<{ name: string; reason: string }>;
  /**
   * Commands that work as printed against this stack, given the pids of its processes by name;
   * `grpcurlTls` is what grpcurl is told of the transport ("-plaintext", or "$TLS" for the
   * certificate flags a line before it sets).
   */
  tryCommands(pidOf: (name: string) => number | undefined, grpcurlTls?: string): string[];
}

/**
 * The reference mesh: the control plane on CONTROL_PLANE_PORT (default 50050) with the mesh config
 * (PROTOMESH_MESH_CONFIG, default deploy/mesh.yaml), then `replicas` processes of catalog,
 * inventory (Go) and pricing (Python) when the config names them, and orders, as the config says;
 * replica i on CATALOG_PORT / INVENTORY_PORT / PRICING_PORT / ORDERS_PORT + 10 * i. Every replica
 * registers with the control plane, and orders finds the others by name through it. A service
 * whose language is missing here is left out (`unavailable`, with the reason) and orders does
 * without it. The port variables come from `env`, the mesh config from `settings`.
 * Throws a TypeError naming the variable, or the config file and field, when something is not usable.
 */
export function referenceStack(settings: Pick<MeshSettings, "meshConfigPath">, env: NodeJS.ProcessEnv = process.env, root = ROOT): Stack {
  const controlPlanePort = portFromEnv(env, "CONTROL_PLANE_PORT", CONTROL_PLANE_DEFAULT_PORT);
  const adminOffset = portFromEnv(env, "ADMIN_PORT_OFFSET", ADMIN_PORT_OFFSET, 0);
  const adminOf = (port: number) => (adminOffset === 0 || port + adminOffset > 65535 ? undefined : `${STACK_HOST}:${port + adminOffset}`);
  const gatewayHttpPort = portFromEnv(env, "GATEWAY_HTTP_PORT", GATEWAY_HTTP_DEFAULT_PORT);
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
    env: { [SETTINGS_ENV.port]: String(controlPlanePort), [SETTINGS_ENV.host]: STACK_HOST, [SETTINGS_ENV.adminAddress]: adminOf(controlPlanePort) },
    address: controlPlaneAddress,
  };
  const ports = new Map<number, string>([[controlPlanePort, "CONTROL_PLANE_PORT"]]);
  const unavailable: Array<{ name: string; reason: string }> = [];
  const byService = new Map<string, ProcessSpec[]>();
  for (const { name, portVariable, defaultPort, program, optional } of REFERENCE_SERVICES) {
    if (optional && !config.services.has(name)) continue;
    const basePort = portFromEnv(env, portVariable, defaultPort);
    const replicas = policyFor(config, name).replicas;
    const how = program(root, { gatewayHttp: gatewayHttpPort });
    if ("missing" in how) {
      if (replicas > 0) unavailable.push({ name, reason: how.missing });
      continue;
    }
    const stage = Array.from({ length: replicas }, (_, index) => {
      const port = basePort + REPLICA_PORT_STRIDE * index;
      const origin = index === 0 ? portVariable : `${portVariable} + ${REPLICA_PORT_STRIDE * index}`;
      if (port > 65535) throw new TypeError(`${portVariable}: ${name}-${index} would listen on ${port} (${origin}), beyond 65535`);
      const clash = ports.get(port);
      if (clash !== undefined) {
        throw new TypeError(`${clash} and ${origin} are both port ${port}: pick base ports further apart (replica i listens on base + ${REPLICA_PORT_STRIDE} * i)`);
      }
      ports.set(port, origin);
      const spec = replica(name, index, port, controlPlaneAddress, how);
      // The same mesh config as the control plane's: on mTLS each replica enforces its service's
      // authorization block from it.
      spec.env = { ...spec.env, [SETTINGS_ENV.adminAddress]: adminOf(port), [SETTINGS_ENV.meshConfig]: configPath };
      return spec;
    });
    if (stage.length > 0) byService.set(name, stage);
  }
  // orders uses the inventory and pricing that run (by name through the mesh), and does without the others.
  for (const spec of byService.get("orders") ?? []) {
    spec.env = {
      ...spec.env,
      INVENTORY_TARGET: byService.has("inventory") ? "inventory" : undefined,
      PRICING_TARGET: byService.has("pricing") ? "pricing" : undefined,
    };
  }
  const replicasOf = (name: string) => byService.get(name) ?? [];
  const launchable = new Set<string>(REFERENCE_SERVICES.map((service) => service.name));
  const gatewayHttp = byService.has("gateway") ? `${STACK_HOST}:${gatewayHttpPort}` : undefined;
  return {
    controlPlane,
    stages: [...byService.values()],
    notStarted: [...config.services.keys()].filter((name) => !launchable.has(name)),
    unavailable,
    gatewayHttp,
    dashboardUrl: adminOf(controlPlanePort) === undefined ? undefined : `http://${adminOf(controlPlanePort)}/`,
    tryCommands: (pidOf, grpcurlTls = "-plaintext") =>
      tryCommands(
        grpcurlTls,
        controlPlaneAddress,
        { catalog: replicasOf("catalog"), orders: replicasOf("orders"), inventory: replicasOf("inventory"), pricing: replicasOf("pricing") },
        pidOf,
        gatewayHttp,
        adminOf,
      ),
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
  grpcurlTls: string,
  controlPlane: string,
  replicas: { catalog: ProcessSpec[]; orders: ProcessSpec[]; inventory: ProcessSpec[]; pricing: ProcessSpec[] },
  pidOf: (name: string) => number | undefined,
  gatewayHttp?: string,
  adminOf: (port: number) => string | undefined = () => undefined,
): string[] {
  const catalog = replicas.catalog[0]?.address;
  const orders = replicas.orders[0]?.address;
  // On mTLS a workload is verified by its DNS name, the service's (only the control plane's
  // certificate names 127.0.0.1): grpcurl is told which one it dials.
  const as = (service: string) => (grpcurlTls === "-plaintext" ? grpcurlTls : `${grpcurlTls} -servername ${service}`);
  const commands = [
    `grpcurl ${grpcurlTls} ${controlPlane} list`,
    `grpcurl ${grpcurlTls} ${controlPlane} protomesh.registry.v1.RegistryService/ListServices`,
  ];
  if (catalog !== undefined) {
    commands.push(`grpcurl ${as("catalog")} -d '{"id":"sku-1001"}' ${catalog} shop.catalog.v1.CatalogService/GetProduct`);
  }
  const inventory = replicas.inventory[0]?.address;
  if (inventory !== undefined) {
    commands.push(`grpcurl ${as("inventory")} -d '{"product_id":"sku-1001"}' ${inventory} shop.inventory.v1.InventoryService/GetStock`);
  }
  const pricing = replicas.pricing[0]?.address;
  if (pricing !== undefined) {
    commands.push(
      `grpcurl ${as("pricing")} -d '${JSON.stringify({ customer_id: "cust-42", lines: [{ product_id: "sku-1001", quantity: 5 }] })}' ${pricing} shop.pricing.v1.PricingService/QuoteBasket`,
    );
  }
  if (orders !== undefined) {
    commands.push(
      `grpcurl ${as("orders")} -d '${JSON.stringify(SAMPLE_ORDER)}' ${orders} shop.orders.v1.OrderService/PlaceOrder`,
      `grpcurl ${as("orders")} ${orders} grpc.health.v1.Health/Check`,
      grpcurlTls === "-plaintext" ? `grpc-health-probe -addr ${orders}` : `grpc-health-probe -addr ${orders} $PROBE_TLS -tls-server-name orders`,
    );
  }
  const catalogAdmin = replicas.catalog[0] && adminOf(Number(replicas.catalog[0].address.split(":").at(-1)));
  if (catalogAdmin !== undefined) {
    commands.push(`curl -s http://${catalogAdmin}/metrics | grep '^grpc_server_handled_total'`);
  }
  const controlPlaneAdmin = adminOf(Number(controlPlane.split(":").at(-1)));
  if (controlPlaneAdmin !== undefined) {
    commands.push(`curl -s http://${controlPlaneAdmin}/metrics | grep '^protomesh_controlplane_endpoints'`);
  }
  if (gatewayHttp !== undefined) {
    commands.push(
      `curl -s http://${gatewayHttp}/v1/products/sku-1001`,
      `curl -s -X POST http://${gatewayHttp}/v1/orders -H "Authorization: Bearer $(node dist/cli/protomesh.js token --scope orders:write)" -d '${JSON.stringify({ customerId: "cust-42", items: [{ productId: "sku-1002", quantity: 1 }], idempotencyKey: "try-http-1" })}'`,
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

function replica(service: string, index: number, port: number, controlPlane: string, program: { command: string; args: string[]; env?: (index: number) => Record<string, string> }): ProcessSpec {
  return {
    name: `${service}-${index}`,
    command: program.command,
    args: program.args,
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
      ...program.env?.(index),
    },
    address: `${STACK_HOST}:${port}`,
  };
}

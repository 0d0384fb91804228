import * as path from "node:path";
import type { ProcessSpec } from "../mesh/launcher";

/** Port the catalog listens on unless PORT (or, under `protomesh up`, CATALOG_PORT) says otherwise. */
export const CATALOG_DEFAULT_PORT = 50051;
/** Port the orders service listens on unless PORT (or, under `protomesh up`, ORDERS_PORT) says otherwise. */
export const ORDERS_DEFAULT_PORT = 50052;
/** Host the stack binds and is dialled on: loopback only, a local development stack. */
export const STACK_HOST = "127.0.0.1";

/** The reference services as `protomesh up` runs them, and the commands to try once they serve. */
export interface Stack {
  /** In start order: each process's dependencies come before it. */
  processes: ProcessSpec[];
  /** grpcurl commands that work as printed against this stack. */
  tryCommands: string[];
}

/**
 * The reference stack: catalog on CATALOG_PORT and orders on ORDERS_PORT (defaults 50051, 50052),
 * orders dialling that catalog. Scripts are the compiled services next to this file in dist/.
 * Throws a TypeError naming the variable when a port is not usable.
 */
export function referenceStack(env: NodeJS.ProcessEnv = process.env): Stack {
  const catalogPort = portFrom(env, "CATALOG_PORT", CATALOG_DEFAULT_PORT);
  const ordersPort = portFrom(env, "ORDERS_PORT", ORDERS_DEFAULT_PORT);
  if (catalogPort === ordersPort) {
    throw new TypeError(`CATALOG_PORT and ORDERS_PORT must differ, both are ${catalogPort}`);
  }
  const catalog = `${STACK_HOST}:${catalogPort}`;
  const orders = `${STACK_HOST}:${ordersPort}`;
  return {
    processes: [
      service("catalog", catalogPort, {}),
      service("orders", ordersPort, { CATALOG_TARGET: catalog }),
    ],
    tryCommands: [
      `grpcurl -plaintext ${catalog} list`,
      `grpcurl -plaintext ${catalog} describe shop.catalog.v1.CatalogService`,
      `grpcurl -plaintext -d '{"id":"sku-1001"}' ${catalog} shop.catalog.v1.CatalogService/GetProduct`,
      `grpcurl -plaintext -d '${JSON.stringify(SAMPLE_ORDER)}' ${orders} shop.orders.v1.OrderService/PlaceOrder`,
      `grpcurl -plaintext ${orders} grpc.health.v1.Health/Check`,
    ],
  };
}

// PlaceOrder is idempotent on idempotency_key: running the printed command twice answers
// `"replayed": true` the second time, which is worth seeing.
const SAMPLE_ORDER = {
  customer_id: "cust-42",
  items: [{ product_id: "sku-1001", quantity: 2 }],
  idempotency_key: "try-it-1",
};

function service(name: string, port: number, env: Record<string, string>): ProcessSpec {
  return {
    name,
    command: process.execPath,
    args: [path.join(__dirname, name, "main.js")],
    // PORT and HOST are what every service reads (mesh/listen-address.ts); HOST is pinned so that
    // an exported HOST in the user's shell cannot move a service off the address printed for it.
    env: { ...env, PORT: String(port), HOST: STACK_HOST },
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

import * as fs from "node:fs";
import * as path from "node:path";
import { invalidArgument } from "../../mesh";
import { ClaimingOrderStore } from "./order-store";
import type { ClaimOptions, OrderStore } from "./order-store";
import { PostgresOrderTable } from "./order-table-postgres";
import { SqliteOrderTable } from "./order-table-sqlite";

/** The environment variable that says where the orders replicas keep their orders (read in main.ts). */
export const ORDERS_STORE_URL_ENV = "ORDERS_STORE_URL";
/**
 * The store when ORDERS_STORE_URL is unset: a SQLite file under the working directory's .data/
 * (git-ignored), so that the replicas `make up` starts at the repository root share it.
 */
export const DEFAULT_ORDERS_STORE_URL = "sqlite:.data/orders.sqlite";

/** Where the orders are kept: a SQLite file (or ":memory:", one process only), or a PostgreSQL database. */
export type StoreLocation = { kind: "sqlite"; file: string } | { kind: "postgres"; url: string };

const SQLITE_MEMORY = ":memory:";
const FORMS = "sqlite:<path>, sqlite::memory: or postgres://user:password@host:port/database";

/**
 * Reads an ORDERS_STORE_URL value: `sqlite:<path>` (a relative path from `cwd`), `sqlite::memory:`,
 * or `postgres://...` / `postgresql://...`; unset or "" is {@link DEFAULT_ORDERS_STORE_URL}. Anything
 * else is INVALID_ARGUMENT naming the variable (and never echoing a URL, which may hold a password).
 */
export function parseOrderStoreUrl(text: string | undefined, cwd: string = process.cwd()): StoreLocation {
  const url = text === undefined || text === "" ? DEFAULT_ORDERS_STORE_URL : text;
  if (url.startsWith("sqlite:")) {
    const file = url.slice("sqlite:".length);
    if (file === "") throw invalidArgument(ORDERS_STORE_URL_ENV, `sqlite: needs a path, e.g. ${DEFAULT_ORDERS_STORE_URL}`);
    return { kind: "sqlite", file: file === SQLITE_MEMORY ? SQLITE_MEMORY : path.resolve(cwd, file) };
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  if (scheme === "postgres" || scheme === "postgresql") {
    if (!URL.canParse(url)) throw invalidArgument(ORDERS_STORE_URL_ENV, `is not a valid ${scheme}:// URL`);
    return { kind: "postgres", url };
  }
  throw invalidArgument(ORDERS_STORE_URL_ENV, `must be ${FORMS}, got ${scheme === undefined ? "no scheme" : `"${scheme}:"`}`);
}

/** What a log line says of `location`: the SQLite file, or PostgreSQL's host and database (no credentials). */
export function storeLogFields(location: StoreLocation): Record<string, string> {
  if (location.kind === "sqlite") return { store: "sqlite", file: location.file };
  const url = new URL(location.url);
  return { store: "postgres", host: url.host, database: decodeURIComponent(url.pathname.slice(1)) };
}

/**
 * Opens the store at `location`, creating the SQLite file's directory and the table if missing.
 * The caller closes it (`close()`), after the server that uses it drained.
 */
export async function openOrderStore(location: StoreLocation, options: ClaimOptions): Promise<OrderStore> {
  if (location.kind === "postgres") {
    return new ClaimingOrderStore(await PostgresOrderTable.open(location.url, options.logger), options);
  }
  if (location.file !== SQLITE_MEMORY) fs.mkdirSync(path.dirname(location.file), { recursive: true });
  return new ClaimingOrderStore(new SqliteOrderTable(location.file), options);
}

import { Pool } from "pg";
import { Order } from "../../generated/ts/shop/orders/v1/orders";
import type { Logger } from "../../mesh";
import type { KeyRow, OrderTable } from "./order-store";

/** Connections one replica keeps to PostgreSQL at most; every statement here is one short round trip. */
export const POSTGRES_POOL_SIZE = 4;
/** Longest wait for a connection, new or from the pool, before a statement fails (ms). */
export const POSTGRES_CONNECT_TIMEOUT_MS = 2_000;
/** Longest a statement may run before it fails (ms); none here takes more than a few. */
export const POSTGRES_STATEMENT_TIMEOUT_MS = 5_000;
/** The advisory lock that lets one replica at a time create the schema ("orders" in ASCII). */
const SCHEMA_LOCK = 0x6f7264657273;

/**
 * The orders table, as in SQLite (order-table-sqlite.ts): the order as its protobuf JSON, here in a
 * JSONB column so that psql can query its fields, and columns for what is looked up.
 */
const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS orders (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'placed')),
    claim_token TEXT,
    claimed_at_ms BIGINT NOT NULL,
    order_json JSONB,
    UNIQUE (customer_id, idempotency_key)
  )`,
  "CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer_id, seq)",
];

/** A row as pg returns it: BIGINT columns arrive as strings, JSONB parsed. */
interface Row {
  seq: string;
  state: "pending" | "placed";
  claim_token: string | null;
  claimed_at_ms: string;
  order_json: unknown;
}

/** Orders in a PostgreSQL database, shared by every replica that connects to it. */
export class PostgresOrderTable implements OrderTable {
  private constructor(private readonly pool: Pool) {}

  /** Connects to the database at `url` (postgres://...) and creates the table if it is missing. */
  static async open(url: string, logger: Logger): Promise<PostgresOrderTable> {
    const pool = new Pool({
      connectionString: url,
      max: POSTGRES_POOL_SIZE,
      connectionTimeoutMillis: POSTGRES_CONNECT_TIMEOUT_MS,
      statement_timeout: POSTGRES_STATEMENT_TIMEOUT_MS,
    });
    // An idle connection that breaks (the server restarted) is reported here; unhandled, it would
    // end the process. The pool replaces it on the next statement.
    pool.on("error", (error) => logger.warn({ component: "orders.store", err: error }, "idle PostgreSQL connection failed"));
    try {
      await createSchema(pool);
    } catch (error) {
      await pool.end();
      throw error;
    }
    return new PostgresOrderTable(pool);
  }

  async read(customerId: string, idempotencyKey: string): Promise<KeyRow | undefined> {
    const { rows } = await this.pool.query<Row>(
      "SELECT seq, state, claim_token, claimed_at_ms, order_json FROM orders WHERE customer_id = $1 AND idempotency_key = $2",
      [customerId, idempotencyKey],
    );
    const row = rows[0];
    if (row === undefined) return undefined;
    if (row.state === "placed") return { seq: Number(row.seq), state: "placed", order: Order.fromJSON(row.order_json) };
    return { seq: Number(row.seq), state: "pending", token: row.claim_token!, claimedAtMs: Number(row.claimed_at_ms) };
  }

  async claim(customerId: string, idempotencyKey: string, token: string, nowMs: number, staleBeforeMs: number): Promise<number | undefined> {
    const { rows } = await this.pool.query<{ seq: string }>(
      `INSERT INTO orders (customer_id, idempotency_key, state, claim_token, claimed_at_ms) VALUES ($1, $2, 'pending', $3, $4)
       ON CONFLICT (customer_id, idempotency_key) DO UPDATE
         SET claim_token = excluded.claim_token, claimed_at_ms = excluded.claimed_at_ms
         WHERE orders.state = 'pending' AND orders.claimed_at_ms < $5
       RETURNING seq`,
      [customerId, idempotencyKey, token, nowMs, staleBeforeMs],
    );
    return rows[0] === undefined ? undefined : Number(rows[0].seq);
  }

  async complete(seq: number, token: string, order: Order): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      "UPDATE orders SET state = 'placed', order_json = $1, claim_token = NULL WHERE seq = $2 AND claim_token = $3",
      [JSON.stringify(Order.toJSON(order)), seq, token],
    );
    return rowCount === 1;
  }

  async renew(seq: number, token: string, nowMs: number): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      "UPDATE orders SET claimed_at_ms = $1 WHERE seq = $2 AND claim_token = $3 AND state = 'pending'",
      [nowMs, seq, token],
    );
    return rowCount === 1;
  }

  async release(seq: number, token: string): Promise<void> {
    await this.pool.query("DELETE FROM orders WHERE seq = $1 AND claim_token = $2", [seq, token]);
  }

  async placed(seq: number): Promise<Order | undefined> {
    const { rows } = await this.pool.query<Pick<Row, "order_json">>("SELECT order_json FROM orders WHERE seq = $1 AND state = 'placed'", [seq]);
    return rows[0] && Order.fromJSON(rows[0].order_json);
  }

  async list(customerId: string): Promise<Order[]> {
    const { rows } =
      customerId === ""
        ? await this.pool.query<Pick<Row, "order_json">>("SELECT order_json FROM orders WHERE state = 'placed' ORDER BY seq DESC")
        : await this.pool.query<Pick<Row, "order_json">>(
            "SELECT order_json FROM orders WHERE customer_id = $1 AND state = 'placed' ORDER BY seq DESC",
            [customerId],
          );
    return rows.map((row) => Order.fromJSON(row.order_json));
  }

  close(): Promise<void> {
    return this.pool.end();
  }
}

/**
 * Creates the table and its index if missing, under an advisory lock: replicas starting together
 * would otherwise race in CREATE TABLE IF NOT EXISTS, which PostgreSQL does not make atomic.
 */
async function createSchema(pool: Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock($1)", [SCHEMA_LOCK]);
    for (const statement of SCHEMA) await client.query(statement);
    await client.query("COMMIT");
  } catch (error) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

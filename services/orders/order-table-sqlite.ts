import Database from "better-sqlite3";
import { Order } from "../../generated/ts/shop/orders/v1/orders";
import type { KeyRow, OrderTable } from "./order-store";

/**
 * How long a statement waits for another connection's write lock before failing SQLITE_BUSY (ms).
 * better-sqlite3 runs statements synchronously, so the wait blocks the event loop: each statement
 * here is one small write (WAL mode lets readers go on), held for microseconds, so 2 s is far above
 * any real contention and short enough that a stuck writer fails calls rather than the process.
 */
export const SQLITE_BUSY_TIMEOUT_MS = 2_000;

/**
 * The orders table. An order is kept as its protobuf JSON (ts-proto's `Order.toJSON`, proto3's
 * JSON mapping), and only what is looked up by (customer, key, seq, state) gets a column: a field
 * added to the Order message is stored with no migration, and the JSON reads the same from any
 * language's protobuf library or the sqlite3 shell.
 */
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS orders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'placed')),
    claim_token TEXT,
    claimed_at_ms INTEGER NOT NULL,
    order_json TEXT,
    UNIQUE (customer_id, idempotency_key)
  );
  CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer_id, seq);
`;

interface Row {
  seq: number;
  state: "pending" | "placed";
  claim_token: string | null;
  claimed_at_ms: number;
  order_json: string | null;
}

/**
 * Puts the database in WAL mode. Replicas opening a new file at once race for it, and SQLite answers
 * the loser SQLITE_BUSY at once, without waiting out the busy timeout: it tries again, up to that timeout.
 */
function useWal(db: Database.Database): void {
  const until = Date.now() + SQLITE_BUSY_TIMEOUT_MS;
  for (;;) {
    try {
      db.pragma("journal_mode = WAL");
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== "SQLITE_BUSY" || Date.now() >= until) throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20); // the constructor is synchronous
    }
  }
}

/**
 * Orders in one SQLite file, shared by every process that opens it (WAL mode, a busy timeout), or
 * in memory for one process when `file` is ":memory:". AUTOINCREMENT keeps a seq from ever being
 * used twice, as PostgreSQL's identity columns do.
 */
export class SqliteOrderTable implements OrderTable {
  private readonly db: Database.Database;
  private readonly statements;

  constructor(file: string) {
    this.db = new Database(file, { timeout: SQLITE_BUSY_TIMEOUT_MS });
    useWal(this.db);
    this.db.exec(SCHEMA);
    this.statements = {
      read: this.db.prepare<[string, string], Row>(
        "SELECT seq, state, claim_token, claimed_at_ms, order_json FROM orders WHERE customer_id = ? AND idempotency_key = ?",
      ),
      claim: this.db.prepare<[string, string, string, number, number], { seq: number }>(
        `INSERT INTO orders (customer_id, idempotency_key, state, claim_token, claimed_at_ms) VALUES (?, ?, 'pending', ?, ?)
         ON CONFLICT (customer_id, idempotency_key) DO UPDATE
           SET claim_token = excluded.claim_token, claimed_at_ms = excluded.claimed_at_ms
           WHERE orders.state = 'pending' AND orders.claimed_at_ms < ?
         RETURNING seq`,
      ),
      complete: this.db.prepare<[string, number, string]>(
        "UPDATE orders SET state = 'placed', order_json = ?, claim_token = NULL WHERE seq = ? AND claim_token = ?",
      ),
      release: this.db.prepare<[number, string]>("DELETE FROM orders WHERE seq = ? AND claim_token = ?"),
      renew: this.db.prepare<[number, number, string]>(
        "UPDATE orders SET claimed_at_ms = ? WHERE seq = ? AND claim_token = ? AND state = 'pending'",
      ),
      placed: this.db.prepare<[number], { order_json: string }>("SELECT order_json FROM orders WHERE seq = ? AND state = 'placed'"),
      listAll: this.db.prepare<[], { order_json: string }>("SELECT order_json FROM orders WHERE state = 'placed' ORDER BY seq DESC"),
      listOne: this.db.prepare<[string], { order_json: string }>(
        "SELECT order_json FROM orders WHERE customer_id = ? AND state = 'placed' ORDER BY seq DESC",
      ),
    };
  }

  async read(customerId: string, idempotencyKey: string): Promise<KeyRow | undefined> {
    const row = this.statements.read.get(customerId, idempotencyKey);
    if (row === undefined) return undefined;
    if (row.state === "placed") return { seq: row.seq, state: "placed", order: parseOrder(row.order_json!) };
    return { seq: row.seq, state: "pending", token: row.claim_token!, claimedAtMs: row.claimed_at_ms };
  }

  async claim(customerId: string, idempotencyKey: string, token: string, nowMs: number, staleBeforeMs: number): Promise<number | undefined> {
    return this.statements.claim.get(customerId, idempotencyKey, token, nowMs, staleBeforeMs)?.seq;
  }

  async complete(seq: number, token: string, order: Order): Promise<boolean> {
    return this.statements.complete.run(JSON.stringify(Order.toJSON(order)), seq, token).changes === 1;
  }

  async renew(seq: number, token: string, nowMs: number): Promise<boolean> {
    return this.statements.renew.run(nowMs, seq, token).changes === 1;
  }

  async release(seq: number, token: string): Promise<void> {
    this.statements.release.run(seq, token);
  }

  async placed(seq: number): Promise<Order | undefined> {
    const row = this.statements.placed.get(seq);
    return row && parseOrder(row.order_json);
  }

  async list(customerId: string): Promise<Order[]> {
    const rows = customerId === "" ? this.statements.listAll.all() : this.statements.listOne.all(customerId);
    return rows.map((row) => parseOrder(row.order_json));
  }

  async close(): Promise<void> {
    this.db.close();
  }
}

function parseOrder(json: string): Order {
  return Order.fromJSON(JSON.parse(json));
}

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { status } from "@grpc/grpc-js";
import Database from "better-sqlite3";
import { MeshError } from "../../mesh/errors";
import { DEFAULT_ORDERS_STORE_URL, openOrderStore, parseOrderStoreUrl, storeLogFields } from "../../services/orders/order-store-url";
import { captureLog } from "../support/log-capture";
import { sharedOrderStoreBehaviour } from "./order-store-behaviour";

describe("order store on SQLite (one file shared by the replicas)", () => {
  const dirs: string[] = [];
  after(() => dirs.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));

  /** A file in a new temporary directory, created by the store. */
  const freshFile = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-orders-"));
    dirs.push(dir);
    return path.join(dir, "data", "orders.sqlite");
  };

  sharedOrderStoreBehaviour(async () => ({ kind: "sqlite", file: freshFile() }));

  it("creates the file and its directory, in WAL mode so that replicas read while one writes", async () => {
    const file = freshFile();
    const store = await openOrderStore({ kind: "sqlite", file }, { logger: captureLog().logger });
    try {
      assert.ok(fs.existsSync(file));
      const db = new Database(file, { readonly: true });
      try {
        assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
      } finally {
        db.close();
      }
    } finally {
      await store.close();
    }
  });
});

describe("ORDERS_STORE_URL (parseOrderStoreUrl)", () => {
  const invalid = (details: RegExp) => (error: unknown) =>
    error instanceof MeshError && error.code === status.INVALID_ARGUMENT && details.test(error.details);

  it(`defaults to ${DEFAULT_ORDERS_STORE_URL}, from the working directory, when unset or empty`, () => {
    for (const unset of [undefined, ""]) {
      assert.deepEqual(parseOrderStoreUrl(unset, "/srv/shop"), { kind: "sqlite", file: "/srv/shop/.data/orders.sqlite" });
    }
  });

  it("takes sqlite:<path>, relative to the working directory or absolute, and sqlite::memory:", () => {
    assert.deepEqual(parseOrderStoreUrl("sqlite:var/orders.db", "/srv/shop"), { kind: "sqlite", file: "/srv/shop/var/orders.db" });
    assert.deepEqual(parseOrderStoreUrl("sqlite:/var/lib/orders.db", "/srv/shop"), { kind: "sqlite", file: "/var/lib/orders.db" });
    assert.deepEqual(parseOrderStoreUrl("sqlite::memory:", "/srv/shop"), { kind: "sqlite", file: ":memory:" });
  });

  it("takes postgres:// and postgresql:// URLs as they are, and logs them without credentials", () => {
    for (const url of ["postgres://shop:secret@db.internal:5432/orders", "postgresql://shop:secret@db.internal:5432/orders"]) {
      const location = parseOrderStoreUrl(url);
      assert.deepEqual(location, { kind: "postgres", url });
      assert.deepEqual(storeLogFields(location), { store: "postgres", host: "db.internal:5432", database: "orders" });
    }
  });

  it("refuses anything else with INVALID_ARGUMENT naming the variable, never echoing the URL", () => {
    assert.throws(
      () => parseOrderStoreUrl("mysql://shop:secret@db/orders"),
      invalid(/^ORDERS_STORE_URL: must be sqlite:<path>, sqlite::memory: or postgres:\/\/user:password@host:port\/database, got "mysql:"$/),
    );
    assert.throws(() => parseOrderStoreUrl("orders.sqlite"), invalid(/^ORDERS_STORE_URL: must be .*, got no scheme$/));
    assert.throws(() => parseOrderStoreUrl("sqlite:"), invalid(/^ORDERS_STORE_URL: sqlite: needs a path, e.g. sqlite:\.data\/orders\.sqlite$/));
    assert.throws(() => parseOrderStoreUrl("postgres://shop:secret@[db/orders"), (error: unknown) => {
      assert.ok(invalid(/^ORDERS_STORE_URL: is not a valid postgres:\/\/ URL$/)(error));
      assert.doesNotMatch((error as MeshError).details, /secret/);
      return true;
    });
  });
});

import { requirePostgres } from "../support/postgres";
import type { PostgresServer } from "../support/postgres";
import { sharedOrderStoreBehaviour } from "./order-store-behaviour";

describe("order store on PostgreSQL (one database shared by the replicas)", function () {
  // initdb and the server's start take a few seconds on a busy machine.
  this.timeout(60_000);
  let server: PostgresServer | undefined;

  before(async function () {
    server = await requirePostgres(this);
  });
  after(() => server?.stop());

  // A new database for each test, on the one server of the suite.
  sharedOrderStoreBehaviour(async () => ({ kind: "postgres", url: await server!.createDatabase() }));
});

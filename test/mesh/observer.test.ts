import assert from "node:assert/strict";
import { Metadata, status } from "@grpc/grpc-js";
import { CatalogServiceClient, CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import { createClient } from "../../mesh/client";
import { methodOf } from "../../mesh/method-path";
import type { CallRecord, CallSink, CallStart } from "../../mesh/observer";
import { createServer } from "../../mesh/server";
import type { MeshServer } from "../../mesh/server";
import { catalogService } from "../../services/catalog/catalog-service";
import { callUnary, collectStream } from "../support/calls";
import { captureLog } from "../support/log-capture";
import { waitFor } from "../support/wait";

/** A sink that keeps what it is handed. */
function recordingSink(): CallSink & { started: CallStart[]; ended: CallRecord[] } {
  const started: CallStart[] = [];
  const ended: CallRecord[] = [];
  return { started, ended, callStarted: (call) => started.push(call), callEnded: (call) => ended.push(call) };
}

describe("call observers (one measurement per call, handed to every sink)", () => {
  const serverSink = recordingSink();
  const clientSink = recordingSink();
  let server: MeshServer;
  let catalog: CatalogServiceClient;
  let address: string;

  before(async () => {
    const { logger } = captureLog();
    server = createServer({ name: "catalog", logger, sinks: [serverSink] });
    server.addService(CatalogServiceService, catalogService());
    address = `127.0.0.1:${await server.listen()}`;
    catalog = createClient(CatalogServiceClient, address, { logger, sinks: [clientSink] });
  });
  after(async () => {
    catalog.close();
    await server.drain(1_000);
  });

  const byRequestId = (records: CallStart[], requestId: string) => records.filter((record) => record.requestId === requestId);

  it("hands each sink one start and one end per call, on both sides, with the same request id", async () => {
    const metadata = new Metadata();
    metadata.set("x-request-id", "observe-1");
    await callUnary(catalog.getProduct, catalog, { id: "sku-none" }, {}, metadata);
    await waitFor("the server's record", () => byRequestId(serverSink.ended, "observe-1").length === 1);
    assert.equal(byRequestId(serverSink.started, "observe-1").length, 1);
    assert.equal(byRequestId(clientSink.started, "observe-1").length, 1);
    assert.equal(byRequestId(clientSink.ended, "observe-1").length, 1);

    const [onServer] = byRequestId(serverSink.ended, "observe-1") as CallRecord[];
    const [onClient] = byRequestId(clientSink.ended, "observe-1") as CallRecord[];
    assert.deepEqual(
      { side: onServer.side, service: onServer.method.service, method: onServer.method.method, code: onServer.code },
      { side: "server", service: "shop.catalog.v1.CatalogService", method: "GetProduct", code: status.NOT_FOUND },
    );
    assert.match(onServer.peer, /^127\.0\.0\.1:\d+$/);
    assert.equal(onServer.details, 'product "sku-none" not found');
    assert.equal(onClient.side, "client");
    assert.equal(onClient.code, status.NOT_FOUND);
    assert.equal(onClient.peer, address, "the client records the endpoint that answered");
    assert.ok(onClient.durationMs >= onServer.durationMs, "the client's measure includes the server's");
  });

  it("measures a server stream once, when it ends", async () => {
    const metadata = new Metadata();
    metadata.set("x-request-id", "observe-stream");
    const { messages } = await collectStream(catalog.searchProducts({ query: "tea", limit: 0 }, metadata));
    assert.ok(messages.length > 1);
    await waitFor("the server's record", () => byRequestId(serverSink.ended, "observe-stream").length === 1);
    assert.equal(byRequestId(clientSink.ended, "observe-stream").length, 1);
  });

  it("parses a method path once: every call of a method shares one parsed path", async () => {
    await callUnary(catalog.getProduct, catalog, { id: "sku-1001" });
    await callUnary(catalog.getProduct, catalog, { id: "sku-1002" });
    await waitFor("two more records", () => serverSink.ended.filter((r) => r.method.method === "GetProduct").length >= 3);
    const methods = new Set([...serverSink.ended, ...clientSink.ended].filter((r) => r.method.method === "GetProduct").map((r) => r.method));
    assert.equal(methods.size, 1);
    assert.equal([...methods][0], methodOf("/shop.catalog.v1.CatalogService/GetProduct"));
  });
});

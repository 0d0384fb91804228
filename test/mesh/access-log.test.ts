import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { Metadata, credentials, status } from "@grpc/grpc-js";
import { HealthClient } from "../../generated/ts/health/v1/health";
import { CatalogServiceClient, CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import { createClient } from "../../mesh/client";
import { createServer } from "../../mesh/server";
import type { MeshServer } from "../../mesh/server";
import { catalogService } from "../../services/catalog/catalog-service";
import { callUnary, collectStream } from "../support/calls";
import { captureLog } from "../support/log-capture";
import type { CapturedLog } from "../support/log-capture";
import { waitFor } from "../support/wait";

describe("per-call logs", () => {
  let server: MeshServer;
  let serverLog: CapturedLog;
  let clientLog: CapturedLog;
  let catalog: CatalogServiceClient;

  before(async () => {
    serverLog = captureLog();
    clientLog = captureLog();
    server = createServer({ name: "catalog", logger: serverLog.logger });
    server.addService(CatalogServiceService, catalogService());
    catalog = createClient(CatalogServiceClient, `127.0.0.1:${await server.listen()}`, { logger: clientLog.logger });
  });

  after(async () => {
    catalog.close();
    await server.drain(1_000);
  });

  const callLines = (log: CapturedLog, requestId: string) => log.lines.filter((line) => line.requestId === requestId);

  it("writes one server line per call with service, method, code, duration, peer and the caller's request id", async () => {
    const metadata = new Metadata();
    metadata.set("x-request-id", "req-ok-1");
    const { headers } = await callUnary(catalog.getProduct, catalog, { id: "sku-1001" }, {}, metadata);
    assert.equal(headers?.get("x-request-id")[0], "req-ok-1");
    await waitFor("the server's line", () => callLines(serverLog, "req-ok-1").length === 1);
    const [line] = callLines(serverLog, "req-ok-1");
    assert.equal(line.service, "shop.catalog.v1.CatalogService");
    assert.equal(line.method, "GetProduct");
    assert.equal(line.code, "OK");
    assert.equal(line.server, "catalog");
    assert.equal(typeof line.durationMs, "number");
    assert.ok((line.durationMs as number) >= 0);
    assert.match(String(line.peer), /^127\.0\.0\.1:\d+$/);
    assert.equal(line.level, 30);
  });

  it("logs the failure code of a failed call, at info for a caller's mistake", async () => {
    const metadata = new Metadata();
    metadata.set("x-request-id", "req-missing-1");
    const { error } = await callUnary(catalog.getProduct, catalog, { id: "sku-none" }, {}, metadata);
    assert.equal(error?.code, status.NOT_FOUND);
    await waitFor("the server's line", () => callLines(serverLog, "req-missing-1").length === 1);
    assert.equal(callLines(serverLog, "req-missing-1")[0].code, "NOT_FOUND");
    assert.equal(callLines(serverLog, "req-missing-1")[0].level, 30);
  });

  it("logs a streaming call once, when it ends", async () => {
    const metadata = new Metadata();
    metadata.set("x-request-id", "req-stream-1");
    const { messages } = await collectStream(catalog.searchProducts({ query: "coffee", limit: 0 }, metadata));
    assert.ok(messages.length > 3);
    await waitFor("the server's line", () => callLines(serverLog, "req-stream-1").length === 1);
    assert.equal(callLines(serverLog, "req-stream-1")[0].method, "SearchProducts");
  });

  it("generates a request id when the caller sends none, and the client and server lines share it", async () => {
    const before = clientLog.lines.length;
    await callUnary(catalog.getProduct, catalog, { id: "sku-1003" });
    await waitFor("the client's line", () => clientLog.lines.length > before);
    const clientLine = clientLog.lines[clientLog.lines.length - 1];
    assert.equal(clientLine.msg, "outbound call");
    assert.equal(clientLine.method, "GetProduct");
    assert.equal(clientLine.code, "OK");
    assert.equal(clientLine.component, "client");
    assert.match(String(clientLine.target), /^127\.0\.0\.1:\d+$/);
    assert.equal(clientLine.peer, clientLine.target, "the endpoint that answered");
    assert.match(String(clientLine.requestId), /^[0-9a-f-]{36}$/);
    await waitFor("the server's line", () => callLines(serverLog, String(clientLine.requestId)).length === 1);
  });

  it("logs health checks at debug, not info: the control plane's probes would otherwise fill the log", async () => {
    const debugLog = captureLog("debug");
    const quiet = createServer({ name: "catalog", logger: serverLog.logger });
    const verbose = createServer({ name: "catalog", logger: debugLog.logger });
    try {
      for (const probed of [quiet, verbose]) {
        probed.addService(CatalogServiceService, catalogService());
        const health = new HealthClient(`127.0.0.1:${await probed.listen()}`, credentials.createInsecure());
        const metadata = new Metadata();
        metadata.set("x-request-id", `req-health-${probed === quiet ? "info" : "debug"}`);
        const { error } = await callUnary(health.check, health, { service: "" }, {}, metadata);
        assert.equal(error, undefined);
        health.close();
      }
      await waitFor("the debug line", () => callLines(debugLog, "req-health-debug").length === 1);
      const [line] = callLines(debugLog, "req-health-debug");
      assert.equal(line.service, "grpc.health.v1.Health");
      assert.equal(line.method, "Check");
      assert.equal(line.level, 20);
      assert.equal(callLines(serverLog, "req-health-info").length, 0, "no line at info");
    } finally {
      await Promise.all([quiet.drain(1_000), verbose.drain(1_000)]);
    }
  });
});

describe("stdout log lines (BatchedLines)", () => {
  const logger = path.resolve(__dirname, "..", "..", "mesh", "logger.js");
  /** Runs `body` in a fresh node process with `log`, the process's default stdout logger. */
  const runNode = (body: string) =>
    spawnSync(process.execPath, ["-e", `const log = require(${JSON.stringify(logger)}).createLogger({ name: "t" });\n${body}`], {
      encoding: "utf8",
      timeout: 20_000,
    });
  const numbered = (stdout: string) => stdout.trim().split("\n").map((text) => (JSON.parse(text) as { n: number }).n);

  it("writes every line, in order, when the process exits in the turn that logged them", () => {
    const run = runNode("for (let n = 0; n < 5000; n++) log.info({ n }, 'line'); process.exit(3);");
    assert.equal(run.status, 3, run.stderr);
    assert.deepEqual(numbered(run.stdout), Array.from({ length: 5000 }, (_, n) => n));
  });

  it("writes the lines logged before an uncaught exception, and lines logged across turns keep their order", () => {
    const run = runNode("log.info({ n: 0 }, 'a'); setImmediate(() => { log.info({ n: 1 }, 'b'); setTimeout(() => { log.info({ n: 2 }, 'c'); throw new Error('boom'); }, 5); });");
    assert.equal(run.status, 1);
    assert.match(run.stderr, /boom/);
    assert.deepEqual(numbered(run.stdout), [0, 1, 2]);
  });
});

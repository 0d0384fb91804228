import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { Metadata, status } from "@grpc/grpc-js";
import type { ServerUnaryCall, sendUnaryData } from "@grpc/grpc-js";
import { CatalogServiceClient, CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import type { GetProductRequest, GetProductResponse } from "../../generated/ts/shop/catalog/v1/catalog";
import { createClient } from "../../mesh/client";
import { parseMeshConfig, policyFor } from "../../mesh/controlplane/config";
import { serviceConfigFor } from "../../mesh/controlplane/service-config";
import { MeshError } from "../../mesh/errors";
import { createServer } from "../../mesh/server";
import type { MeshServer } from "../../mesh/server";
import { catalogService } from "../../services/catalog/catalog-service";
import { callUnary } from "../support/calls";
import { captureLog } from "../support/log-capture";
import type { CapturedLog } from "../support/log-capture";

const CATALOG = "shop.catalog.v1.CatalogService";
const PRODUCT = { id: "sku-1001", name: "Widget", priceCents: 100, currency: "EUR", tags: [] } as unknown as GetProductResponse["product"];

/** One attempt as a server saw it. */
interface Attempt {
  at: number;
}

type Handler = (call: ServerUnaryCall<GetProductRequest, GetProductResponse>, callback: sendUnaryData<GetProductResponse>) => void;

/**
 * Calls of the mesh config's retry and hedging policies, delivered as a service config
 * (serviceConfigFor) to a client of a non-xDS target and executed by grpc-js (gRFC A6).
 */
describe("retries and hedging from the mesh config, as service config (executed by grpc-js)", () => {
  let log: CapturedLog;
  const servers: MeshServer[] = [];
  const clients: { close(): void }[] = [];

  beforeEach(() => {
    log = captureLog("error");
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await Promise.all(servers.splice(0).map((server) => server.drain(200)));
  });

  async function catalogWith(handler: Handler): Promise<{ address: string; attempts: Attempt[] }> {
    const attempts: Attempt[] = [];
    const server = createServer({ name: "catalog", logger: log.logger, loadShedding: false });
    server.addService(CatalogServiceService, {
      ...catalogService(),
      getProduct: (call: ServerUnaryCall<GetProductRequest, GetProductResponse>, callback: sendUnaryData<GetProductResponse>) => {
        attempts.push({ at: Date.now() });
        handler(call, callback);
      },
    });
    servers.push(server);
    return { address: `127.0.0.1:${await server.listen()}`, attempts };
  }

  function clientFor(target: string, yaml: string): CatalogServiceClient {
    const serviceConfig = serviceConfigFor(policyFor(parseMeshConfig(yaml), "catalog"), [CATALOG]);
    const client = createClient(CatalogServiceClient, target, { logger: log.logger, serviceConfig });
    clients.push(client);
    return client;
  }

  const failWith = (code: status, trailers: Record<string, string> = {}): Handler => (_call, callback) => {
    const metadata = new Metadata();
    for (const [key, value] of Object.entries(trailers)) metadata.set(key, value);
    callback(new MeshError(code, "injected", { metadata }));
  };

  const RETRY_YAML = "services:\n  catalog:\n    idempotent: true\n    retry: { retry_on: [unavailable], num_retries: 3, base_interval_ms: 10 }\n";

  it("retries an idempotent method's UNAVAILABLE up to num_retries", async () => {
    const catalog = await catalogWith(failWith(status.UNAVAILABLE));
    const client = clientFor(catalog.address, RETRY_YAML);
    const { error } = await callUnary(client.getProduct, client, { id: "sku-1001" });
    assert.equal(error?.code, status.UNAVAILABLE);
    assert.equal(catalog.attempts.length, 4, "the first attempt and 3 retries");
  });

  it("never retries a call once the server has sent its response headers (gRFC A6's commit)", async () => {
    const catalog = await catalogWith((call, callback) => {
      call.sendMetadata(new Metadata());
      setTimeout(() => callback(new MeshError(status.UNAVAILABLE, "failed after the headers")), 20);
    });
    const client = clientFor(catalog.address, RETRY_YAML);
    const { error } = await callUnary(client.getProduct, client, { id: "sku-1001" });
    assert.equal(error?.code, status.UNAVAILABLE);
    assert.equal(catalog.attempts.length, 1, "committed with the headers: no retry");
  });

  it("gives a method marked idempotent: false no retry even when its service has one", async () => {
    const catalog = await catalogWith(failWith(status.UNAVAILABLE));
    const client = clientFor(catalog.address, `${RETRY_YAML}    methods:\n      GetProduct: { idempotent: false }\n`);
    await callUnary(client.getProduct, client, { id: "sku-1001" });
    assert.equal(catalog.attempts.length, 1);
  });

  it("honours grpc-retry-pushback-ms: waits that long before the retry, and a negative value means no retry", async () => {
    const waited = await catalogWith(failWith(status.UNAVAILABLE, { "grpc-retry-pushback-ms": "300" }));
    const client = clientFor(waited.address, RETRY_YAML.replace("num_retries: 3", "num_retries: 1"));
    await callUnary(client.getProduct, client, { id: "sku-1001" });
    assert.equal(waited.attempts.length, 2);
    const gap = waited.attempts[1].at - waited.attempts[0].at;
    assert.ok(gap >= 290, `the retry came ${gap} ms after the first attempt`);

    const refused = await catalogWith(failWith(status.UNAVAILABLE, { "grpc-retry-pushback-ms": "-1" }));
    const other = clientFor(refused.address, RETRY_YAML);
    await callUnary(other.getProduct, other, { id: "sku-1001" });
    assert.equal(refused.attempts.length, 1, "a negative pushback stops the retries");
  });

  it("throttles retries when most calls fail (retry_throttling), down to one attempt per call", async () => {
    const catalog = await catalogWith(failWith(status.UNAVAILABLE));
    const client = clientFor(catalog.address, `${RETRY_YAML}    retry_throttling: { max_tokens: 4, token_ratio: 0.1 }\n`);
    for (let i = 0; i < 10; i += 1) await callUnary(client.getProduct, client, { id: "sku-1001" });
    // Unthrottled, 10 calls make 40 attempts. Each failure costs a token; retries stop at half the tokens.
    assert.ok(catalog.attempts.length < 15, `${catalog.attempts.length} attempts for 10 calls`);
  });

  it("hedges an idempotent method: a second copy after delay_ms, the first answer wins", async () => {
    let calls = 0;
    // Every other attempt stalls 1 s; the hedge 50 ms later answers at once.
    const catalog = await catalogWith((_call, callback) => {
      calls += 1;
      if (calls % 2 === 1) setTimeout(() => callback(null, { product: PRODUCT }), 1_000);
      else callback(null, { product: PRODUCT });
    });
    const client = clientFor(
      catalog.address,
      "services:\n  catalog:\n    idempotent: true\n    methods:\n      GetProduct: { hedging: { max_attempts: 2, delay_ms: 50 } }\n",
    );
    const startedAt = Date.now();
    const outcomes = [];
    for (let i = 0; i < 3; i += 1) outcomes.push(await callUnary(client.getProduct, client, { id: "sku-1001" }));
    const tookMs = Date.now() - startedAt;
    assert.deepEqual(outcomes.map((outcome) => outcome.error?.code), [undefined, undefined, undefined]);
    assert.ok(tookMs < 900, `3 hedged calls took ${tookMs} ms (one stalled attempt alone takes 1000 ms)`);
    assert.ok(catalog.attempts.length >= 6, `every call was sent twice (${catalog.attempts.length} attempts)`);
  });

  it("refuses retry or hedging on a method not marked idempotent, naming the field", () => {
    assert.throws(
      () => parseMeshConfig("services:\n  orders:\n    retry: { retry_on: [unavailable], num_retries: 2 }\n"),
      /services\.orders\.retry: needs idempotent: true/,
    );
    assert.throws(
      () => parseMeshConfig("services:\n  orders:\n    methods:\n      PlaceOrder: { hedging: { max_attempts: 2, delay_ms: 10 } }\n"),
      /services\.orders\.methods\.PlaceOrder\.hedging: needs idempotent: true/,
    );
  });

  it("lets an explicit deadline bound every attempt (a retry never outlives the call)", async () => {
    const catalog = await catalogWith((_call, callback) => {
      void sleep(60).then(() => callback(new MeshError(status.UNAVAILABLE, "slow failure")));
    });
    const client = clientFor(catalog.address, RETRY_YAML);
    const startedAt = Date.now();
    const { error } = await callUnary(client.getProduct, client, { id: "sku-1001" }, { deadline: Date.now() + 150 });
    assert.equal(error?.code, status.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - startedAt < 400, "ended at the deadline");
    assert.ok(catalog.attempts.length <= 3, `${catalog.attempts.length} attempts within 150 ms`);
  });
});

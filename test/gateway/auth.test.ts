import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { SignJWT, generateKeyPair, importJWK } from "jose";
import type { JWK } from "jose";
import { parse as parseYaml } from "yaml";
import { Metadata } from "@grpc/grpc-js";
import { CLAIM_METADATA, GatewayGuard } from "../../cli/gateway/auth";
import { loadGatewayConfig, parseGatewayConfig } from "../../cli/gateway/config";
import type { GatewayConfig } from "../../cli/gateway/config";
import { DEV_AUDIENCE, DEV_ISSUER, DEV_SIGNING_KEY_FILE, ensureDevKeys, mintDevToken } from "../../cli/gateway/dev-keys";
import { CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import type { CatalogServiceServer } from "../../generated/ts/shop/catalog/v1/catalog";
import { createServer } from "../../mesh";
import { catalogService } from "../../services/catalog/catalog-service";
import { startShop } from "../support/shop";
import { startTestGateway } from "./gateway-fixture";
import type { Shop } from "../support/shop";

/**
 * Auth and limits at the edge, through a real gateway in front of the in-process shop: bearer
 * tokens verified against a JWKS file (jose), per-route scopes, claims as metadata, per-client
 * token buckets, and the config's refusals naming the field.
 */

const ROUTES = `
routes:
  "shop.catalog.v1.CatalogService/*": { auth: none }
  "shop.orders.v1.OrderService/PlaceOrder": { auth: required, scopes: [orders:write] }
  "shop.orders.v1.OrderService/*": { auth: required, scopes: [orders:read] }
`;

describe("gateway auth and rate limits (cli/gateway/auth.ts)", function () {
  this.timeout(30_000);
  let shop: Shop;
  let dir: string;
  let jwksFile: string;

  before(async () => {
    shop = await startShop();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-gateway-auth-"));
    jwksFile = await ensureDevKeys(dir);
  });
  after(async () => {
    await shop.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function withGateway(configYaml: string, test: (url: string) => Promise<void>, now?: () => number): Promise<void> {
    const config: GatewayConfig = parseGatewayConfig(parseYamlText(configYaml));
    const gateway = await startTestGateway(shop.log.logger, { catalog: shop.catalogAddress, orders: shop.ordersAddress }, { guard: new GatewayGuard(config, { now }) });
    try {
      await test(gateway.url);
    } finally {
      await gateway.close();
    }
  }

  const jwt = () => `jwt: { jwks_file: ${JSON.stringify(jwksFile)}, issuer: ${DEV_ISSUER}, audience: ${DEV_AUDIENCE} }\n`;
  const token = (scopes: string[], subject = "alice", ttlS = 300) => mintDevToken({ subject, scopes, ttlS, dir });
  const order = (key: string) => JSON.stringify({ customerId: "cust-auth", items: [{ productId: "sku-1001", quantity: 1 }], idempotencyKey: key });

  it("lets anyone read the catalog, and asks a bearer token with orders:write of PlaceOrder: 401, 403, then 200", async () => {
    await withGateway(jwt() + ROUTES, async (url) => {
      assert.equal((await fetch(`${url}/v1/products/sku-1001`)).status, 200);
      const anonymous = await fetch(`${url}/v1/orders`, { method: "POST", body: order("auth-1") });
      assert.equal(anonymous.status, 401);
      assert.match(anonymous.headers.get("www-authenticate") ?? "", /^Bearer/);
      assert.deepEqual(await anonymous.json(), { code: 16, message: "a bearer token is required (Authorization: Bearer <token>)", details: [] });
      const reader = await fetch(`${url}/v1/orders`, { method: "POST", body: order("auth-1"), headers: { authorization: `Bearer ${await token(["orders:read"])}` } });
      assert.equal(reader.status, 403);
      assert.equal(((await reader.json()) as { message: string }).message, "shop.orders.v1.OrderService/PlaceOrder needs scope orders:write");
      const writer = await fetch(`${url}/v1/orders`, { method: "POST", body: order("auth-1"), headers: { authorization: `Bearer ${await token(["orders:write"])}` } });
      assert.equal(writer.status, 200, await writer.clone().text());
    });
  });

  it("refuses an expired token, one signed by another key, one for another audience, and a malformed header, with 401", async () => {
    await withGateway(jwt() + ROUTES, async (url) => {
      const { privateKey } = await generateKeyPair("ES256");
      const foreign = await new SignJWT({ scope: "orders:read" }).setProtectedHeader({ alg: "ES256", kid: "other" }).setIssuer(DEV_ISSUER).setAudience(DEV_AUDIENCE).setExpirationTime("5m").sign(privateKey);
      const expired = await mintDevToken({ subject: "alice", scopes: ["orders:read"], ttlS: 1, dir });
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      const cases: Array<[string, string, RegExp]> = [
        ["expired", `Bearer ${expired}`, /^invalid bearer token: "exp" claim timestamp check failed/],
        ["another key", `Bearer ${foreign}`, /^invalid bearer token: /],
        ["not a token", "Bearer not.a.token", /^invalid bearer token: /],
        ["malformed header", "Basic dXNlcjpwYXNz", /^the Authorization header must be `Bearer <token>`$/],
      ];
      for (const [what, authorization, message] of cases) {
        const response = await fetch(`${url}/v1/orders?customerId=cust-auth`, { headers: { authorization } });
        assert.equal(response.status, 401, what);
        assert.match(((await response.json()) as { message: string }).message, message, what);
      }
      const wrongAudience = await withAudience("someone-else");
      const response = await fetch(`${url}/v1/orders?customerId=cust-auth`, { headers: { authorization: `Bearer ${wrongAudience}` } });
      assert.equal(response.status, 401);
      assert.match(((await response.json()) as { message: string }).message, /"aud" claim/);
    });
  });

  it("passes the token's subject, scopes and issuer to the service as metadata, never the token", async () => {
    // A catalog whose GetProduct records the metadata it was called with.
    const seen: Metadata[] = [];
    const recording = createServer({ name: "catalog", logger: shop.log.logger });
    const catalog = catalogService();
    const server: CatalogServiceServer = {
      ...catalog,
      getProduct: (call, callback) => {
        seen.push(call.metadata);
        catalog.getProduct(call, callback);
      },
    };
    recording.addService(CatalogServiceService, server);
    const catalogAddress = `127.0.0.1:${await recording.listen()}`;
    const gateway = await startTestGateway(shop.log.logger, { catalog: catalogAddress }, { guard: new GatewayGuard(parseGatewayConfig(parseYamlText(jwt() + ROUTES))) });
    const url = gateway.url;
    try {
      const bearer = await token(["orders:read", "catalog:read"], "bob");
      const response = await fetch(`${url}/v1/products/sku-1001`, { headers: { authorization: `Bearer ${bearer}`, "x-request-id": "auth-meta-1" } });
      assert.equal(response.status, 200);
      const metadata = seen.at(-1)!;
      assert.deepEqual(
        [CLAIM_METADATA.subject, CLAIM_METADATA.scopes, CLAIM_METADATA.issuer, "x-request-id"].map((key) => metadata.get(key)[0]),
        ["bob", "orders:read catalog:read", DEV_ISSUER, "auth-meta-1"],
      );
      assert.deepEqual(metadata.get("authorization"), [], "the token itself stays at the edge");
      const anonymous = await fetch(`${url}/v1/products/sku-1001`);
      assert.equal(anonymous.status, 200);
      assert.deepEqual(seen.at(-1)!.get(CLAIM_METADATA.subject), [], "no token, no claims");
    } finally {
      await gateway.close();
      await recording.drain(200);
    }
  });

  it("answers 429 with Retry-After once a client's bucket is empty, and again after it refills; other clients are not held back", async () => {
    let now = 1_000_000;
    await withGateway(jwt() + ROUTES + "rate_limit: { requests_per_second: 2, burst: 3 }\n", async (url) => {
      const alice = `Bearer ${await token(["orders:read"], "alice")}`;
      const carol = `Bearer ${await token(["orders:read"], "carol")}`;
      const call = (authorization: string) => fetch(`${url}/v1/orders?customerId=cust-auth`, { headers: { authorization } });
      for (let i = 0; i < 3; i += 1) assert.equal((await call(alice)).status, 200, `call ${i + 1} of the burst`);
      const refused = await call(alice);
      assert.equal(refused.status, 429);
      assert.equal(refused.headers.get("retry-after"), "1");
      assert.equal(((await refused.json()) as { code: number }).code, 8);
      assert.equal((await call(carol)).status, 200, "another subject has its own bucket");
      now += 500; // half a second: one token back at 2 per second
      assert.equal((await call(alice)).status, 200);
      assert.equal((await call(alice)).status, 429);
    }, () => now);
  });

  it("refuses a bad config naming the file and the field", () => {
    const file = path.join(dir, "gateway.yaml");
    const cases: Array<[string, RegExp]> = [
      ['routes:\n  "shop.orders.v1.OrderService/*": { auth: yes }\n', /routes\["shop\.orders\.v1\.OrderService\/\*"\]\.auth: must be one of none, required, got "yes"/],
      ['routes:\n  "orders": { auth: none }\n', /routes\["orders"\]: must be "package\.Service\/Method", "package\.Service\/\*" or "\*"/],
      ["rate_limit: { burst: 3 }\n", /rate_limit\.requests_per_second: is required/],
      ["jwt: { issuer: x }\n", /jwt: needs one of jwks_file or jwks_url/],
      ["http_port: 70000\n", /http_port/],
      ["colour: blue\n", /colour/],
    ];
    for (const [yaml, message] of cases) {
      fs.writeFileSync(file, yaml);
      assert.throws(() => loadGatewayConfig(file), (error: Error) => error.message.startsWith(`gateway config ${file}: `) && message.test(error.message), yaml);
    }
    assert.doesNotThrow(() => loadGatewayConfig(path.join(__dirname, "..", "..", "..", "deploy", "gateway.yaml")));
  });

  /** A token signed by the development key (so only the audience is wrong) for `audience`. */
  async function withAudience(audience: string): Promise<string> {
    const jwk = JSON.parse(fs.readFileSync(path.join(dir, DEV_SIGNING_KEY_FILE), "utf8")) as JWK;
    return new SignJWT({ scope: "orders:read" })
      .setProtectedHeader({ alg: "ES256", kid: jwk.kid })
      .setSubject("alice")
      .setIssuer(DEV_ISSUER)
      .setAudience(audience)
      .setExpirationTime("5m")
      .sign(await importJWK(jwk, "ES256"));
  }
});

function parseYamlText(text: string): unknown {
  return parseYaml(text) ?? {};
}

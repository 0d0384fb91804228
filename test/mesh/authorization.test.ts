import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { Client, credentials, ServerInterceptingCall, status } from "@grpc/grpc-js";
import type { ServerInterceptor, ServiceError } from "@grpc/grpc-js";
import { parse as parseYaml } from "yaml";
import { HealthCheckResponse_ServingStatus as Serving, HealthClient } from "../../generated/ts/health/v1/health";
import type { HealthCheckResponse } from "../../generated/ts/health/v1/health";
import { CatalogServiceClient, CatalogServiceService, GetProductRequest } from "../../generated/ts/shop/catalog/v1/catalog";
import type { GetProductResponse, ListProductsRequest, ListProductsResponse } from "../../generated/ts/shop/catalog/v1/catalog";
import { authorize, loadAuthorizationPolicy, parseAuthorizationPolicy } from "../../mesh/authorization";
import type { AuthorizationPolicy } from "../../mesh/authorization";
import { createClient } from "../../mesh/client";
import { parseMeshConfig, policyFor } from "../../mesh/controlplane/config";
import { unary } from "../../mesh/handler";
import { createMeshCa, issueWorkloadCertificate, OPENSSL, workloadFiles } from "../../mesh/identity";
import type { MeshCa, WorkloadCertificate } from "../../mesh/identity";
import { createServer } from "../../mesh/server";
import { catalogService } from "../../services/catalog/catalog-service";
import { callUnary } from "../support/calls";
import { captureLog } from "../support/log-capture";

const run = promisify(execFile);
const TRUST_DOMAIN = "protomesh.test";
const DEADLINE_MS = 10_000;
const CATALOG = "/shop.catalog.v1.CatalogService";
const GET_PRODUCT = `${CATALOG}/GetProduct`;
const LIST_PRODUCTS = `${CATALOG}/ListProducts`;
const spiffe = (service: string, trustDomain = TRUST_DOMAIN) => `spiffe://${trustDomain}/service/${service}`;

/** orders and gateway may read products; gateway may not list them (deny wins); nobody else may call. */
const POLICY_BLOCK = {
  rules: [
    { action: "allow", callers: ["orders", "gateway"], methods: ["GetProduct", LIST_PRODUCTS] },
    { action: "deny", callers: ["gateway"], methods: ["ListProducts"] },
  ],
};

/**
 * A certificate signed by the mesh CA that carries no SPIFFE ID (a DNS SAN only): it passes the
 * STRICT handshake, and its caller has no identity. The kit never issues one, so openssl makes it.
 */
async function certificateWithoutSpiffeId(ca: MeshCa, dir: string): Promise<{ certFile: string; keyFile: string }> {
  const keyFile = path.join(dir, "anonymous.key");
  const csrFile = path.join(dir, "anonymous.csr");
  const certFile = path.join(dir, "anonymous.crt");
  const extFile = path.join(dir, "anonymous.ext");
  await writeFile(
    extFile,
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:anonymous\n",
  );
  await run(OPENSSL, ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyFile, "-out", csrFile, "-subj", "/CN=anonymous"]);
  await run(OPENSSL, [
    "x509", "-req", "-in", csrFile, "-CA", ca.certFile, "-CAkey", ca.keyFile, "-set_serial", "4242",
    "-days", "1", "-sha256", "-extfile", extFile, "-out", certFile,
  ]);
  return { certFile, keyFile };
}

describe("authorization", function () {
  this.timeout(20_000);
  let dir: string;
  let ca: MeshCa;
  const certs: Record<string, WorkloadCertificate> = {};
  let anonymous: { certFile: string; keyFile: string };
  const log = captureLog();
  const cleanups: (() => unknown)[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "protomesh-authz-"));
    ca = await createMeshCa({ dir: path.join(dir, "ca"), trustDomain: TRUST_DOMAIN });
    for (const service of ["catalog", "orders", "gateway", "billing"]) {
      certs[service] = await issueWorkloadCertificate(ca, { service, dir: path.join(dir, service) });
    }
    anonymous = await certificateWithoutSpiffeId(ca, dir);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /**
   * A catalog over mTLS with POLICY_BLOCK, whose GetProduct and ListProducts count their calls, and
   * an application interceptor that counts the calls it sees.
   */
  async function catalog() {
    const handled = { getProduct: 0, listProducts: 0, intercepted: 0 };
    // grpc-js builds every call's whole interceptor chain up front; what an application interceptor
    // sees of a call starts with its metadata.
    const counting: ServerInterceptor = (_method, call) =>
      new ServerInterceptingCall(call, {
        start: (next) =>
          next({
            onReceiveMetadata: (metadata, nextMetadata) => {
              handled.intercepted += 1;
              nextMetadata(metadata);
            },
          }),
      });
    const server = createServer({
      name: "catalog",
      logger: log.logger,
      tls: workloadFiles(ca, certs.catalog),
      authorization: POLICY_BLOCK,
      interceptors: [counting],
      loadShedding: false,
    });
    server.addService(CatalogServiceService, {
      ...catalogService(),
      getProduct: unary<GetProductRequest, GetProductResponse>((request) => {
        handled.getProduct += 1;
        return { product: { id: request.id, name: "authorized", description: "", priceCents: 1, currency: "EUR", tags: [] } };
      }),
      listProducts: unary<ListProductsRequest, ListProductsResponse>(() => {
        handled.listProducts += 1;
        return { products: [], nextPageToken: "", totalSize: 0 };
      }),
    });
    const port = await server.listen();
    cleanups.push(() => server.drain(1_000));
    return { server, port, handled };
  }

  /** A catalog client presenting `workload`'s certificate; it checks the server is the catalog. */
  function clientOf(port: number, workload: { certFile: string; keyFile: string }) {
    const made = createClient(CatalogServiceClient, "catalog", {
      logger: log.logger,
      defaultDeadlineMs: DEADLINE_MS,
      fallbackTarget: `127.0.0.1:${port}`,
      tls: workloadFiles(ca, workload),
    });
    cleanups.push(() => made.close());
    return made;
  }

  const getProduct = (client: CatalogServiceClient) => callUnary(client.getProduct, client, { id: "sku-1" });
  const listProducts = (client: CatalogServiceClient) => callUnary(client.listProducts, client, { pageSize: 10, pageToken: "" });

  describe("over mTLS", () => {
    it("lets orders call GetProduct and ListProducts, which an allow rule names", async () => {
      const { port, handled } = await catalog();
      const orders = clientOf(port, certs.orders);
      const got = await getProduct(orders);
      assert.equal(got.error, undefined, got.error?.details);
      assert.equal(got.response?.product?.name, "authorized");
      const listed = await listProducts(orders);
      assert.equal(listed.error, undefined, listed.error?.details);
      assert.deepEqual(handled, { getProduct: 1, listProducts: 1, intercepted: 2 });
    });

    it("refuses gateway ListProducts with PERMISSION_DENIED when a deny rule matches, though an allow rule does too", async () => {
      const { port, handled } = await catalog();
      const gateway = clientOf(port, certs.gateway);
      const listed = await listProducts(gateway);
      assert.equal(listed.error?.code, status.PERMISSION_DENIED);
      assert.equal(listed.error?.details, `${spiffe("gateway")} may not call ${LIST_PRODUCTS} (denied by rules[1])`);
      // Still allowed what no deny rule names.
      assert.equal((await getProduct(gateway)).error, undefined);
      // Neither the handler nor the application's interceptor saw the refused call.
      assert.deepEqual(handled, { getProduct: 1, listProducts: 0, intercepted: 1 });
    });

    it("refuses a caller no rule names with PERMISSION_DENIED (default deny), logged on the call's line", async () => {
      const { port, handled } = await catalog();
      const billing = clientOf(port, certs.billing);
      const got = await getProduct(billing);
      assert.equal(got.error?.code, status.PERMISSION_DENIED);
      assert.equal(got.error?.details, `${spiffe("billing")} may not call ${GET_PRODUCT} (no rule allows it)`);
      assert.deepEqual(handled, { getProduct: 0, listProducts: 0, intercepted: 0 });
      const line = log.lines.find((entry) => entry.msg === "call" && entry.method === "GetProduct" && entry.code === "PERMISSION_DENIED");
      assert.ok(line, "the refused call has its log line");
    });

    it("refuses a caller whose mesh CA certificate carries no SPIFFE ID with UNAUTHENTICATED", async () => {
      const { port, handled } = await catalog();
      const nobody = clientOf(port, anonymous);
      const got = await getProduct(nobody);
      assert.equal(got.error?.code, status.UNAUTHENTICATED, got.error?.details);
      assert.match(got.error?.details ?? "", /needs a caller identity/);
      assert.deepEqual(handled, { getProduct: 0, listProducts: 0, intercepted: 0 });
    });

    it("always answers the health check, for a caller no rule names and for one without an identity", async () => {
      const { port } = await catalog();
      for (const workload of [certs.billing, anonymous]) {
        const health = createClient(HealthClient, "catalog", {
          logger: log.logger,
          defaultDeadlineMs: DEADLINE_MS,
          fallbackTarget: `127.0.0.1:${port}`,
          tls: workloadFiles(ca, workload),
        });
        cleanups.push(() => health.close());
        const checked = await callUnary<{ service: string }, HealthCheckResponse>(health.check, health, { service: "" });
        assert.equal(checked.error, undefined, checked.error?.details);
        assert.equal(checked.response?.status, Serving.SERVING);
      }
    });

    it("answers other spellings of an allowed path UNIMPLEMENTED before any handler: they cannot bypass a rule", async () => {
      const { port, handled } = await catalog();
      const [caPem, keyPem, certPem] = await Promise.all([readFile(ca.certFile), readFile(certs.orders.keyFile), readFile(certs.orders.certFile)]);
      const raw = new Client(`127.0.0.1:${port}`, credentials.createSsl(caPem, keyPem, certPem, { checkServerIdentity: () => undefined }), {
        "grpc.ssl_target_name_override": "catalog",
      });
      cleanups.push(() => raw.close());
      const call = (method: string) =>
        new Promise<ServiceError | null>((resolve) => {
          raw.makeUnaryRequest(
            method,
            (request: GetProductRequest) => Buffer.from(GetProductRequest.encode(request).finish()),
            (bytes: Buffer) => bytes,
            { id: "sku-1" },
            { deadline: Date.now() + DEADLINE_MS },
            (error) => resolve(error),
          );
        });
      const oddForms = [
        `/${GET_PRODUCT}`,
        `${GET_PRODUCT}/`,
        "/shop.catalog.v1.catalogservice/GetProduct",
        `${CATALOG}/getproduct`,
        `${CATALOG}/Get%50roduct`,
        "/shop.catalog.v1.CatalogService%2FGetProduct",
        `${GET_PRODUCT}?x=1`,
        `${CATALOG}/./GetProduct`,
      ];
      for (const form of oddForms) {
        const error = await call(form);
        assert.equal(error?.code, status.UNIMPLEMENTED, `${form}: ${error?.details}`);
      }
      assert.deepEqual(handled, { getProduct: 0, listProducts: 0, intercepted: 0 });
      // The exact path from the same client is served.
      assert.equal(await call(GET_PRODUCT), null);
      assert.equal(handled.getProduct, 1);
    });

    it("refuses authorization without tls, and a bad block, naming the option", () => {
      assert.throws(() => createServer({ name: "catalog", logger: log.logger, authorization: POLICY_BLOCK }), /catalog: authorization needs tls/);
      assert.throws(
        () =>
          createServer({
            name: "catalog",
            logger: log.logger,
            tls: workloadFiles(ca, certs.catalog),
            authorization: { rules: [{ action: "permit", callers: ["orders"], methods: ["*"] }] },
          }),
        /authorization\.rules\[0\]\.action: must be allow or deny/,
      );
    });
  });

  describe("authorize()", () => {
    const policy = parseAuthorizationPolicy(POLICY_BLOCK, "authorization");

    it("allows a caller an allow rule names, for the methods it names by name or by path", () => {
      assert.deepEqual(authorize(policy, GET_PRODUCT, spiffe("orders"), TRUST_DOMAIN), { outcome: "allow" });
      assert.deepEqual(authorize(policy, LIST_PRODUCTS, spiffe("orders"), TRUST_DOMAIN), { outcome: "allow" });
    });

    it("lets a deny rule win over an allow rule", () => {
      const decision = authorize(policy, LIST_PRODUCTS, spiffe("gateway"), TRUST_DOMAIN);
      assert.equal(decision.outcome, "deny");
      assert.equal(decision.outcome === "deny" && decision.code, status.PERMISSION_DENIED);
    });

    it("denies what no allow rule matches: another caller, another method, or any call under an empty policy", () => {
      assert.equal(authorize(policy, GET_PRODUCT, spiffe("billing"), TRUST_DOMAIN).outcome, "deny");
      assert.equal(authorize(policy, `${CATALOG}/SearchProducts`, spiffe("orders"), TRUST_DOMAIN).outcome, "deny");
      assert.equal(authorize(parseAuthorizationPolicy({ rules: [] }, "authorization"), GET_PRODUCT, spiffe("orders")).outcome, "deny");
    });

    it("answers a call without a peer identity UNAUTHENTICATED", () => {
      const decision = authorize(policy, GET_PRODUCT, undefined, TRUST_DOMAIN);
      assert.equal(decision.outcome, "unauthenticated");
      assert.equal(decision.outcome === "unauthenticated" && decision.code, status.UNAUTHENTICATED);
    });

    it("never refuses the mesh's own services (health, reflection, ORCA), with or without an identity", () => {
      for (const method of [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/xds.service.orca.v3.OpenRcaService/StreamCoreMetrics",
      ]) {
        assert.equal(authorize(policy, method, undefined, TRUST_DOMAIN).outcome, "allow", method);
        assert.equal(authorize(policy, method, spiffe("billing"), TRUST_DOMAIN).outcome, "allow", method);
      }
    });

    it("matches a service name in the server's trust domain only, or in any trust domain when none is known", () => {
      assert.equal(authorize(policy, GET_PRODUCT, spiffe("orders", "elsewhere.test"), TRUST_DOMAIN).outcome, "deny");
      assert.equal(authorize(policy, GET_PRODUCT, spiffe("orders", "elsewhere.test")).outcome, "allow");
      assert.equal(authorize(policy, GET_PRODUCT, "spiffe://elsewhere.test/service/orders/extra").outcome, "deny");
    });

    it("matches full SPIFFE IDs, any caller with \"*\", every method of one service with /<service>/*, and a method name in any service", () => {
      const wide: AuthorizationPolicy = parseAuthorizationPolicy(
        {
          rules: [
            { action: "allow", callers: ["spiffe://other.test/service/admin"], methods: ["*"] },
            { action: "allow", callers: ["*"], methods: [`${CATALOG}/*`] },
            { action: "allow", callers: ["orders"], methods: ["Charge"] },
          ],
        },
        "authorization",
      );
      assert.equal(authorize(wide, "/shop.billing.v1.BillingService/Refund", "spiffe://other.test/service/admin", TRUST_DOMAIN).outcome, "allow");
      assert.equal(authorize(wide, `${CATALOG}/SearchProducts`, spiffe("anyone"), TRUST_DOMAIN).outcome, "allow");
      assert.equal(authorize(wide, "/shop.billing.v1.BillingService/Refund", spiffe("anyone"), TRUST_DOMAIN).outcome, "deny");
      assert.equal(authorize(wide, "/shop.billing.v1.BillingService/Charge", spiffe("orders"), TRUST_DOMAIN).outcome, "allow");
      assert.equal(authorize(wide, `${CATALOG}/SearchProducts`, undefined, TRUST_DOMAIN).outcome, "unauthenticated");
    });

    it("decides every case of test/fixtures/authorization-cases.yaml, the cases the Go and Python kits decide too", () => {
      const fixture = parseYaml(readFileSync(path.join(__dirname, "..", "..", "..", "test", "fixtures", "authorization-cases.yaml"), "utf8")) as {
        trustDomain: string;
        config: { services: { catalog: { authorization: unknown } } };
        cases: { caller: string | null; path: string; outcome: string }[];
      };
      const shared = parseAuthorizationPolicy(fixture.config.services.catalog.authorization, "services.catalog.authorization");
      assert.ok(fixture.cases.length >= 10);
      for (const { caller, path: method, outcome } of fixture.cases) {
        assert.equal(authorize(shared, method, caller ?? undefined, fixture.trustDomain).outcome, outcome, `${caller} ${method}`);
      }
    });

    it("parses a policy it returned to an equal one", () => {
      assert.deepEqual(parseAuthorizationPolicy(policy, "authorization"), policy);
    });
  });

  describe("config", () => {
    const refusals: [unknown, RegExp][] = [
      [[], /INVALID_ARGUMENT: authorization: must be a mapping$/],
      [{ rule: [] }, /authorization\.rule: unknown field \(expected one of rules\)/],
      [{ rules: {} }, /authorization\.rules: must be a list/],
      [{ rules: [{ action: "permit", callers: ["orders"], methods: ["*"] }] }, /authorization\.rules\[0\]\.action: must be allow or deny/],
      [{ rules: [{ action: "allow", callers: [], methods: ["*"] }] }, /authorization\.rules\[0\]\.callers: must be a non-empty list/],
      [{ rules: [{ action: "allow", callers: ["orders", "Orders_1"], methods: ["*"] }] }, /authorization\.rules\[0\]\.callers\[1\]: must be a mesh service name/],
      [{ rules: [{ action: "allow", callers: ["spiffe://Bad Domain/x"], methods: ["*"] }] }, /authorization\.rules\[0\]\.callers\[0\]: must be/],
      [{ rules: [{ action: "allow", callers: ["orders"] }] }, /authorization\.rules\[0\]\.methods: must be a non-empty list/],
      [{ rules: [{ action: "allow", callers: ["orders"], methods: ["Get Product"] }] }, /authorization\.rules\[0\]\.methods\[0\]: must be a method name/],
      [{ rules: [{ action: "allow", callers: ["orders"], methods: ["//shop.Svc/Get"] }] }, /authorization\.rules\[0\]\.methods\[0\]: must be a method name/],
      [{ rules: [{ action: "allow", callers: ["orders"], methods: ["/grpc.health.v1.Health/Check"] }] }, /methods\[0\]: names a mesh service/],
      [{ rules: [{ action: "allow", callers: ["orders"], methods: ["*"], when: "always" }] }, /authorization\.rules\[0\]\.when: unknown field/],
    ];
    for (const [block, expected] of refusals) {
      it(`refuses ${JSON.stringify(block)} naming the field`, () => {
        assert.throws(() => parseAuthorizationPolicy(block, "authorization"), expected);
      });
    }

    it("validates services.<name>.authorization in the mesh config with the same parser, naming the field", () => {
      assert.throws(
        () => parseMeshConfig("services:\n  catalog:\n    authorization:\n      rules:\n        - action: maybe\n          callers: [orders]\n          methods: ['*']\n"),
        /services\.catalog\.authorization\.rules\[0\]\.action: must be allow or deny/,
      );
      assert.throws(
        () => parseMeshConfig("services:\n  catalog:\n    authorization:\n      rules:\n        - action: allow\n          callers: [orders]\n          methods: [Get-Product]\n"),
        /services\.catalog\.authorization\.rules\[0\]\.methods\[0\]: must be a method name/,
      );
      const config = parseMeshConfig(
        `services:\n  catalog:\n    authorization:\n      rules:\n        - { action: allow, callers: [orders, gateway], methods: [GetProduct, ${LIST_PRODUCTS}] }\n        - { action: deny, callers: [gateway], methods: [ListProducts] }\n  orders: {}\n`,
      );
      assert.deepEqual(policyFor(config, "catalog").authorization, parseAuthorizationPolicy(POLICY_BLOCK, "authorization"));
      assert.equal(policyFor(config, "orders").authorization, undefined);
    });

    it("reads a service's own policy from the mesh config file, and none for a service without one", async () => {
      const file = path.join(dir, "mesh.yaml");
      await writeFile(file, "services:\n  catalog:\n    lb_policy: round_robin\n    authorization:\n      rules:\n        - { action: allow, callers: ['*'], methods: ['*'] }\n");
      assert.deepEqual(loadAuthorizationPolicy(file, "catalog"), { rules: [{ action: "allow", callers: ["*"], methods: ["*"] }] });
      assert.equal(loadAuthorizationPolicy(file, "orders"), undefined);
      await writeFile(file, "services:\n  catalog:\n    authorization:\n      rules: [{ action: allow }]\n");
      assert.throws(() => loadAuthorizationPolicy(file, "catalog"), /services\.catalog\.authorization\.rules\[0\]\.callers: must be a non-empty list/);
    });
  });
});

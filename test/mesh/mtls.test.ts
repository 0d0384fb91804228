import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { credentials, status } from "@grpc/grpc-js";
import type { ClientReadableStream } from "@grpc/grpc-js";
import { HealthCheckResponse_ServingStatus, HealthClient } from "../../generated/ts/health/v1/health";
import { CatalogServiceClient, CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import type {
  GetProductRequest,
  GetProductResponse,
  SearchProductsRequest,
  SearchProductsResponse,
} from "../../generated/ts/shop/catalog/v1/catalog";
import { createClient } from "../../mesh/client";
import type { MeshClientOptions } from "../../mesh/client";
import { serverStream, unary } from "../../mesh/handler";
import { OPENSSL, createCertificateRequest, createMeshCa, issueWorkloadCertificate, signCertificateRequest, spiffeIdOf, workloadFiles } from "../../mesh/identity";
import type { MeshCa, WorkloadCertificate } from "../../mesh/identity";
import { createServer } from "../../mesh/server";
import { peerIdentity } from "../../mesh/tls";
import type { MeshTlsOptions } from "../../mesh/tls";
import { catalogService } from "../../services/catalog/catalog-service";
import { callUnary } from "../support/calls";
import { captureLog } from "../support/log-capture";
import { normalSerial, serverCertificateSerial } from "../support/tls-probe";
import { waitFor } from "../support/wait";

const run = promisify(execFile);

const TRUST_DOMAIN = "protomesh.test";
/** What "fails fast" means here: the handshake's failure, not a deadline (calls get 10 s). */
const FAST_MS = 1_000;
const DEADLINE_MS = 10_000;

/** The files a workload is given: the mesh CA bundle and its own certificate. */
function filesOf(ca: MeshCa, workload: WorkloadCertificate, extra: Partial<MeshTlsOptions> = {}): MeshTlsOptions {
  return { ...workloadFiles(ca, workload), ...extra };
}

describe("mTLS", function () {
  this.timeout(20_000);
  let dir: string;
  let ca: MeshCa;
  let otherCa: MeshCa;
  let catalogCert: WorkloadCertificate;
  let ordersCert: WorkloadCertificate;
  const log = captureLog();
  const cleanups: (() => unknown)[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "protomesh-mtls-"));
    ca = await createMeshCa({ dir: path.join(dir, "ca"), trustDomain: TRUST_DOMAIN });
    otherCa = await createMeshCa({ dir: path.join(dir, "other-ca"), trustDomain: TRUST_DOMAIN });
    catalogCert = await issueWorkloadCertificate(ca, { service: "catalog", dir: path.join(dir, "catalog") });
    ordersCert = await issueWorkloadCertificate(ca, { service: "orders", dir: path.join(dir, "orders") });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A catalog on 127.0.0.1:0 whose GetProduct counts its calls and records each caller's SPIFFE ID. */
  async function catalog(tls: MeshTlsOptions | undefined) {
    const peers: (string | undefined)[] = [];
    const server = createServer({ name: "catalog", logger: log.logger, tls, loadShedding: false });
    server.addService(CatalogServiceService, {
      ...catalogService(),
      getProduct: unary<GetProductRequest, GetProductResponse>((request, call) => {
        peers.push(peerIdentity(call));
        return { product: { id: request.id, name: "tls", description: "", priceCents: 1, currency: "EUR", tags: [] } };
      }),
      // Streams one product every 20 ms until the caller cancels.
      searchProducts: serverStream<SearchProductsRequest, SearchProductsResponse>(async function* (_request, call) {
        for (let index = 0; !call.cancelled; index += 1) {
          yield { product: { id: `sku-${index}`, name: "tick", description: "", priceCents: 1, currency: "EUR", tags: [] } };
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }),
    });
    const port = await server.listen();
    cleanups.push(() => server.drain(1_000));
    return { server, port, peers, handled: () => peers.length };
  }

  function client(target: string, options: MeshClientOptions) {
    const made = createClient(CatalogServiceClient, target, { logger: log.logger, defaultDeadlineMs: DEADLINE_MS, ...options });
    cleanups.push(() => made.close());
    return made;
  }

  /** Calls GetProduct once and returns its outcome and how long it took. */
  async function timedCall(target: CatalogServiceClient) {
    const startedAt = Date.now();
    const outcome = await callUnary(target.getProduct, target, { id: "sku-1" });
    return { ...outcome, elapsedMs: Date.now() - startedAt };
  }

  function assertFailsFast(outcome: Awaited<ReturnType<typeof timedCall>>, code = status.UNAVAILABLE): void {
    assert.ok(outcome.error, "the call must fail");
    assert.equal(outcome.error.code, code, outcome.error.details);
    assert.ok(outcome.elapsedMs < FAST_MS, `failed after ${outcome.elapsedMs} ms, not fast`);
  }

  it("issues a workload certificate whose SANs are its SPIFFE ID and its DNS name, and refuses bad names naming the field", async () => {
    assert.equal(spiffeIdOf(catalogCert.certPem), "spiffe://protomesh.test/service/catalog");
    assert.equal(new X509Certificate(catalogCert.certPem).subjectAltName, "URI:spiffe://protomesh.test/service/catalog, DNS:catalog");
    assert.equal(catalogCert.spiffeId, "spiffe://protomesh.test/service/catalog");
    const lifetimeMs = catalogCert.notAfter.getTime() - Date.now();
    assert.ok(lifetimeMs > 59 * 60_000 && lifetimeMs <= 60 * 60_000, `an hour by default, got ${lifetimeMs} ms`);
    await assert.rejects(issueWorkloadCertificate(ca, { service: "Catalog_1" }), /service must be a mesh service name/);
    await assert.rejects(createMeshCa({ dir: path.join(dir, "bad"), trustDomain: "Bad Domain" }), /trustDomain must be/);
    await assert.rejects(issueWorkloadCertificate(ca, { service: "catalog", ttlMs: 0 }), /ttlMs must be a positive number/);
  });

  it("signs a CSR for the SPIFFE ID it is told, never what the request asks, and refuses a CSR that is not one or whose key is weak", async () => {
    const { keyPem, csrPem } = await createCertificateRequest();
    const signed = await signCertificateRequest(ca, { csrPem, spiffeId: "spiffe://protomesh.test/admin/ops", ttlMs: 5_000, ipAddresses: ["127.0.0.1"] });
    const x509 = new X509Certificate(signed.certPem);
    assert.equal(x509.subjectAltName, "URI:spiffe://protomesh.test/admin/ops, IP Address:127.0.0.1");
    assert.match(x509.subject, /CN=ops/);
    assert.ok(x509.checkPrivateKey(createPrivateKey(keyPem)), "the certificate is for the CSR's key");
    assert.ok(x509.verify(new X509Certificate(ca.certPem).publicKey), "signed by the mesh CA");
    assert.ok(signed.notAfter.getTime() - Date.now() <= 5_000);
    await assert.rejects(signCertificateRequest(ca, { csrPem, spiffeId: "spiffe://other.test/service/x" }), /spiffeId must be a SPIFFE ID of spiffe:\/\/protomesh.test/);
    await assert.rejects(signCertificateRequest(ca, { csrPem: "not a csr", spiffeId: "spiffe://protomesh.test/service/x" }), /csr must be one PEM CERTIFICATE REQUEST/);
    const tampered = csrPem.replace(/^(-----BEGIN CERTIFICATE REQUEST-----\n)(.{40})(.)/, (_all, head: string, body: string, ch: string) => head + body + (ch === "A" ? "B" : "A"));
    await assert.rejects(signCertificateRequest(ca, { csrPem: tampered, spiffeId: "spiffe://protomesh.test/service/x" }), /csr/);
    const weak = path.join(dir, "weak");
    await run(OPENSSL, ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", `${weak}.key`]);
    await run(OPENSSL, ["req", "-new", "-key", `${weak}.key`, "-out", `${weak}.csr`, "-subj", "/CN=weak"]);
    await assert.rejects(
      signCertificateRequest(ca, { csrPem: await readFile(`${weak}.csr`, "utf8"), spiffeId: "spiffe://protomesh.test/service/x" }),
      /its rsa key is too weak/,
    );
  });

  it("serves a client with a certificate from the mesh CA, and the handler sees the client's SPIFFE ID", async () => {
    const server = await catalog(filesOf(ca, catalogCert));
    // A mesh service name: the server must prove it is spiffe://protomesh.test/service/catalog.
    const orders = client("catalog", { fallbackTarget: `127.0.0.1:${server.port}`, tls: filesOf(ca, ordersCert) });
    const outcome = await timedCall(orders);
    assert.equal(outcome.error, undefined, outcome.error?.details);
    assert.equal(outcome.response?.product?.name, "tls");
    assert.deepEqual(server.peers, ["spiffe://protomesh.test/service/orders"]);
  });

  it("refuses a client whose certificate comes from another CA, fast, before any handler", async () => {
    const server = await catalog(filesOf(ca, catalogCert));
    const stranger = await issueWorkloadCertificate(otherCa, { service: "orders", dir: path.join(dir, "stranger") });
    // It trusts the mesh CA, so that only the server's check of its certificate can refuse it.
    const orders = client(`127.0.0.1:${server.port}`, { tls: filesOf(ca, stranger, { serverService: "catalog" }) });
    assertFailsFast(await timedCall(orders));
    assert.equal(server.handled(), 0);
  });

  it("refuses a client that presents no certificate, fast, before any handler", async () => {
    const server = await catalog(filesOf(ca, catalogCert));
    const anonymous = client(`127.0.0.1:${server.port}`, {
      credentials: credentials.createSsl(Buffer.from(ca.certPem), null, null, { checkServerIdentity: () => undefined }),
      channelOptions: { "grpc.ssl_target_name_override": "catalog" },
    });
    assertFailsFast(await timedCall(anonymous));
    assert.equal(server.handled(), 0);
  });

  it("refuses a client whose certificate has expired, fast, before any handler", async () => {
    const server = await catalog(filesOf(ca, catalogCert));
    const expired = await issueWorkloadCertificate(ca, {
      service: "orders",
      dir: path.join(dir, "expired"),
      notBefore: new Date(Date.now() - 2 * 60 * 60_000),
      ttlMs: 60 * 60_000,
    });
    assert.ok(expired.notAfter.getTime() < Date.now());
    const orders = client(`127.0.0.1:${server.port}`, { tls: filesOf(ca, expired, { serverService: "catalog" }) });
    assertFailsFast(await timedCall(orders));
    assert.equal(server.handled(), 0);
  });

  it("refuses a server whose certificate names another service", async () => {
    const pricingCert = await issueWorkloadCertificate(ca, { service: "pricing", dir: path.join(dir, "pricing") });
    const server = await catalog(filesOf(ca, pricingCert));
    const orders = client("catalog", { fallbackTarget: `127.0.0.1:${server.port}`, tls: filesOf(ca, ordersCert) });
    const outcome = await timedCall(orders);
    assertFailsFast(outcome);
    assert.match(outcome.error?.details ?? "", /spiffe:\/\/protomesh\.test\/service\/pricing, not spiffe:\/\/protomesh\.test\/service\/catalog/);
    assert.equal(server.handled(), 0);
  });

  it("refuses a plaintext client on a TLS port, fast, before any handler", async () => {
    const server = await catalog(filesOf(ca, catalogCert));
    const plaintext = client(`127.0.0.1:${server.port}`, {});
    assertFailsFast(await timedCall(plaintext));
    assert.equal(server.handled(), 0);
  });

  it("fails a TLS client on a plaintext port fast", async () => {
    const server = await catalog(undefined);
    const orders = client(`127.0.0.1:${server.port}`, { tls: filesOf(ca, ordersCert, { serverService: "catalog" }) });
    assertFailsFast(await timedCall(orders));
    assert.equal(server.handled(), 0);
  });

  it("answers plaintext health checks on its health address with the server's statuses, and nothing else there; closes with it", async () => {
    const server = createServer({ name: "catalog", logger: log.logger, tls: filesOf(ca, catalogCert), healthAddress: "127.0.0.1:0", loadShedding: false });
    server.addService(CatalogServiceService, catalogService());
    await server.listen("127.0.0.1:0");
    const healthAddress = `127.0.0.1:${server.healthPort}`;
    const health = new HealthClient(healthAddress, credentials.createInsecure());
    const check = () =>
      callUnary(health.check, health, { service: "" }, { deadline: Date.now() + DEADLINE_MS }).then((outcome) => outcome.response?.status ?? outcome.error?.code);
    try {
      assert.equal(await check(), HealthCheckResponse_ServingStatus.SERVING);
      const plain = new CatalogServiceClient(healthAddress, credentials.createInsecure());
      const outcome = await callUnary(plain.getProduct, plain, { id: "sku-1001" }, { deadline: Date.now() + DEADLINE_MS });
      plain.close();
      assert.equal(outcome.error?.code, status.UNIMPLEMENTED, "the application's methods are not on the plaintext port");
      // The same statuses as the mTLS port: what a drain reports first.
      server.health.setServing(false);
      assert.equal(await check(), HealthCheckResponse_ServingStatus.NOT_SERVING);
      server.health.setServing(true);
      await server.drain(1_000);
      assert.equal(await check(), status.UNAVAILABLE, "closed with the server");
    } finally {
      health.close();
      await server.drain(100);
    }
  });

  it("refuses to listen when the certificate files cannot be read, naming them", async () => {
    const server = createServer({
      name: "catalog",
      logger: log.logger,
      tls: { caFile: ca.certFile, certFile: path.join(dir, "missing.crt"), keyFile: path.join(dir, "missing.key") },
    });
    await assert.rejects(server.listen(), /tls: cannot use certFile .*missing\.crt/);
  });

  it("rotates the server's certificate under traffic: no call fails, open streams go on, new handshakes get the new certificate", async () => {
    const serverDir = path.join(dir, "rotating");
    const first = await issueWorkloadCertificate(ca, { service: "catalog", dir: serverDir });
    const server = await catalog(filesOf(ca, first, { refreshIntervalMs: 50 }));
    const orders = client(`127.0.0.1:${server.port}`, { tls: filesOf(ca, ordersCert, { serverService: "catalog" }) });
    assert.equal(await serverCertificateSerial(server.port, filesOf(ca, ordersCert)), normalSerial(first.serialNumber));

    // A stream opened before the rotation, on a connection made with the first certificate.
    const stream: ClientReadableStream<SearchProductsResponse> = orders.searchProducts({ query: "", limit: 0 });
    let streamed = 0;
    let streamError: Error | undefined;
    stream.on("data", () => (streamed += 1));
    stream.on("error", (error: Error & { code?: number }) => {
      if (error.code !== status.CANCELLED) streamError = error;
    });
    cleanups.push(() => stream.cancel());
    await waitFor("the stream's first messages", () => streamed >= 3);

    let ok = 0;
    const failures: string[] = [];
    let isRotated = false;
    const traffic = (async () => {
      // Calls until the rotation is seen, and 20 more after it.
      for (let after = 0; after < 20; after += isRotated ? 1 : 0) {
        const outcome = await callUnary(orders.getProduct, orders, { id: "sku-1" });
        if (outcome.error) failures.push(outcome.error.details);
        else ok += 1;
      }
    })();
    await waitFor("calls before the rotation", () => ok >= 10);
    const second = await issueWorkloadCertificate(ca, { service: "catalog", dir: serverDir });
    assert.notEqual(second.serialNumber, first.serialNumber);
    await waitFor(
      "a fresh handshake to see the new certificate",
      async () => (await serverCertificateSerial(server.port, filesOf(ca, ordersCert))) === normalSerial(second.serialNumber),
      5_000,
      20,
    );
    isRotated = true;
    await traffic;
    const streamedAtRotation = streamed;
    await waitFor("the stream to go on after the rotation", () => streamed >= streamedAtRotation + 3);

    assert.deepEqual(failures, []);
    assert.equal(streamError, undefined);
    assert.equal(server.handled(), ok);
    // A new channel handshakes with the new certificate and is served.
    const later = client(`127.0.0.1:${server.port}`, { tls: filesOf(ca, ordersCert, { serverService: "catalog" }) });
    const outcome = await timedCall(later);
    assert.equal(outcome.error, undefined, outcome.error?.details);
  });
});

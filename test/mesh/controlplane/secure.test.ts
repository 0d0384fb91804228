import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { ServerInterceptingCall, credentials, status } from "@grpc/grpc-js";
import type { ChannelOptions, ServerInterceptor } from "@grpc/grpc-js";
import { CertificateServiceClient } from "../../../generated/ts/protomesh/certificate/v1/certificate";
import { FaultServiceClient } from "../../../generated/ts/protomesh/fault/v1/fault";
import { HealthState, RegistryServiceClient } from "../../../generated/ts/protomesh/registry/v1/registry";
import { CatalogServiceClient, CatalogServiceService } from "../../../generated/ts/shop/catalog/v1/catalog";
import { createClient } from "../../../mesh/client";
import { ControlPlane } from "../../../mesh/controlplane/control-plane";
import type { ControlPlaneOptions } from "../../../mesh/controlplane/control-plane";
import { parseMeshConfig } from "../../../mesh/controlplane/config";
import { createCertificateRequest, createMeshCa, issueWorkloadCertificate, spiffeIdOf, workloadFiles } from "../../../mesh/identity";
import type { MeshCa, WorkloadCertificate } from "../../../mesh/identity";
import { createServer } from "../../../mesh/server";
import type { MeshServer } from "../../../mesh/server";
import { clientTls } from "../../../mesh/tls";
import type { MeshTlsOptions } from "../../../mesh/tls";
import { catalogService } from "../../../services/catalog/catalog-service";
import { callUnary } from "../../support/calls";
import { captureLog } from "../../support/log-capture";
import { getProduct } from "../../support/shop";
import { normalSerial, serverCertificateSerial } from "../../support/tls-probe";
import { waitFor } from "../../support/wait";

const TRUST_DOMAIN = "protomesh.test";
const DEADLINE_MS = 5_000;

function filesOf(ca: MeshCa, workload: WorkloadCertificate, extra: Partial<MeshTlsOptions> = {}): MeshTlsOptions {
  return { ...workloadFiles(ca, workload), ...extra };
}

describe("control plane over mTLS", function () {
  this.timeout(30_000);
  const log = captureLog(process.env.TEST_LOG_LEVEL ?? "warn");
  let dir: string;
  let ca: MeshCa;
  let otherCa: MeshCa;
  let controlPlaneCert: WorkloadCertificate;
  let catalogCert: WorkloadCertificate;
  let ordersCert: WorkloadCertificate;
  let adminCert: WorkloadCertificate;
  let cleanups: (() => Promise<void> | void)[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "protomesh-secure-cp-"));
    ca = await createMeshCa({ dir: path.join(dir, "ca"), trustDomain: TRUST_DOMAIN });
    otherCa = await createMeshCa({ dir: path.join(dir, "other"), trustDomain: TRUST_DOMAIN });
    controlPlaneCert = await issueWorkloadCertificate(ca, {
      service: "control-plane",
      dnsNames: ["control-plane", "localhost"],
      ipAddresses: ["127.0.0.1"],
    });
    catalogCert = await issueWorkloadCertificate(ca, { service: "catalog" });
    ordersCert = await issueWorkloadCertificate(ca, { service: "orders" });
    adminCert = await issueWorkloadCertificate(ca, { service: "ops", spiffeId: `spiffe://${TRUST_DOMAIN}/admin/ops` });
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  afterEach(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    cleanups = [];
  });

  async function controlPlane(options: Partial<ControlPlaneOptions> = {}): Promise<{ plane: ControlPlane; address: string; socket: string }> {
    const socket = path.join(dir, `xds-${Date.now()}-${Math.random().toString(36).slice(2)}.sock`);
    const plane = new ControlPlane({
      logger: log.logger,
      tls: filesOf(ca, controlPlaneCert),
      caKeyFile: ca.keyFile,
      xdsSocket: socket,
      warmupMs: 0,
      ...options,
    });
    const port = await plane.listen("127.0.0.1:0");
    cleanups.push(() => plane.stop());
    return { plane, address: `127.0.0.1:${port}`, socket };
  }

  async function catalog(address: string, tls: MeshTlsOptions, served: { calls: number } = { calls: 0 }): Promise<MeshServer> {
    const counter: ServerInterceptor = (descriptor, call) => {
      if (descriptor.path.endsWith("/GetProduct")) served.calls += 1;
      return new ServerInterceptingCall(call);
    };
    const server = createServer({ name: "catalog", logger: log.logger, controlPlane: address, tls, leaseTtlMs: 3_000, drainGraceMs: 200, interceptors: [counter] });
    server.addService(CatalogServiceService, catalogService());
    await server.listen("127.0.0.1:0");
    cleanups.push(() => server.drain(200));
    return server;
  }

  /** A mesh client of catalog with orders' certificate, dialling it by name with xDS from `socket`. */
  function catalogClient(address: string, socket: string, channelOptions?: ChannelOptions): CatalogServiceClient {
    const client = createClient(CatalogServiceClient, "catalog", {
      logger: log.logger,
      controlPlane: address,
      xdsServer: `unix://${socket}`,
      tls: filesOf(ca, ordersCert),
      defaultDeadlineMs: DEADLINE_MS,
      channelOptions,
    });
    cleanups.push(() => client.close());
    return client;
  }

  function health(plane: ControlPlane, service = "catalog"): HealthState[] {
    return (plane.registry.list(service)[0]?.endpoints ?? []).map((endpoint) => endpoint.health);
  }

  /** A client of the control plane's own services with `workload`'s certificate. */
  function planeClient<C extends { close(): void }>(
    Client: new (address: string, creds: ReturnType<typeof credentials.createInsecure>, options: object) => C,
    address: string,
    workload: WorkloadCertificate,
  ): C {
    const tls = clientTls(filesOf(ca, workload), "control-plane", log.logger);
    const client = new Client(address, tls.credentials, { "grpc.ssl_target_name_override": tls.serverName });
    cleanups.push(() => client.close());
    return client;
  }

  it("registers a TLS server, probes it over mTLS to HEALTHY, and serves a client dialling it by name with xDS from the socket", async () => {
    const { plane, address, socket } = await controlPlane();
    const served = { calls: 0 };
    await catalog(address, filesOf(ca, catalogCert), served);
    await waitFor("catalog HEALTHY", () => health(plane).includes(HealthState.HEALTH_STATE_HEALTHY), 5_000);
    assert.equal((await stat(socket)).mode & 0o777, 0o600, "the plaintext xDS socket is for this user only");
    const client = catalogClient(address, socket);
    const product = await getProduct(client, DEADLINE_MS);
    assert.equal(product.product?.id, "sku-1001");
    assert.equal(served.calls, 1);
  });

  it("refuses a client with tls and a control plane but no xdsServer, naming the option", async () => {
    assert.throws(
      () => createClient(CatalogServiceClient, "catalog", { controlPlane: "127.0.0.1:1", tls: filesOf(ca, ordersCert) }),
      /tls with controlPlane needs xdsServer/,
    );
  });

  it("refuses a registration under a foreign name PERMISSION_DENIED, and a lease's renewal or removal by another workload", async () => {
    const { plane, address } = await controlPlane();
    const orders = planeClient(RegistryServiceClient, address, ordersCert);
    const endpoint = { service: "catalog", address: "127.0.0.1", port: 1, zone: "", weight: 1, metadata: {}, healthServiceName: "" };
    const foreign = await callUnary(orders.register, orders, { endpoint, leaseTtlMs: 0 }, { deadline: Date.now() + DEADLINE_MS });
    assert.equal(foreign.error?.code, status.PERMISSION_DENIED, foreign.error?.message);
    assert.match(foreign.error!.details, /spiffe:\/\/protomesh\.test\/service\/orders may not register an endpoint of catalog/);
    assert.deepEqual(plane.registry.list("catalog"), [], "nothing registered");
    const catalogClient = planeClient(RegistryServiceClient, address, catalogCert);
    const own = await callUnary(catalogClient.register, catalogClient, { endpoint, leaseTtlMs: 0 }, { deadline: Date.now() + DEADLINE_MS });
    assert.equal(own.error, undefined, own.error?.message);
    const leaseId = own.response!.leaseId;
    const renewal = await callUnary(orders.keepAlive, orders, { leaseId }, { deadline: Date.now() + DEADLINE_MS });
    assert.equal(renewal.error?.code, status.PERMISSION_DENIED);
    const removal = await callUnary(orders.deregister, orders, { leaseId }, { deadline: Date.now() + DEADLINE_MS });
    assert.equal(removal.error?.code, status.PERMISSION_DENIED);
    assert.equal(plane.registry.list("catalog")[0]?.endpoints.length, 1, "the lease is still catalog's");
    const listed = await callUnary(orders.listServices, orders, { service: "" }, { deadline: Date.now() + DEADLINE_MS });
    assert.equal(listed.error, undefined, "any workload may read the registry");
  });

  it("lets only an admin identity inject or clear faults; any workload may list them", async () => {
    const { plane, address } = await controlPlane();
    const request = { service: "catalog", method: "", delay: undefined, abort: { code: status.UNAVAILABLE, percent: 100 }, ttl: undefined };
    const workload = planeClient(FaultServiceClient, address, ordersCert);
    const refused = await callUnary(workload.injectFault, workload, request, { deadline: Date.now() + DEADLINE_MS });
    assert.equal(refused.error?.code, status.PERMISSION_DENIED);
    assert.match(refused.error!.details, /only an admin identity \(spiffe:\/\/protomesh\.test\/admin\/<name>\) may/);
    assert.deepEqual(plane.faults.list("catalog"), []);
    const admin = planeClient(FaultServiceClient, address, adminCert);
    const injected = await callUnary(admin.injectFault, admin, request, { deadline: Date.now() + DEADLINE_MS });
    assert.equal(injected.error, undefined, injected.error?.message);
    assert.equal(plane.faults.list("catalog").length, 1);
    const listed = await callUnary(workload.listFaults, workload, { service: "" }, { deadline: Date.now() + DEADLINE_MS });
    assert.equal(listed.response?.faults.length, 1);
    const cleared = await callUnary(workload.clearFaults, workload, { service: "" }, { deadline: Date.now() + DEADLINE_MS });
    assert.equal(cleared.error?.code, status.PERMISSION_DENIED);
    assert.equal(plane.faults.list("catalog").length, 1);
  });

  it("refuses a plaintext client and a client of another CA at the handshake, fast", async () => {
    const { plane, address } = await controlPlane();
    const plain = new RegistryServiceClient(address, credentials.createInsecure());
    cleanups.push(() => plain.close());
    const startedAt = Date.now();
    const outcome = await callUnary(plain.listServices, plain, { service: "" }, { deadline: Date.now() + DEADLINE_MS });
    assert.equal(outcome.error?.code, status.UNAVAILABLE);
    assert.ok(Date.now() - startedAt < 2_000, `failed within ${Date.now() - startedAt} ms`);
    const strangerCert = await issueWorkloadCertificate(otherCa, { service: "catalog", dir: path.join(dir, "stranger") });
    const stranger = new RegistryServiceClient(address, clientTls({ ...filesOf(ca, strangerCert) }, "control-plane", log.logger).credentials, {
      "grpc.ssl_target_name_override": "control-plane",
    });
    cleanups.push(() => stranger.close());
    const endpoint = { service: "catalog", address: "127.0.0.1", port: 1, zone: "", weight: 1, metadata: {}, healthServiceName: "" };
    const forged = await callUnary(stranger.register, stranger, { endpoint, leaseTtlMs: 0 }, { deadline: Date.now() + DEADLINE_MS });
    assert.equal(forged.error?.code, status.UNAVAILABLE);
    assert.deepEqual(plane.registry.list("catalog"), []);
  });

  it("keeps a static endpoint UNHEALTHY whose certificate names another service than the one it is listed as", async () => {
    const impostor = createServer({ name: "catalog", logger: log.logger, tls: filesOf(ca, ordersCert) });
    impostor.addService(CatalogServiceService, catalogService());
    const port = await impostor.listen("127.0.0.1:0");
    cleanups.push(() => impostor.drain(100));
    const config = parseMeshConfig(`services:\n  catalog:\n    endpoints:\n      - address: 127.0.0.1\n        port: ${port}\n`);
    const { plane } = await controlPlane({ config });
    await waitFor("a probe verdict", () => health(plane).includes(HealthState.HEALTH_STATE_UNHEALTHY), 5_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.deepEqual(health(plane), [HealthState.HEALTH_STATE_UNHEALTHY]);
  });

  it("signs a CSR for the caller's own SPIFFE ID, capped at the workload lifetime; UNIMPLEMENTED without the CA key", async () => {
    const { address } = await controlPlane({ workloadTtlMs: 60_000 });
    const orders = planeClient(CertificateServiceClient, address, ordersCert);
    const { csrPem } = await createCertificateRequest();
    const signed = await callUnary(orders.signCertificate, orders, { csrPem, ttl: { seconds: 3_600, nanos: 0 } }, { deadline: Date.now() + DEADLINE_MS });
    assert.equal(signed.error, undefined, signed.error?.message);
    assert.equal(signed.response!.spiffeId, `spiffe://${TRUST_DOMAIN}/service/orders`);
    assert.equal(spiffeIdOf(signed.response!.certificatePem), `spiffe://${TRUST_DOMAIN}/service/orders`);
    assert.equal(new X509Certificate(signed.response!.certificatePem).subjectAltName, `URI:spiffe://${TRUST_DOMAIN}/service/orders, DNS:orders`);
    assert.ok(signed.response!.notAfter!.getTime() - Date.now() <= 60_000, "capped at workloadTtlMs");
    assert.equal(signed.response!.caCertificatePem, await readFile(ca.certFile, "utf8"));
    const garbage = await callUnary(orders.signCertificate, orders, { csrPem: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", ttl: undefined }, { deadline: Date.now() + DEADLINE_MS });
    assert.equal(garbage.error?.code, status.INVALID_ARGUMENT);
    assert.match(garbage.error!.details, /^csr_pem: /);
    const { address: without } = await controlPlane({ caKeyFile: undefined });
    const unsigned = planeClient(CertificateServiceClient, without, ordersCert);
    const refused = await callUnary(unsigned.signCertificate, unsigned, { csrPem, ttl: undefined }, { deadline: Date.now() + DEADLINE_MS });
    assert.equal(refused.error?.code, status.UNIMPLEMENTED);
  });

  it("signs at most a few CSRs at once and refuses the rest RESOURCE_EXHAUSTED, so that no caller can load it with openssl runs", async () => {
    const { address } = await controlPlane();
    const orders = planeClient(CertificateServiceClient, address, ordersCert);
    const { csrPem } = await createCertificateRequest();
    const outcomes = await Promise.all(
      Array.from({ length: 24 }, () => callUnary(orders.signCertificate, orders, { csrPem, ttl: undefined }, { deadline: Date.now() + 10_000 })),
    );
    const codes = outcomes.map((outcome) => outcome.error?.code ?? status.OK);
    assert.ok(codes.includes(status.OK), JSON.stringify(codes));
    assert.ok(codes.includes(status.RESOURCE_EXHAUSTED), JSON.stringify(codes));
    assert.deepEqual([...new Set(codes)].sort(), [status.OK, status.RESOURCE_EXHAUSTED].sort(), "nothing else");
  });

  it("renews its own certificate at half its life with the CA it holds, keeping its names, and registrations go on", async () => {
    const own = await issueWorkloadCertificate(ca, {
      service: "control-plane",
      ttlMs: 4_000,
      dir: path.join(dir, "own"),
      dnsNames: ["control-plane", "localhost"],
      ipAddresses: ["127.0.0.1"],
    });
    const { plane, address } = await controlPlane({ tls: filesOf(ca, own, { refreshIntervalMs: 250 }) });
    await waitFor("the control plane's renewal", async () => normalSerial(new X509Certificate(await readFile(own.certFile)).serialNumber) !== normalSerial(own.serialNumber), 5_000);
    const renewed = new X509Certificate(await readFile(own.certFile));
    assert.equal(renewed.subjectAltName, "URI:spiffe://protomesh.test/service/control-plane, DNS:control-plane, DNS:localhost, IP Address:127.0.0.1");
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const port = Number(address.split(":")[1]);
    // Renewed again by now, maybe (every 2 s): what matters is that the first one is gone.
    assert.notEqual(await serverCertificateSerial(port, filesOf(ca, ordersCert)), normalSerial(own.serialNumber), "new handshakes get a renewed one");
    await catalog(address, filesOf(ca, catalogCert));
    await waitFor("catalog HEALTHY past the first certificate's expiry", () => health(plane).includes(HealthState.HEALTH_STATE_HEALTHY), 5_000);
  });

  it("renews a server's short-lived certificate through the control plane before it expires, with no failed call under traffic", async () => {
    const { plane, address, socket } = await controlPlane();
    const shortLived = await issueWorkloadCertificate(ca, { service: "catalog", ttlMs: 6_000, dir: path.join(dir, "renewed"), ipAddresses: ["127.0.0.1"] });
    const files = filesOf(ca, shortLived, { refreshIntervalMs: 250 });
    await catalog(address, files);
    await waitFor("catalog HEALTHY", () => health(plane).includes(HealthState.HEALTH_STATE_HEALTHY), 5_000);
    // New connections along the way take the new certificate.
    const client = catalogClient(address, socket, { "grpc.max_connection_age_ms": 1_000 });
    const port = plane.registry.list("catalog")[0].endpoints[0].endpoint!.port;
    const firstSerial = normalSerial(shortLived.serialNumber);
    let calls = 0;
    const failures: string[] = [];
    const until = Date.now() + 7_000;
    while (Date.now() < until) {
      await getProduct(client, DEADLINE_MS).then(
        () => (calls += 1),
        (error: Error) => failures.push(error.message),
      );
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.deepEqual(failures, [], `${calls} calls`);
    assert.ok(calls > 50, `${calls} calls`);
    const renewed = new X509Certificate(await readFile(shortLived.certFile));
    assert.notEqual(normalSerial(renewed.serialNumber), firstSerial, "renewed");
    assert.ok(Date.parse(renewed.validTo) > Date.parse(new X509Certificate(shortLived.certPem).validTo));
    assert.equal(renewed.subjectAltName, `URI:spiffe://${TRUST_DOMAIN}/service/catalog, DNS:catalog, IP Address:127.0.0.1`, "it names what the first one named");
    assert.notEqual(await serverCertificateSerial(port, filesOf(ca, ordersCert)), firstSerial, "new handshakes get the renewed certificate");
    assert.deepEqual(health(plane), [HealthState.HEALTH_STATE_HEALTHY], "past the first certificate's expiry, still probed HEALTHY");
  });
});

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseMeshConfig } from "../../../mesh/controlplane/config";
import { ControlPlane } from "../../../mesh/controlplane/control-plane";
import { MeshError } from "../../../mesh/errors";
import { waitFor } from "../../support/wait";
import { callUntilAllServed, getProduct, MeshFixture } from "./mesh-fixture";

const GOOD = `
lease_ttl_ms: 5000
services:
  catalog:
    replicas: 3
    lb_policy: round_robin
    timeout_ms: 1500
    locality_weights: { zone-a: 2 }
  orders:
    replicas: 2
`;

describe("control plane: mesh config", function () {
  it("parses services with their policy, defaults filled in", () => {
    const config = parseMeshConfig(GOOD);
    assert.equal(config.leaseTtlMs, 5000);
    const catalog = config.services.get("catalog")!;
    assert.deepEqual(
      { lb: catalog.lbPolicy, timeout: catalog.timeoutMs, weights: catalog.localityWeights, replicas: catalog.replicas },
      { lb: "round_robin", timeout: 1500, weights: { "zone-a": 2 }, replicas: 3 },
    );
    assert.equal(config.services.get("orders")!.lbPolicy, "round_robin");
    assert.equal(catalog.retry, undefined);
  });

  it("parses ring_hash with its own settings block, validated by the policy", () => {
    const config = parseMeshConfig(
      "services:\n  catalog:\n    lb_policy: ring_hash\n    lb_config: { hash_header: x-user-id, minimum_ring_size: 64 }\n",
    );
    const catalog = config.services.get("catalog")!;
    assert.equal(catalog.lbPolicy, "ring_hash");
    assert.deepEqual(catalog.lbConfig, { hashHeader: "x-user-id", minimumRingSize: 64, maximumRingSize: undefined });
  });

  it("parses a retry policy", () => {
    const config = parseMeshConfig("services:\n  catalog:\n    idempotent: true\n    retry: { retry_on: [unavailable, cancelled], num_retries: 2, base_interval_ms: 10 }\n");
    assert.deepEqual(config.services.get("catalog")!.retry, {
      retryOn: ["unavailable", "cancelled"],
      numRetries: 2,
      baseIntervalMs: 10,
      maxIntervalMs: undefined,
    });
  });

  const refusals: [string, string][] = [
    ["services:\n  catalog:\n    lb_policy: random\n", "services.catalog.lb_policy: must be one of round_robin, ring_hash, pick_first, weighted_round_robin, p2c_ewma, least_request"],
    ["services:\n  catalog:\n    lbpolicy: ring_hash\n", "services.catalog.lbpolicy: unknown field"],
    ["services:\n  catalog:\n    timeout_ms: -5\n", "services.catalog.timeout_ms: must be an integer from 1 to 3600000"],
    ["services:\n  Catalog_1: {}\n", "services.Catalog_1: must be a DNS label"],
    ["services:\n  catalog:\n    hash_header: x-user\n", "services.catalog.hash_header: belongs to ring_hash's own settings"],
    ["services:\n  catalog:\n    lb_config: { hash_header: x-user }\n", "services.catalog.lb_config: round_robin takes no settings"],
    ["services:\n  catalog:\n    lb_policy: ring_hash\n    lb_config: { hash_header: X-User }\n", "services.catalog.lb_config.hash_header: must be a lowercase header name"],
    ["services:\n  catalog:\n    lb_policy: ring_hash\n    lb_config: { ring_size: 5 }\n", "services.catalog.lb_config.ring_size: unknown field (expected one of hash_header, minimum_ring_size, maximum_ring_size)"],
    ["services:\n  catalog:\n    lb_policy: ring_hash\n    lb_config: { minimum_ring_size: 0 }\n", "services.catalog.lb_config.minimum_ring_size: must be an integer from 1 to 8388608"],
    ["services:\n  catalog:\n    lb_policy: ring_hash\n    lb_config: { minimum_ring_size: 64, maximum_ring_size: 32 }\n", "services.catalog.lb_config.maximum_ring_size: must be >= minimum_ring_size"],
    ["services:\n  catalog:\n    lb_policy: [ring_hash]\n", "services.catalog.lb_policy: must be one of round_robin, ring_hash, pick_first, weighted_round_robin, p2c_ewma, least_request"],
    ["services:\n  catalog:\n    endpoints: [{ address: nowhere, port: 1 }]\n", "services.catalog.endpoints[0].address: must be an IPv4 or IPv6 address"],
    ["services:\n  catalog:\n    locality_weights: { zone-a: 0 }\n", "services.catalog.locality_weights.zone-a: must be an integer from 1 to 1000000"],
    ["lease_ttl_ms: 10\n", "lease_ttl_ms: must be an integer from 300 to 300000"],
    ["services: [1, 2]\n", "services: must be a mapping"],
    ["services: {\n", "(file): not valid YAML"],
    ["services:\n  catalog:\n    idempotent: true\n    retry: { num_retries: 2 }\n", "services.catalog.retry.retry_on: must be a non-empty list"],
    ["services:\n  catalog:\n    idempotent: true\n    retry: { retry_on: [unavailable, teapot], num_retries: 2 }\n", "services.catalog.retry.retry_on[1]: must be one of cancelled, deadline-exceeded"],
    ["services:\n  catalog:\n    idempotent: true\n    retry: { retry_on: [unavailable], num_retries: 9 }\n", "services.catalog.retry.num_retries: must be an integer from 1 to 4"],
    ["services:\n  catalog:\n    idempotent: true\n    retry: { retry_on: [unavailable], num_retries: 1, base_interval_ms: 50, max_interval_ms: 10 }\n", "services.catalog.retry.max_interval_ms: must be >= base_interval_ms"],
    ["services:\n  catalog:\n    idempotent: true\n    retry: { retry_on: [unavailable], num_retries: 1, backoff: 3 }\n", "services.catalog.retry.backoff: unknown field"],
    ["services:\n  catalog:\n    idempotent: yes\n", "services.catalog.idempotent: must be true or false"],
    ["services:\n  catalog:\n    methods:\n      Get-Product: {}\n", "services.catalog.methods.Get-Product: must be a method name"],
    ["services:\n  catalog:\n    methods:\n      GetProduct: { timeout: 5 }\n", "services.catalog.methods.GetProduct.timeout: unknown field"],
    ["services:\n  catalog:\n    idempotent: true\n    hedging: { max_attempts: 9, delay_ms: 10 }\n", "services.catalog.hedging.max_attempts: must be an integer from 2 to 5"],
    ["services:\n  catalog:\n    idempotent: true\n    hedging: { max_attempts: 2, delay_ms: 10 }\n    retry: { retry_on: [unavailable], num_retries: 1 }\n", "services.catalog.hedging: cannot be combined with retry"],
    ["services:\n  catalog:\n    retry_throttling: { max_tokens: 10, token_ratio: 0 }\n", "services.catalog.retry_throttling.token_ratio: must be a number above 0"],
    ["services:\n  catalog:\n    outlier_detection: { max_ejection_percent: 120 }\n", "services.catalog.outlier_detection.max_ejection_percent: must be an integer from 0 to 100"],
    ["services:\n  catalog:\n    outlier_detection: { failure_percentage: { minimum_hosts: 0 } }\n", "services.catalog.outlier_detection.failure_percentage.minimum_hosts: must be an integer from 1 to 10000"],
    ["services:\n  catalog:\n    outlier_detection: { base_ejection_time_ms: 5000, max_ejection_time_ms: 1000 }\n", "services.catalog.outlier_detection.max_ejection_time_ms: must be >= base_ejection_time_ms"],
    ["services:\n  catalog:\n    circuit_breaker: { max_requests: 0 }\n", "services.catalog.circuit_breaker.max_requests: must be an integer from 1 to 1000000"],
    ["services:\n  catalog:\n    keepalive: { time_ms: 10 }\n", "services.catalog.keepalive.time_ms: must be an integer from 100 to 3600000"],
    ["services:\n  catalog:\n    keepalive: { interval_ms: 1000 }\n", "services.catalog.keepalive.interval_ms: unknown field"],
  ];
  for (const [yaml, message] of refusals) {
    it(`refuses ${JSON.stringify(yaml.trim())} naming the field`, () => {
      assert.throws(
        () => parseMeshConfig(yaml),
        (error: unknown) => error instanceof MeshError && error.details.startsWith(message),
      );
    });
  }

  describe("reloading", function () {
    let mesh: MeshFixture;
    let dir: string;

    beforeEach(() => {
      mesh = new MeshFixture();
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-config-"));
    });
    afterEach(async () => {
      await mesh.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it("refuses a bad config at start, naming the field", () => {
      const file = path.join(dir, "mesh.yaml");
      fs.writeFileSync(file, "services:\n  catalog:\n    lb_policy: fastest\n");
      assert.throws(() => new ControlPlane({ configPath: file, logger: mesh.log.logger }), /services\.catalog\.lb_policy: must be one of round_robin, ring_hash, pick_first, weighted_round_robin, p2c_ewma, least_request/);
    });

    it("grants the lease_ttl_ms of a reloaded config to new registrations, as it does to the warm-up", async () => {
      const file = path.join(dir, "mesh.yaml");
      fs.writeFileSync(file, GOOD); // lease_ttl_ms: 5000
      const controlPlane = await mesh.startControlPlane({ configPath: file });
      const endpoint = { service: "catalog", address: "127.0.0.1", port: 50091, zone: "", weight: 1, metadata: {}, healthServiceName: "" };
      const registry = mesh.registryClient();
      const register = (port: number) =>
        new Promise<number>((resolve, reject) =>
          registry.register({ endpoint: { ...endpoint, port }, leaseTtlMs: 0 }, (error, response) =>
            error ? reject(error) : resolve(response.leaseTtlMs),
          ),
        );
      assert.equal(await register(50091), 5_000);
      fs.writeFileSync(file, GOOD.replace("lease_ttl_ms: 5000", "lease_ttl_ms: 2000"));
      controlPlane.reloadConfig();
      assert.equal(await register(50092), 2_000, "a registration after the reload gets the new default");
      assert.equal(await register(50091), 2_000, "so does a renewal by a new Register");
    });

    it("refuses a bad config on reload and pushes nothing to clients; a good one is pushed", async () => {
      const file = path.join(dir, "mesh.yaml");
      fs.writeFileSync(file, GOOD);
      const controlPlane = await mesh.startControlPlane({ configPath: file });
      for (let i = 0; i < 2; i += 1) await mesh.startReplica();
      await mesh.waitHealthy(2);
      const client = mesh.catalogClient();
      await callUntilAllServed(client, mesh.replicas);
      const acks: string[] = [];
      controlPlane.xds.onAck((ack) => acks.push(`${ack.typeUrl} ${ack.error ?? "ACK"}`));

      fs.writeFileSync(file, "services:\n  catalog:\n    lb_policy: fastest\n");
      assert.throws(() => controlPlane.reloadConfig(), /services\.catalog\.lb_policy: must be one of round_robin, ring_hash, pick_first, weighted_round_robin, p2c_ewma, least_request/);
      assert.equal(controlPlane.meshConfig.services.get("catalog")!.timeoutMs, 1500, "the previous config stays");
      for (let i = 0; i < 20; i += 1) await getProduct(client);
      assert.equal(acks.length, 0, "no xDS response was sent, so none was acknowledged");
      assert.ok(mesh.log.lines.some((line) => line.msg === "mesh config refused; the previous one stays in force"));

      // ring_hash with Envoy's ring sizes: the client must accept the Cluster (ACK, not NACK).
      fs.writeFileSync(
        file,
        GOOD.replace("lb_policy: round_robin", "lb_policy: ring_hash\n    lb_config: { minimum_ring_size: 64, maximum_ring_size: 256 }"),
      );
      controlPlane.reloadConfig();
      await waitFor("the client to accept the new cluster", () => acks.some((ack) => ack.includes("Cluster ACK")));
      assert.ok(!acks.some((ack) => !ack.endsWith("ACK")), `no NACK: ${acks.join("; ")}`);
      // ring_hash on the channel id: every call of this channel lands on one replica.
      mesh.resetCounts();
      for (let i = 0; i < 20; i += 1) await getProduct(client);
      assert.deepEqual(mesh.replicas.map((r) => r.calls).sort(), [0, 20]);
    });
  });
});

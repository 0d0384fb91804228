import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { Metadata, credentials, loadPackageDefinition, status } from "@grpc/grpc-js";
import type { ClientDuplexStream, ServiceError } from "@grpc/grpc-js";
import type {
  Endpoint,
  RegistryServiceClient,
  RegisterRequest,
  RegisterResponse,
} from "../../../generated/ts/protomesh/registry/v1/registry";
import { loadXdsProtos, CLUSTER_TYPE_URL } from "../../../mesh/controlplane/xds-protos";
import { waitFor } from "../../support/wait";
import { MeshFixture } from "./mesh-fixture";

function register(client: RegistryServiceClient, request: Partial<RegisterRequest>): Promise<RegisterResponse> {
  return new Promise((resolve, reject) =>
    client.register(
      { leaseTtlMs: 0, endpoint: undefined, ...request },
      new Metadata(),
      { deadline: Date.now() + 2_000 },
      (error, response) => (error ? reject(error) : resolve(response)),
    ),
  );
}

const ENDPOINT: Endpoint = {
  service: "inventory",
  address: "127.0.0.1",
  port: 6000,
  zone: "zone-a",
  weight: 0,
  metadata: { version: "1" },
  healthServiceName: "",
};

/** grpcurl from `make tools` (.tools/bin) or the PATH. */
function grpcurlPath(): string | undefined {
  const local = path.resolve(__dirname, "..", "..", "..", "..", ".tools", "bin", "grpcurl");
  if (fs.existsSync(local)) return local;
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (fs.existsSync(path.join(dir, "grpcurl"))) return path.join(dir, "grpcurl");
  }
  return undefined;
}

describe("control plane: registry API", function () {
  let mesh: MeshFixture;
  let client: RegistryServiceClient;

  beforeEach(async () => {
    mesh = new MeshFixture();
    await mesh.startControlPlane();
    client = mesh.registryClient();
  });
  afterEach(async () => {
    await mesh.stop();
  });

  const invalid: [string, Partial<Endpoint> | undefined, string][] = [
    ["no endpoint", undefined, "endpoint: required"],
    ["an empty name", { service: "" }, "endpoint.service: required"],
    ["a malformed name", { service: "Inventory!" }, "endpoint.service: must be a DNS label"],
    ["a host name for an address", { address: "db.local" }, "endpoint.address: must be an IPv4 or IPv6 address"],
    ["port 0", { port: 0 }, "endpoint.port: must be from 1 to 65535"],
    ["a huge weight", { weight: 20_000 }, "endpoint.weight: must be from 0 to 10000"],
  ];
  for (const [what, change, details] of invalid) {
    it(`answers INVALID_ARGUMENT naming the field for ${what}`, async () => {
      const endpoint = change === undefined ? undefined : { ...ENDPOINT, ...change };
      await assert.rejects(register(client, { endpoint }), (error: ServiceError) => {
        assert.equal(error.code, status.INVALID_ARGUMENT);
        assert.ok(error.details.startsWith(details), error.details);
        return true;
      });
    });
  }

  it("answers NOT_FOUND for an unknown lease and INVALID_ARGUMENT for none", async () => {
    const keepAlive = (leaseId: string) =>
      new Promise((resolve, reject) =>
        client.keepAlive({ leaseId }, (error, response) => (error ? reject(error) : resolve(response))),
      );
    await assert.rejects(keepAlive("no-such-lease"), { code: status.NOT_FOUND });
    await assert.rejects(keepAlive(""), { code: status.INVALID_ARGUMENT, details: "lease_id: required" });
  });

  it("registers idempotently: the same endpoint keeps its lease and takes the new details", async () => {
    const first = await register(client, { endpoint: ENDPOINT, leaseTtlMs: 5_000 });
    const second = await register(client, { endpoint: { ...ENDPOINT, weight: 3 }, leaseTtlMs: 5_000 });
    assert.equal(second.leaseId, first.leaseId);
    assert.equal(first.endpointId, "127.0.0.1:6000");
    const [service] = mesh.controlPlane.registry.list("inventory");
    assert.equal(service.endpoints.length, 1);
    assert.equal(service.endpoints[0].endpoint?.weight, 3);
    await new Promise<void>((resolve, reject) =>
      client.deregister({ leaseId: first.leaseId }, (error) => (error ? reject(error) : resolve())),
    );
    assert.deepEqual(mesh.controlPlane.registry.list("inventory"), []);
  });

  it("streams the registry on WatchServices: now, then after every change", async () => {
    const call = client.watchServices({ service: "inventory" });
    const seen: number[] = [];
    call.on("data", (response: { services: { endpoints: unknown[] }[] }) =>
      seen.push(response.services[0]?.endpoints.length ?? 0),
    );
    call.on("error", () => undefined);
    await waitFor("the first snapshot", () => seen.length >= 1);
    await register(client, { endpoint: ENDPOINT });
    await waitFor("the snapshot with the endpoint", () => seen.includes(1));
    call.cancel();
    assert.equal(seen[0], 0);
  });

  it("sends a WatchServices stream of one service nothing for another service's change", async () => {
    const watch = (service: string, seen: string[][]) => {
      const call = client.watchServices({ service });
      call.on("data", (response: { services: { name: string; endpoints: unknown[] }[] }) =>
        seen.push(response.services.map((listed) => `${listed.name} ${listed.endpoints.length}`)),
      );
      call.on("error", () => undefined);
      return call;
    };
    const ofInventory: string[][] = [];
    const ofAll: string[][] = [];
    // Opened first, so on a change that reached both it would write first, on the same connection.
    const inventoryCall = watch("inventory", ofInventory);
    const allCall = watch("", ofAll);
    await waitFor("the first snapshots", () => ofInventory.length === 1 && ofAll.length === 1);
    await register(client, { endpoint: { ...ENDPOINT, service: "orders" } });
    await waitFor("the change of orders on the watch of every service", () => ofAll.some((listed) => listed.includes("orders 1")));
    assert.deepEqual(ofInventory.map((listed) => listed.join()), [""], "nothing for orders' change");
    await register(client, { endpoint: ENDPOINT });
    await waitFor("the change of inventory", () => ofInventory.some((listed) => listed.includes("inventory 1")));
    inventoryCall.cancel();
    allCall.cancel();
  });

  it("logs a NACK with its error and does not send the rejected version again", async () => {
    const { packageDefinition } = loadXdsProtos();
    const grpcObject = loadPackageDefinition(packageDefinition) as unknown as {
      envoy: { service: { discovery: { v3: { AggregatedDiscoveryService: new (...args: unknown[]) => { StreamAggregatedResources(): ClientDuplexStream<Record<string, unknown>, Record<string, unknown>>; close(): void } } } } };
    };
    const ads = new grpcObject.envoy.service.discovery.v3.AggregatedDiscoveryService(mesh.address, credentials.createInsecure());
    const stream = ads.StreamAggregatedResources();
    const responses: Record<string, unknown>[] = [];
    stream.on("data", (response: Record<string, unknown>) => responses.push(response));
    stream.on("error", () => undefined);
    stream.write({ node: { id: "test-node" }, type_url: CLUSTER_TYPE_URL, resource_names: ["inventory"], version_info: "", response_nonce: "" });
    await waitFor("the first CDS response", () => responses.length === 1);
    const first = responses[0] as { nonce: string; version_info: string; resources: unknown[] };
    assert.equal(first.resources.length, 1);
    stream.write({
      type_url: CLUSTER_TYPE_URL,
      resource_names: ["inventory"],
      version_info: "",
      response_nonce: first.nonce,
      error_detail: { code: 3, message: "cluster inventory: unsupported lb_policy" },
    });
    await waitFor("the NACK to be logged", () =>
      mesh.log.lines.some((line) => line.error === "cluster inventory: unsupported lb_policy" && line.rejectedVersion === first.version_info),
    );
    await register(client, { endpoint: ENDPOINT }); // a change that does not touch the Cluster
    assert.equal(responses.length, 1, "the NACKed cluster was not sent again");
    stream.end();
    ads.close();
  });

  it("lists the registry, fault and xDS services and the registered endpoints with grpcurl", async function () {
    const grpcurl = grpcurlPath();
    if (!grpcurl) {
      // `make test` installs it (make tools); outside make, say so rather than pass silently.
      throw new Error("grpcurl not found: run `make tools`");
    }
    await register(client, { endpoint: ENDPOINT });
    const run = promisify(execFile);
    const listed = await run(grpcurl, ["-plaintext", mesh.address, "list"]);
    const services = listed.stdout.trim().split("\n").sort();
    assert.deepEqual(services, [
      "envoy.service.discovery.v3.AggregatedDiscoveryService",
      "grpc.health.v1.Health",
      "protomesh.fault.v1.FaultService",
      "protomesh.registry.v1.RegistryService",
      "xds.service.orca.v3.OpenRcaService",
    ]);
    const described = await run(grpcurl, ["-plaintext", mesh.address, "describe", "protomesh.registry.v1.RegistryService"]);
    assert.match(described.stdout, /rpc WatchServices/);
    const endpoints = await run(grpcurl, ["-plaintext", mesh.address, "protomesh.registry.v1.RegistryService/ListServices"]);
    const body = JSON.parse(endpoints.stdout) as { services: { name: string; endpoints: { endpointId: string }[] }[] };
    assert.equal(body.services[0].name, "inventory");
    assert.equal(body.services[0].endpoints[0].endpointId, "127.0.0.1:6000");
  });
});

import assert from "node:assert/strict";
import { CatalogServiceClient, CatalogServiceService } from "../../generated/ts/shop/catalog/v1/catalog";
import { createClient, createServer } from "../../mesh";
import type { MeshServer } from "../../mesh";
import { CHANNELZ_SERVICE_NAME, CSDS_SERVICE_NAME, adminProtoImportPaths } from "../../mesh/admin-services";
import { ControlPlane } from "../../mesh/controlplane/control-plane";
import { catalogService } from "../../services/catalog/catalog-service";
import { captureLog } from "../support/log-capture";
import { getProduct } from "../support/shop";
import { requireTool, runTool } from "../support/tools";
import { waitFor } from "../support/wait";

/**
 * grpc-js' admin services on a kit server (mesh/admin-services.ts): channelz and CSDS, read with
 * grpcurl and the proto files grpc-js and grpc-js-xds ship, in a process whose client dials the catalog by name
 * through a real control plane. (grpcdebug, the tool made for them, is not installable here: the
 * Go module proxy refuses github.com/grpc-ecosystem/grpcdebug.)
 */
describe("admin services: channelz and CSDS with grpcurl", function () {
  this.timeout(30_000);
  let grpcurl: string;
  let controlPlane: ControlPlane;
  let catalog: MeshServer;
  let front: MeshServer;
  let client: CatalogServiceClient;
  let frontAddress: string;

  before(async function () {
    grpcurl = requireTool(this, "grpcurl");
    const { logger } = captureLog("warn");
    controlPlane = new ControlPlane({ logger, warmupMs: 0 });
    const controlPlaneAddress = `127.0.0.1:${await controlPlane.listen("127.0.0.1:0")}`;
    catalog = createServer({ name: "catalog", logger, controlPlane: controlPlaneAddress });
    catalog.addService(CatalogServiceService, catalogService());
    await catalog.listen("127.0.0.1:0");
    // As a program does: its clients first (loading the xDS client), then its server.
    client = createClient(CatalogServiceClient, "catalog", { logger, controlPlane: controlPlaneAddress });
    front = createServer({ name: "front", logger, adminServices: true });
    frontAddress = `127.0.0.1:${await front.listen("127.0.0.1:0")}`;
    await waitFor("the catalog to be HEALTHY", () => controlPlane.registry.entries("catalog").some((entry) => entry.health === 1), 10_000);
    await getProduct(client, 5_000);
  });
  after(async () => {
    client?.close();
    await front?.drain(0);
    await catalog?.drain(0);
    await controlPlane?.stop();
  });

  /** grpcurl as the README prints it: the protos grpc-js and grpc-js-xds ship, no reflection. */
  const call = async (proto: string, method: string, body = "{}") => {
    const imports = adminProtoImportPaths().flatMap((dir) => ["-import-path", dir]);
    const result = await runTool(grpcurl, ["-plaintext", ...imports, "-proto", proto, "-d", body, frontAddress, method]);
    assert.equal(result.code, 0, `grpcurl ${method}: ${result.stderr}`);
    return result.stdout;
  };

  it("serves both on the server's gRPC port, CSDS because the process's xDS client is loaded", () => {
    assert.deepEqual(front.adminServices, [CHANNELZ_SERVICE_NAME, CSDS_SERVICE_NAME]);
  });

  it("shows the process's channel to xds:///catalog with its calls in channelz", async () => {
    const topChannels = JSON.parse(await call("channelz.proto", `${CHANNELZ_SERVICE_NAME}/GetTopChannels`)) as {
      channel: Array<{ data: { target: string; callsSucceeded?: string } }>;
    };
    const channel = topChannels.channel.find((candidate) => candidate.data.target === "xds:///catalog");
    assert.ok(channel, `channels: ${topChannels.channel.map((candidate) => candidate.data.target).join(", ")}`);
    assert.ok(Number(channel.data.callsSucceeded ?? 0) >= 1, "the GetProduct it made");
  });

  it("shows the xDS client's Listener, RouteConfiguration, Cluster and ClusterLoadAssignment of catalog in CSDS", async () => {
    const status = await call("envoy/service/status/v3/csds.proto", `${CSDS_SERVICE_NAME}/FetchClientStatus`);
    for (const type of ["Listener", "RouteConfiguration", "Cluster", "ClusterLoadAssignment"]) {
      assert.match(status, new RegExp(`envoy\\.config\\.[a-z]+\\.v3\\.${type}`), `${type} in ${status.slice(0, 400)}`);
    }
    assert.match(status, /"catalog"/);
    assert.match(status, /"clientStatus": "ACKED"/, "the resources are ones the client accepted");
  });
});

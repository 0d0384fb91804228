import assert from "node:assert/strict";
import { Metadata, credentials, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { HealthCheckResponse_ServingStatus, HealthClient } from "../../../generated/ts/health/v1/health";
import type { HealthCheckResponse } from "../../../generated/ts/health/v1/health";
import { DEFAULT_SERVER_LIMITS } from "../../../mesh/server-limits";
import { ADS_SERVICE_NAME } from "../../../mesh/controlplane/xds-protos";
import { REGISTRY_SERVICE_NAME } from "../../../mesh/controlplane/control-plane";
import { FAULT_SERVICE_NAME } from "../../../mesh/controlplane/fault-service";
import { waitFor } from "../../support/wait";
import { MeshFixture } from "./mesh-fixture";

describe("control plane: a kit server", function () {
  const mesh = new MeshFixture("info");

  before(async () => {
    await mesh.startControlPlane();
  });
  after(() => mesh.stop());

  it("has the kit's message limit: an oversized Register gets RESOURCE_EXHAUSTED and the server keeps serving", async () => {
    const registry = mesh.registryClient();
    const huge = "x".repeat(DEFAULT_SERVER_LIMITS.maxReceiveMessageBytes + 1);
    const endpoint = { service: "catalog", address: "127.0.0.1", port: 1, zone: "", weight: 1, metadata: { huge }, healthServiceName: "" };
    const error = await new Promise<ServiceError | null>((resolve) =>
      registry.register({ endpoint, leaseTtlMs: 0 }, new Metadata(), { deadline: Date.now() + 5_000 }, (failure) => resolve(failure)),
    );
    assert.equal(error?.code, status.RESOURCE_EXHAUSTED);
    const listed = await new Promise<number>((resolve, reject) =>
      registry.listServices({ service: "" }, (failure, response) => (failure ? reject(failure) : resolve(response.services.length))),
    );
    assert.equal(listed, 0);
  });

  it("logs its calls through the kit's call observer, as every service does", async () => {
    const registry = mesh.registryClient();
    const metadata = new Metadata();
    metadata.set("x-request-id", "control-plane-call");
    await new Promise<void>((resolve) => registry.listServices({ service: "" }, metadata, () => resolve()));
    await waitFor("the call's line", () => mesh.log.lines.some((line) => line.requestId === "control-plane-call"));
    const line = mesh.log.lines.find((candidate) => candidate.requestId === "control-plane-call")!;
    assert.deepEqual(
      { server: line.server, service: line.service, method: line.method, code: line.code },
      { server: "control-plane", service: REGISTRY_SERVICE_NAME, method: "ListServices", code: "OK" },
    );
  });

  it("reports SERVING over grpc.health.v1 for the registry, fault and ADS services", async () => {
    const health = new HealthClient(mesh.address, credentials.createInsecure());
    try {
      for (const service of ["", REGISTRY_SERVICE_NAME, FAULT_SERVICE_NAME, ADS_SERVICE_NAME]) {
        const response = await new Promise<HealthCheckResponse>((resolve, reject) =>
          health.check({ service }, (error, answer) => (error ? reject(error) : resolve(answer))),
        );
        assert.equal(response.status, HealthCheckResponse_ServingStatus.SERVING, `health of "${service}"`);
      }
    } finally {
      health.close();
    }
  });
});

import assert from "node:assert/strict";
import * as path from "node:path";
import { credentials, loadPackageDefinition } from "@grpc/grpc-js";
import type { ClientDuplexStream, GrpcObject, ServiceClientConstructor } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { OrderServiceService } from "../../generated/ts/shop/orders/v1/orders";
import { createServer } from "../../mesh/server";
import type { MeshServer } from "../../mesh/server";
import type { OrderStore } from "../../services/orders/order-store";
import { openOrderStore } from "../../services/orders/order-store-url";
import { ordersService } from "../../services/orders/orders-service";
import { captureLog } from "../support/log-capture";
import { createClient } from "../../mesh/client";
import { CatalogServiceClient } from "../../generated/ts/shop/catalog/v1/catalog";

const REFLECTION_PROTOS = path.dirname(require.resolve("@grpc/reflection/package.json"));

interface ReflectionResponse {
  listServicesResponse?: { service: { name: string }[] };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  errorResponse?: { errorCode: number };
}

/** A reflection client of the given version, loaded from the protos @grpc/reflection ships. */
function reflectionClient(version: "v1" | "v1alpha", address: string) {
  const definition = loadSync(`grpc/reflection/${version}/reflection.proto`, {
    includeDirs: [path.join(REFLECTION_PROTOS, "build", "proto")],
  });
  const pkg = loadPackageDefinition(definition) as unknown as { grpc: { reflection: Record<string, GrpcObject> } };
  const Client = pkg.grpc.reflection[version].ServerReflection as ServiceClientConstructor;
  return new Client(address, credentials.createInsecure());
}

/** Sends one reflection request on a fresh stream and resolves with the first response. */
function ask(client: InstanceType<ServiceClientConstructor>, request: object): Promise<ReflectionResponse> {
  return new Promise((resolve, reject) => {
    const stream = (client as unknown as { serverReflectionInfo(options: object): ClientDuplexStream<object, ReflectionResponse> })
      .serverReflectionInfo({ deadline: Date.now() + 5_000 });
    stream.on("data", (response: ReflectionResponse) => {
      resolve(response);
      stream.end();
    });
    stream.on("error", reject);
    stream.write(request);
  });
}

describe("server reflection", () => {
  let server: MeshServer;
  let address: string;
  let store: OrderStore;
  const catalogStub = createClient(CatalogServiceClient, "127.0.0.1:1", { logger: captureLog().logger });

  before(async () => {
    store = await openOrderStore({ kind: "sqlite", file: ":memory:" }, { logger: captureLog().logger });
    server = createServer({ name: "orders", logger: captureLog().logger });
    server.addService(OrderServiceService, ordersService({ catalog: catalogStub }, store));
    address = `127.0.0.1:${await server.listen()}`;
  });

  after(async () => {
    catalogStub.close();
    await server.drain(500);
    await store.close();
  });

  for (const version of ["v1", "v1alpha"] as const) {
    it(`lists only the services the server hosts, health and load reports included, over ${version}`, async () => {
      const client = reflectionClient(version, address);
      try {
        const response = await ask(client, { listServices: "*" });
        const names = response.listServicesResponse?.service.map((service) => service.name).sort();
        assert.deepEqual(names, ["grpc.health.v1.Health", "shop.orders.v1.OrderService", "xds.service.orca.v3.OpenRcaService"]);
      } finally {
        client.close();
      }
    });

    it(`returns the file that defines a symbol over ${version}`, async () => {
      const client = reflectionClient(version, address);
      try {
        const response = await ask(client, { fileContainingSymbol: "shop.orders.v1.PlaceOrderRequest" });
        const files = response.fileDescriptorResponse?.fileDescriptorProto ?? [];
        assert.ok(files.some((file) => file.toString("latin1").includes("shop/orders/v1/orders.proto")));
      } finally {
        client.close();
      }
    });
  }
});

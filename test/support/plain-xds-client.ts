import { Metadata, credentials } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import * as xds from "@grpc/grpc-js-xds";
import { CatalogServiceClient } from "../../generated/ts/shop/catalog/v1/catalog";
import { XDS_BOOTSTRAP_CHANNEL_OPTION, xdsBootstrap } from "../../mesh/xds-bootstrap";

/**
 * A grpc-js-xds client with nothing of protomesh registered (no `register()`, so no p2c_ewma):
 * what a Node service that does not use the kit sees. Makes one GetProduct call to
 * xds:///catalog through the control plane at argv[2] and prints its outcome as one JSON line.
 */
xds.register();
const client = new CatalogServiceClient("xds:///catalog", credentials.createInsecure(), {
  [XDS_BOOTSTRAP_CHANNEL_OPTION]: xdsBootstrap(process.argv[2]),
});
client.getProduct({ id: "sku-1001" }, new Metadata(), { deadline: Date.now() + 5_000 }, (error: ServiceError | null) => {
  process.stdout.write(`${JSON.stringify(error ? { code: error.code, details: error.details } : { code: 0 })}\n`);
  client.close();
  process.exit(0);
});

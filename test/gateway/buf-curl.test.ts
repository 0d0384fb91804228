import assert from "node:assert/strict";
import * as path from "node:path";
import { startShop } from "../support/shop";
import type { Shop } from "../support/shop";
import { repoRoot, runTool } from "../support/tools";
import { startTestGateway } from "./gateway-fixture";
import type { TestGateway } from "./gateway-fixture";

/**
 * The gateway's gRPC-Web with a gRPC-Web client it was not written with: `buf curl --protocol
 * grpcweb` (buf from npm), reading the method from the descriptor set.
 */
describe("gateway gRPC-Web with buf curl (a real gRPC-Web client)", function () {
  this.timeout(30_000);
  let shop: Shop;
  let gateway: TestGateway;
  const bufCurl = (method: string, body: unknown) =>
    runTool(path.join(repoRoot(), "node_modules", ".bin", "buf"), [
      "curl", "--protocol", "grpcweb", "--schema", path.join(repoRoot(), "generated", "descriptor.binpb"), "-d", JSON.stringify(body), `${gateway.url}/${method}`,
    ]);

  before(async () => {
    shop = await startShop();
    gateway = await startTestGateway(shop.log.logger, { catalog: shop.catalogAddress, orders: shop.ordersAddress });
  });
  after(async () => {
    await gateway.close();
    await shop.stop();
  });

  it("gets a product (unary) and searches products (server streaming)", async () => {
    const product = await bufCurl("shop.catalog.v1.CatalogService/GetProduct", { id: "sku-1001" });
    assert.equal(product.code, 0, product.stderr);
    assert.equal((JSON.parse(product.stdout) as { product: { name: string } }).product.name, "Espresso beans 1 kg");
    const search = await bufCurl("shop.catalog.v1.CatalogService/SearchProducts", { query: "tea" });
    assert.equal(search.code, 0, search.stderr);
    const names = [...search.stdout.matchAll(/"name": "([^"]+)"/g)].map((match) => match[1]);
    assert.ok(names.includes("Green tea 100 g") && names.length >= 3, search.stdout);
  });

  it("reports NOT_FOUND with the catalog's message", async () => {
    const missing = await bufCurl("shop.catalog.v1.CatalogService/GetProduct", { id: "sku-0" });
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /not_found/);
    assert.match(missing.stderr, /product \\"sku-0\\" not found|product "sku-0" not found/);
  });
});

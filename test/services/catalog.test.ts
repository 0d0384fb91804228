import assert from "node:assert/strict";
import { status } from "@grpc/grpc-js";
import type { Product } from "../../generated/ts/shop/catalog/v1/catalog";
import { SEED_PRODUCTS } from "../../services/catalog/seed";
import { callUnary, collectStream, expectOk } from "../support/calls";
import { useShop } from "../support/shop";

describe("catalog service", () => {
  const context = useShop();

  it("returns a seeded product by id", async () => {
    const { product } = await expectOk(context.clients.catalog.getProduct, context.clients.catalog, { id: "sku-1007" });
    assert.deepEqual(product, SEED_PRODUCTS.find((seed) => seed.id === "sku-1007"));
  });

  it("answers an unknown id with NOT_FOUND and an empty id with INVALID_ARGUMENT", async () => {
    assert.equal((await callUnary(context.clients.catalog.getProduct, context.clients.catalog, { id: "sku-0" })).error?.code, status.NOT_FOUND);
    const { error } = await callUnary(context.clients.catalog.getProduct, context.clients.catalog, { id: "" });
    assert.equal(error?.code, status.INVALID_ARGUMENT);
    assert.equal(error?.details, "id: is required");
  });

  it("pages through every product exactly once, in id order", async () => {
    const seen: Product[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await expectOk(context.clients.catalog.listProducts, context.clients.catalog, { pageSize: 4, pageToken });
      assert.ok(page.products.length <= 4);
      assert.equal(page.totalSize, SEED_PRODUCTS.length);
      seen.push(...page.products);
      pageToken = page.nextPageToken;
      pages += 1;
    } while (pageToken !== "" && pages < 100);
    assert.equal(pages, Math.ceil(SEED_PRODUCTS.length / 4));
    assert.deepEqual(seen.map((product) => product.id), SEED_PRODUCTS.map((product) => product.id).sort());
  });

  it("uses the default page size for 0 and caps large page sizes", async () => {
    assert.equal((await expectOk(context.clients.catalog.listProducts, context.clients.catalog, { pageSize: 0, pageToken: "" })).products.length, 10);
    const all = await expectOk(context.clients.catalog.listProducts, context.clients.catalog, { pageSize: 10_000, pageToken: "" });
    assert.equal(all.products.length, SEED_PRODUCTS.length);
    assert.equal(all.nextPageToken, "");
  });

  it("refuses a negative page size and a forged page token, naming the field", async () => {
    const negative = await callUnary(context.clients.catalog.listProducts, context.clients.catalog, { pageSize: -1, pageToken: "" });
    assert.equal(negative.error?.code, status.INVALID_ARGUMENT);
    assert.match(negative.error?.details ?? "", /^page_size: /);
    const forged = await callUnary(context.clients.catalog.listProducts, context.clients.catalog, { pageSize: 2, pageToken: "not-a-token" });
    assert.equal(forged.error?.code, status.INVALID_ARGUMENT);
    assert.match(forged.error?.details ?? "", /^page_token: /);
  });

  it("streams every product matching a search, case-insensitively, up to the limit", async () => {
    const all = await collectStream(context.clients.catalog.searchProducts({ query: "TEA", limit: 0 }));
    assert.equal(all.error, undefined);
    const expected = SEED_PRODUCTS.filter((product) =>
      [product.name, product.description, ...product.tags].some((text) => text.toLowerCase().includes("tea")),
    );
    assert.deepEqual(all.messages.map((message) => message.product?.id).sort(), expected.map((product) => product.id).sort());
    const limited = await collectStream(context.clients.catalog.searchProducts({ query: "tea", limit: 2 }));
    assert.equal(limited.messages.length, 2);
    const none = await collectStream(context.clients.catalog.searchProducts({ query: "zzz-no-match", limit: 0 }));
    assert.deepEqual(none, { messages: [] });
  });

  it("refuses an empty search query with INVALID_ARGUMENT", async () => {
    const { error } = await collectStream(context.clients.catalog.searchProducts({ query: "  ", limit: 0 }));
    assert.equal(error?.code, status.INVALID_ARGUMENT);
    assert.equal(error?.details, "query: is required");
  });
});

import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { buildSync } from "esbuild";
import type { BrowserContext, Page } from "playwright-core";
import type { CallOutcome } from "./browser/app";
import { startShop } from "../support/shop";
import { startTestGateway } from "./gateway-fixture";
import type { TestGateway } from "./gateway-fixture";
import type { Shop } from "../support/shop";
import { launchChromium, requireChromium } from "../support/browser";
import { repoRoot } from "../support/tools";

/** How long the page may take to make its three calls. */
const PAGE_TIMEOUT_MS = 8_000;

/** The page's script with the generated codecs, for the browser: grpc-js (which the generated client class needs) replaced by a stub. */
function bundlePageScript(): string {
  const dir = path.join(repoRoot(), "test", "gateway", "browser");
  const result = buildSync({
    entryPoints: [path.join(dir, "app.ts")],
    bundle: true,
    write: false,
    format: "iife",
    platform: "browser",
    alias: { "@grpc/grpc-js": path.join(dir, "grpc-js-stub.ts") },
    logLevel: "silent",
  });
  return result.outputFiles[0].text;
}

/** Serves the page and its script on a port of its own, so the page's origin is not the gateway's. */
async function servePage(script: string): Promise<{ server: http.Server; origin: string }> {
  const html = fs.readFileSync(path.join(repoRoot(), "test", "gateway", "browser", "index.html"));
  const server = http.createServer((req, res) => {
    const file = (req.url ?? "/").split("?")[0];
    if (file === "/" || file === "/index.html") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(html);
    } else if (file === "/app.js") {
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" });
      res.end(script);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe("gateway gRPC-Web from a real browser", function () {
  this.timeout(15_000);
  let shop: Shop | undefined;
  let gateway: TestGateway | undefined;
  let page: { server: http.Server; origin: string } | undefined;
  let otherPage: { server: http.Server; origin: string } | undefined;
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let context: BrowserContext | undefined;
  let gatewayUrl = "";

  before(async function () {
    requireChromium(this);
    const script = bundlePageScript();
    page = await servePage(script);
    otherPage = await servePage(script);
    shop = await startShop();
    // Only the page's origin may call: the browser's CORS checks are what this test exercises.
    gateway = await startTestGateway(shop.log.logger, { catalog: shop.catalogAddress, orders: shop.ordersAddress }, { corsOrigins: [page.origin] });
    gatewayUrl = gateway.url;
    browser = await launchChromium();
    context = browser.context;
  });

  after(async () => {
    await browser?.close();
    await gateway?.close();
    await shop?.stop();
    for (const served of [page, otherPage]) {
      if (served === undefined) continue;
      served.server.closeAllConnections();
      await new Promise((resolve) => served.server.close(resolve));
    }
  });

  /** Opens the page served at `origin` and resolves to what its script reported. */
  async function runPage(origin: string): Promise<{ tab: Page; outcomes: unknown }> {
    const tab = await context!.newPage();
    await tab.goto(`${origin}/?gateway=${encodeURIComponent(gatewayUrl)}`);
    await tab.waitForFunction(() => (globalThis as { grpcWebOutcome?: unknown }).grpcWebOutcome !== undefined, undefined, {
      timeout: PAGE_TIMEOUT_MS,
    });
    return { tab, outcomes: await tab.evaluate(() => (globalThis as { grpcWebOutcome?: unknown }).grpcWebOutcome) };
  }

  it("calls GetProduct and SearchProducts across origins and shows the product, with the calls' grpc-status", async () => {
    const failures: string[] = [];
    context!.once("page", (opened) => {
      opened.on("pageerror", (error) => failures.push(error.message));
      opened.on("requestfailed", (request) => failures.push(`${request.url()}: ${request.failure()?.errorText}`));
    });
    const run = await runPage(page!.origin);
    const { tab } = run;
    const outcomes = run.outcomes as Record<string, CallOutcome>;
    const artifacts = path.join(repoRoot(), "test", "gateway", ".artifacts");
    fs.mkdirSync(artifacts, { recursive: true });
    await tab.screenshot({ path: path.join(artifacts, "grpc-web-browser.png") });

    assert.deepEqual(failures, [], "the page ran without errors or blocked requests");
    assert.equal(await tab.textContent("#state"), "done");
    assert.equal(await tab.textContent("#product"), "Espresso beans 1 kg");
    assert.deepEqual(outcomes.getProduct, { grpcStatus: 0, grpcMessage: "", messages: 1, isTrailersOnly: false });

    assert.equal(outcomes.searchProducts.grpcStatus, 0);
    assert.ok(outcomes.searchProducts.messages >= 3, "several products match tea");
    assert.match((await tab.textContent("#search")) ?? "", /Green tea 100 g.*Black tea 250 g/);

    // Trailers-only: read from the headers, which the page may read only because they are exposed.
    assert.deepEqual(outcomes.missing, { grpcStatus: 5, grpcMessage: 'product "sku-0000" not found', messages: 0, isTrailersOnly: true });
    assert.equal(await tab.textContent("#missing"), 'grpc-status 5: product "sku-0000" not found');
    // The page's custom headers (x-grpc-web, x-user-agent) made the browser ask first.
    assert.ok(
      shop!.log.lines.some((line) => line.component === "gateway" && line.method === "OPTIONS" && line.status === 204),
      "the gateway answered the browser's preflight",
    );
    await tab.close();
  });

  it("is refused by the browser when the page's origin is not among the gateway's CORS origins", async () => {
    const { tab, outcomes } = await runPage(otherPage!.origin);
    assert.match((outcomes as { error?: string }).error ?? "", /Failed to fetch/);
    assert.match((await tab.textContent("#state")) ?? "", /^failed: /);
    await tab.close();
  });
});

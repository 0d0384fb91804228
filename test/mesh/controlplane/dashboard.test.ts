import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Page } from "playwright-core";
import { CatalogServiceClient } from "../../../generated/ts/shop/catalog/v1/catalog";
import { HealthState } from "../../../generated/ts/protomesh/registry/v1/registry";
import { createClient } from "../../../mesh/client";
import { ControlPlane } from "../../../mesh/controlplane/control-plane";
import { figuresOf, quantileMs } from "../../../mesh/controlplane/dashboard";
import { captureLog } from "../../support/log-capture";
import { getProduct } from "../../support/shop";
import { launchChromium, requireChromium } from "../../support/browser";
import { repoRoot } from "../../support/tools";
import { waitFor } from "../../support/wait";

/**
 * The control plane's live dashboard (mesh/controlplane/dashboard.ts) in a real browser: Debian's
 * chromium headless, driven by playwright-core, against a real control plane and a real catalog
 * process, frozen with SIGSTOP and thawed with SIGCONT.
 */

const CATALOG_MAIN = path.join(repoRoot(), "dist", "services", "catalog", "main.js");
/** Where the screenshots go (git-ignored). */
const ARTIFACTS = path.join(repoRoot(), "test", ".artifacts");

describe("control plane: the live dashboard in a browser", function () {
  this.timeout(40_000);
  let controlPlane: ControlPlane;
  let child: ChildProcess | undefined;
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;

  before(async function () {
    requireChromium(this);
    controlPlane = new ControlPlane({ logger: captureLog("warn").logger, warmupMs: 0, adminAddress: "127.0.0.1:0" });
    await controlPlane.listen("127.0.0.1:0");
    browser = await launchChromium();
  });
  after(async () => {
    if (child?.exitCode === null) {
      child.kill("SIGCONT");
      child.kill("SIGKILL");
    }
    await browser?.close();
    await controlPlane?.stop();
  });

  it("shows a replica UNHEALTHY within 2 s of a SIGSTOP and HEALTHY after SIGCONT, with the service's RPS from its metrics, without a reload", async () => {
    child = spawn(process.execPath, [CATALOG_MAIN], {
      env: {
        ...process.env,
        PORT: "0",
        PROTOMESH_CONTROL_PLANE: `127.0.0.1:${controlPlane.port}`,
        PROTOMESH_ADMIN_ADDRESS: "127.0.0.1:0",
        PROTOMESH_LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "ignore", "inherit"],
    });
    const replica = child;
    const entry = () => controlPlane.registry.entries("catalog").find((e) => e.endpoint.metadata.pid === String(replica.pid));
    await waitFor("the catalog process to be HEALTHY", () => entry()?.health === HealthState.HEALTH_STATE_HEALTHY, 15_000);
    const id = entry()!.id;
    assert.ok(Number(entry()!.endpoint.metadata.admin_port) > 0, "it registered its admin port");

    const tab: Page = await browser!.context.newPage();
    const failures: string[] = [];
    tab.on("pageerror", (error) => failures.push(error.message));
    await tab.goto(`http://127.0.0.1:${controlPlane.server.adminPort}/`);
    const healthCell = `tr[data-endpoint="${id}"] td.health`;
    await tab.waitForSelector(`${healthCell}[data-health="HEALTHY"]`, { timeout: 5_000 });
    await tab.evaluate(() => ((globalThis as { loadMarker?: string }).loadMarker = "first load"));

    // Traffic, so that the page has figures from the process's own metrics.
    const client = createClient(CatalogServiceClient, id, { logger: captureLog("warn").logger });
    try {
      for (let i = 0; i < 40; i += 1) await getProduct(client);
      await tab.waitForFunction(
        (selector) => {
          // The page's DOM, typed here by what this reads of it (the test compiles without the DOM lib).
          const { document } = globalThis as unknown as { document: { querySelector(s: string): { getAttribute(name: string): string | null } | null } };
          return Number(document.querySelector(selector)?.getAttribute("data-rps") || 0) > 0;
        },
        `tr[data-endpoint="${id}"] td[data-rps]`,
        { timeout: 5_000 },
      );
    } finally {
      client.close();
    }
    assert.equal(await tab.textContent('section[data-service="catalog"] .figures span:nth-child(4) b'), "round_robin");
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await tab.screenshot({ path: path.join(ARTIFACTS, "dashboard-traffic.png"), fullPage: true });

    replica.kill("SIGSTOP");
    const frozenAt = Date.now();
    let unhealthyAfterMs: number;
    try {
      await tab.waitForSelector(`${healthCell}[data-health="UNHEALTHY"]`, { timeout: 5_000 });
      unhealthyAfterMs = Date.now() - frozenAt;
      await tab.screenshot({ path: path.join(ARTIFACTS, "dashboard-replica-unhealthy.png"), fullPage: true });
    } finally {
      replica.kill("SIGCONT");
    }
    process.stdout.write(`      (the page showed the frozen replica UNHEALTHY ${unhealthyAfterMs} ms after SIGSTOP)\n`);
    assert.ok(unhealthyAfterMs <= 2_500, `UNHEALTHY on the page ${unhealthyAfterMs} ms after SIGSTOP`);
    await tab.waitForSelector(`${healthCell}[data-health="HEALTHY"]`, { timeout: 5_000 });
    await tab.screenshot({ path: path.join(ARTIFACTS, "dashboard-replica-back.png"), fullPage: true });

    assert.equal(await tab.evaluate(() => (globalThis as { loadMarker?: string }).loadMarker), "first load", "no reload");
    assert.ok((await tab.evaluate(() => (globalThis as { dashboardUpdates?: number }).dashboardUpdates ?? 0)) >= 3, "updated live");
    assert.equal(await tab.textContent("#connection"), "live");
    assert.deepEqual(failures, []);
  });
});

describe("control plane: the dashboard's figures from an exposition", function () {
  it("counts an endpoint's application calls and server faults, leaving the mesh's own services out", () => {
    const text = [
      'grpc_server_handled_total{grpc_type="unary",grpc_service="shop.catalog.v1.CatalogService",grpc_method="GetProduct",grpc_code="OK"} 90',
      'grpc_server_handled_total{grpc_type="unary",grpc_service="shop.catalog.v1.CatalogService",grpc_method="GetProduct",grpc_code="NotFound"} 6',
      'grpc_server_handled_total{grpc_type="unary",grpc_service="shop.catalog.v1.CatalogService",grpc_method="GetProduct",grpc_code="Unavailable"} 4',
      'grpc_server_handled_total{grpc_type="unary",grpc_service="grpc.health.v1.Health",grpc_method="Check",grpc_code="OK"} 500',
      'grpc_server_handling_seconds_bucket{le="0.005",grpc_type="unary",grpc_service="shop.catalog.v1.CatalogService",grpc_method="GetProduct"} 50',
      'grpc_server_handling_seconds_bucket{le="0.01",grpc_type="unary",grpc_service="shop.catalog.v1.CatalogService",grpc_method="GetProduct"} 98',
      'grpc_server_handling_seconds_bucket{le="+Inf",grpc_type="unary",grpc_service="shop.catalog.v1.CatalogService",grpc_method="GetProduct"} 100',
    ].join("\n");
    const figures = figuresOf(text, 0);
    assert.equal(figures.calls, 100, "health checks are not the service's calls");
    assert.equal(figures.failures, 4, "NotFound is the caller's mistake, Unavailable the server's fault");
    assert.equal(quantileMs(figures.buckets, 0.5), 5, "the median at the 5 ms bound");
    assert.equal(quantileMs(figures.buckets, 0.97), 9.9, "linear within the (5 ms, 10 ms] bucket, as histogram_quantile");
    assert.equal(quantileMs(figures.buckets, 0.99), 10, "in +Inf: the highest finite bound");
    assert.equal(quantileMs(new Map(), 0.99), null);
  });
});

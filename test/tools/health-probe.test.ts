import * as assert from "node:assert/strict";
import * as net from "node:net";
import { startShop } from "../support/shop";
import type { Shop } from "../support/shop";
import { requireTool, runTool } from "../support/tools";
import type { ToolResult } from "../support/tools";

/**
 * grpc-health-probe's exit codes: README "Exit codes" and the `Status*` constants of main.go
 * (v0.4.62). Any failed Check RPC, NOT_FOUND for an unknown service included, is RPC_FAILURE.
 */
const PROBE_EXIT = Object.freeze({
  SERVING: 0,
  CONNECTION_FAILURE: 2,
  RPC_FAILURE: 3,
  UNHEALTHY: 4,
});

/** Generous for a server on loopback: they bound a hung probe, they do not slow a passing one. */
const PROBE_TIMEOUTS = ["-connect-timeout", "2s", "-rpc-timeout", "2s"];
/**
 * The probe dials with WithBlock and retries a refused connection until `-connect-timeout`, so a dead
 * port always costs the full connect timeout: keep it short.
 */
const DEAD_PORT_CONNECT_TIMEOUT = "300ms";

const CATALOG_SERVICE = "shop.catalog.v1.CatalogService";
const ORDER_SERVICE = "shop.orders.v1.OrderService";

/** A port on 127.0.0.1 that nothing listens on: bound by the OS, then released. */
async function unusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
  return port;
}

/** Asserts the probe's exit code, showing what it printed when the code differs. */
function assertExit(result: ToolResult, expected: number): void {
  assert.equal(
    result.code,
    expected,
    `grpc-health-probe exited ${result.code}, expected ${expected}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`,
  );
}

describe("grpc-health-probe against the reference services", function () {
  let probe = "";
  let shop: Shop | undefined;

  before(async function () {
    probe = requireTool(this, "grpc-health-probe");
    shop = await startShop();
  });

  after(async function () {
    await shop?.stop();
  });

  function running(): Shop {
    assert.ok(shop, "the shop is not running");
    return shop;
  }

  /** Probes `address`, optionally one `service`, with the default bounded timeouts. */
  function probeAt(address: string, service?: string, timeouts: string[] = PROBE_TIMEOUTS): Promise<ToolResult> {
    return runTool(probe, ["-addr", address, ...(service === undefined ? [] : ["-service", service]), ...timeouts]);
  }

  describe("while the servers are SERVING", function () {
    it("exits 0 for the whole catalog server (no -service)", async function () {
      const result = await probeAt(running().catalogAddress);
      assertExit(result, PROBE_EXIT.SERVING);
      assert.match(result.stderr, /status: SERVING/);
    });

    it("exits 0 for -service shop.catalog.v1.CatalogService", async function () {
      const result = await probeAt(running().catalogAddress, CATALOG_SERVICE);
      assertExit(result, PROBE_EXIT.SERVING);
      assert.match(result.stderr, /status: SERVING/);
    });

    it("exits 0 for -service shop.orders.v1.OrderService on the orders server", async function () {
      assertExit(await probeAt(running().ordersAddress, ORDER_SERVICE), PROBE_EXIT.SERVING);
    });

    it("exits 3 (rpc failed) for a service the server does not host, which Check answers NOT_FOUND", async function () {
      const result = await probeAt(running().catalogAddress, "nope");
      assertExit(result, PROBE_EXIT.RPC_FAILURE);
      assert.match(result.stderr, /code = NotFound/);
    });

    it("exits 3 for a service hosted by another server of the mesh (orders on the catalog)", async function () {
      assertExit(await probeAt(running().catalogAddress, ORDER_SERVICE), PROBE_EXIT.RPC_FAILURE);
    });
  });

  describe("when the server reports NOT_SERVING (health.setServing(false))", function () {
    beforeEach(function () {
      running().catalogServer.health.setServing(false);
    });

    afterEach(function () {
      running().catalogServer.health.setServing(true);
    });

    it("exits 4 for the whole server", async function () {
      const result = await probeAt(running().catalogAddress);
      assertExit(result, PROBE_EXIT.UNHEALTHY);
      assert.match(result.stderr, /service unhealthy \(responded with "NOT_SERVING"\)/);
    });

    it("exits 4 for -service shop.catalog.v1.CatalogService", async function () {
      assertExit(await probeAt(running().catalogAddress, CATALOG_SERVICE), PROBE_EXIT.UNHEALTHY);
    });

    it("leaves the other server of the shop SERVING (exit 0)", async function () {
      assertExit(await probeAt(running().ordersAddress), PROBE_EXIT.SERVING);
    });

    it("exits 0 again once the server reports SERVING", async function () {
      running().catalogServer.health.setServing(true);
      assertExit(await probeAt(running().catalogAddress, CATALOG_SERVICE), PROBE_EXIT.SERVING);
    });
  });

  describe("when one service is NOT_SERVING (health.setServing(false, service))", function () {
    beforeEach(function () {
      running().catalogServer.health.setServing(false, CATALOG_SERVICE);
    });

    afterEach(function () {
      running().catalogServer.health.setServing(true);
    });

    it("exits 4 for that service while the whole server still answers 0", async function () {
      assertExit(await probeAt(running().catalogAddress, CATALOG_SERVICE), PROBE_EXIT.UNHEALTHY);
      assertExit(await probeAt(running().catalogAddress), PROBE_EXIT.SERVING);
    });
  });

  it("exits 2 (connection failed) for a port nothing listens on", async function () {
    const port = await unusedPort();
    const result = await probeAt(`127.0.0.1:${port}`, undefined, [
      "-connect-timeout",
      DEAD_PORT_CONNECT_TIMEOUT,
      "-rpc-timeout",
      DEAD_PORT_CONNECT_TIMEOUT,
    ]);
    assertExit(result, PROBE_EXIT.CONNECTION_FAILURE);
    assert.match(result.stderr, /failed to connect service/);
  });
});

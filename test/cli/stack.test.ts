import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { referenceStack } from "../../cli/stack";
import { chaosMeshConfig } from "../support/chaos";
import { requireLanguages } from "../support/interop";
import { repoRoot } from "../support/tools";

describe("the reference stack of `protomesh up` (cli/stack)", function () {
  const names = (stack: ReturnType<typeof referenceStack>) => stack.stages.map((stage) => stage.map((spec) => spec.name));

  it("runs inventory (Go) and pricing (Python) between the catalog and orders, and points orders at them by name", function () {
    requireLanguages(this, "go", "python");
    const stack = referenceStack({ meshConfigPath: undefined }, {}, repoRoot());
    assert.deepEqual(names(stack), [
      ["catalog-0", "catalog-1", "catalog-2"],
      ["inventory-0", "inventory-1"],
      ["pricing-0", "pricing-1"],
      ["orders-0", "orders-1"],
      ["gateway-0"],
    ]);
    assert.deepEqual(stack.unavailable, []);
    const [inventory, pricing, orders] = [stack.stages[1], stack.stages[2], stack.stages[3]];
    assert.deepEqual(inventory.map((spec) => spec.address), ["127.0.0.1:50053", "127.0.0.1:50063"]);
    assert.deepEqual(pricing.map((spec) => spec.address), ["127.0.0.1:50054", "127.0.0.1:50064"]);
    assert.equal(inventory[0].command, path.join(repoRoot(), "dist", "go", "inventory"));
    assert.deepEqual(pricing[0].args, [path.join(repoRoot(), "services", "pricing", "main.py")]);
    assert.equal(orders[0].env?.INVENTORY_TARGET, "inventory");
    assert.equal(orders[0].env?.PRICING_TARGET, "pricing");
    const gateway = stack.stages[4][0];
    assert.equal(gateway.address, "127.0.0.1:50055", "its kit server, registered as gateway");
    assert.equal(gateway.env.GATEWAY_HTTP_PORT, "8080");
    assert.equal(stack.gatewayHttp, "127.0.0.1:8080");
    assert.ok(stack.tryCommands(() => undefined).some((command) => command.startsWith("curl -s http://127.0.0.1:8080/v1/products/sku-1001")));
    // Every replica reads the control plane's mesh config: on mTLS it enforces its authorization block.
    for (const spec of stack.stages.flat()) assert.equal(spec.env.PROTOMESH_MESH_CONFIG, path.join(repoRoot(), "deploy", "mesh.yaml"), spec.name);
  });

  it("leaves out a service whose language is missing, saying what to install, and orders does without it", function () {
    const bare = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-stack-"));
    try {
      const stack = referenceStack({ meshConfigPath: undefined }, {}, bare);
      assert.deepEqual(names(stack), [
        ["catalog-0", "catalog-1", "catalog-2"],
        ["orders-0", "orders-1"],
        ["gateway-0"],
      ]);
      assert.deepEqual(stack.unavailable.map((entry) => entry.name), ["inventory", "pricing"]);
      assert.match(stack.unavailable[0].reason, /dist\/go\/inventory is not built \(Go is needed: install Go/);
      assert.match(stack.unavailable[1].reason, /\.venv\/bin\/python is missing \(Python 3\.10 or later is needed/);
      const orders = stack.stages[1][0];
      assert.equal(stack.stages[2][0].env.GATEWAY_HTTP_PORT, "8080");
      assert.ok(orders.env && "INVENTORY_TARGET" in orders.env && orders.env.INVENTORY_TARGET === undefined, "removed, not inherited");
      assert.equal(orders.env?.PRICING_TARGET, undefined);
    } finally {
      fs.rmSync(bare, { recursive: true, force: true });
    }
  });

  it("runs inventory and pricing only when the mesh config names them", function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-stack-"));
    try {
      const config = path.join(dir, "mesh.yaml");
      fs.writeFileSync(config, chaosMeshConfig(10_000, ["catalog", "orders"]));
      const stack = referenceStack({ meshConfigPath: config }, {}, repoRoot());
      assert.deepEqual(names(stack), [
        ["catalog-0", "catalog-1", "catalog-2"],
        ["orders-0", "orders-1"],
      ]);
      assert.deepEqual(stack.unavailable, []);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

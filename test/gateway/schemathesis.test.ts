import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { GatewayGuard } from "../../cli/gateway/auth";
import { Backends } from "../../cli/gateway/backends";
import { parseGatewayConfig } from "../../cli/gateway/config";
import { ensureDevKeys, mintDevToken } from "../../cli/gateway/dev-keys";
import { loadGatewayMethods } from "../../cli/gateway/methods";
import { createGateway } from "../../cli/gateway/server";
import { ChaosMesh, chaosMeshConfig } from "../support/chaos";
import { polyglotPrograms, requireLanguages } from "../support/interop";
import { repoRoot } from "../support/tools";

/**
 * schemathesis (PyPI, in .venv) against the gateway with its own OpenAPI document
 * (generated/openapi/shop.swagger.json), in front of the whole shop: catalog and orders
 * (TypeScript), inventory (Go) and pricing (Python), called by name through a real control plane,
 * with deploy/gateway.yaml's routes and a token carrying every scope. The checks: no 5xx, every
 * status code, content type and response body as the document says. The two server-streaming
 * operations (`:search`, `:watch`) answer newline-delimited JSON, which no OpenAPI document can
 * describe (grpc-gateway's neither): the transcoding tests check them instead.
 */

const CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance"];
/** Test cases per operation and phase, and a fixed seed, so that a run is repeatable and under a minute. */
const MAX_EXAMPLES = 20;
const SEED = 42;

describe("gateway against its OpenAPI document: schemathesis (test/gateway)", function () {
  this.timeout(180_000);
  let mesh: ChaosMesh;
  let gateway: ReturnType<typeof createGateway>;
  let backends: Backends;
  let url: string;
  let token: string;

  before(async function () {
    requireLanguages(this, "go", "python");
    const programs = polyglotPrograms();
    mesh = await ChaosMesh.start({ meshConfig: chaosMeshConfig(3_000, ["catalog", "inventory", "pricing", "orders"]) });
    await mesh.addReplica("catalog-0");
    await mesh.addReplica("inventory-0", { program: { file: programs.goInventory, args: [] }, env: { INVENTORY_STORE_URL: `sqlite:${path.join(mesh.dir, "inventory.sqlite")}` } });
    await mesh.addReplica("pricing-0", { program: { file: programs.python, args: [programs.pricing] } });
    await mesh.addReplica("orders-0", {
      service: "orders",
      env: { ORDERS_STORE_URL: `sqlite:${path.join(mesh.dir, "orders.sqlite")}`, INVENTORY_TARGET: "inventory", PRICING_TARGET: "pricing" },
    });
    const deployed = parseYaml(fs.readFileSync(path.join(repoRoot(), "deploy", "gateway.yaml"), "utf8")) as Record<string, unknown>;
    const jwksFile = await ensureDevKeys(mesh.dir);
    const config = parseGatewayConfig({ ...deployed, jwt: { ...(deployed.jwt as object), jwks_file: jwksFile }, rate_limit: { requests_per_second: 100_000 } });
    const { methods } = loadGatewayMethods();
    backends = new Backends({ controlPlane: mesh.controlPlane, logger: mesh.log.logger });
    gateway = createGateway({ methods, backends, logger: mesh.log.logger, guard: new GatewayGuard(config) });
    url = `http://127.0.0.1:${await gateway.listen(0, "127.0.0.1")}`;
    token = await mintDevToken({ subject: "schemathesis", scopes: ["orders:read", "orders:write", "admin"], ttlS: 600, dir: mesh.dir });
  });

  after(async function () {
    await gateway?.close();
    backends?.close();
    await mesh?.stop();
  });

  it("finds no 5xx and no response that differs from the document, in every unary operation", async function () {
    const document = path.join(repoRoot(), "generated", "openapi", "shop.swagger.json");
    const args = [
      "run", document,
      "--url", url,
      "--checks", CHECKS.join(","),
      "--max-examples", String(MAX_EXAMPLES),
      "--seed", String(SEED),
      "--header", `Authorization: Bearer ${token}`,
      "--exclude-path-regex", ":(search|watch)$",
      "--request-timeout", "10",
      "--no-color",
    ];
    const run = await runSchemathesis(args, mesh.dir);
    const summary = run.output.split("\n").filter((line) => /API Operations|Selected:|Tested:|Test cases:|generated|passed|failures?|Failures:|ST\d+/.test(line));
    console.log(`      schemathesis: ${summary.map((line) => line.trim()).filter((line) => line !== "").join(" | ")}`);
    assert.equal(run.code, 0, run.output.slice(-6_000));
    assert.match(run.output, /Tested: 9\b/, "the 9 unary operations were tested");
    assert.match(run.output, /Test cases:\s+\d+ generated/);
  });
});

/** Runs schemathesis in `cwd` (where it keeps its .schemathesis cache). */
function runSchemathesis(args: string[], cwd: string): Promise<{ code: number | null; output: string }> {
  const st = path.join(repoRoot(), ".venv", "bin", "st");
  return new Promise((resolve) => {
    const child = spawn(st, args, { cwd, env: { ...process.env, NO_COLOR: "1", SCHEMATHESIS_HOOKS: "" }, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => (output += text));
    child.stderr.setEncoding("utf8").on("data", (text: string) => (output += text));
    child.once("close", (code) => resolve({ code, output }));
  });
}

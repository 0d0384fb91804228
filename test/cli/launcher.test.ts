import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { status } from "@grpc/grpc-js";
import { CatalogServiceClient } from "../../generated/ts/shop/catalog/v1/catalog";
import { OrderServiceClient } from "../../generated/ts/shop/orders/v1/orders";
import type { PlaceOrderResponse } from "../../generated/ts/shop/orders/v1/orders";
import { createClient } from "../../mesh/client";
import { createMeshCa, issueWorkloadCertificate } from "../../mesh/identity";
import type { MeshTlsOptions } from "../../mesh/tls";
import { waitForServing } from "../../cli/health-wait";
import { SEED_PRODUCTS } from "../../services/catalog/seed";
import { ADMIN_PORT_OFFSET, REPLICA_PORT_STRIDE } from "../../cli/stack";
import { chaosMeshConfig } from "../support/chaos";
import { CliRun, isProcessGone } from "../support/cli-run";
import { requireLanguages } from "../support/interop";
import { callUnary } from "../support/calls";
import { captureLog } from "../support/log-capture";
import { requireTool } from "../support/tools";
import { closeServer, freePortRun, freePorts, listenOn } from "../support/ports";
import { sample, scrape } from "../support/metrics";
import { waitFor } from "../support/wait";

/** Bounds on the launcher starting the stack, on a change reaching its table, and on it stopping; all far above what they take. */
const READY_TIMEOUT_MS = 20_000;
const CHANGE_TIMEOUT_MS = 10_000;
const EXIT_TIMEOUT_MS = 20_000;
/** Replicas of deploy/mesh.yaml, which `protomesh up` reads by default. */
const CATALOG_REPLICAS = 3;
const ORDERS_REPLICAS = 2;
/** The heading of every table, and a row, e.g. "catalog  127.0.0.1:50051  -  HEALTHY  1234  .run/catalog-0.log". */
const HEADING = /^SERVICE +ENDPOINT +ZONE +HEALTH +PID +LOG$/;
const ROW = /^(\S+) +(\S+) +(\S+) +(\S+) +(\d+|-) +(\S+)$/;
/** The last line after the first table and the commands: the stack is up. */
const READY = /^The table is printed again whenever the registry changes/m;

interface Row {
  service: string;
  endpoint: string;
  zone: string;
  health: string;
  pid: number;
  log: string;
}

/** Base ports of a `protomesh up` run, and the environment that sets them. */
interface MeshPorts {
  controlPlane: number;
  catalog: number;
  orders: number;
  env: Record<string, string>;
}

/** A `protomesh up` whose first table is out. */
interface RunningMesh {
  run: CliRun;
  ports: MeshPorts;
  /** The rows of the first table. */
  rows: Row[];
  /** The operator identity `up` wrote (.run/tls/admin.*), what a person calls its mTLS mesh with; undefined when plaintext. */
  tls: MeshTlsOptions | undefined;
}

/** The operator's files of the `up` running in `cwd`. */
function operatorFiles(cwd: string): MeshTlsOptions {
  const dir = path.join(cwd, ".run", "tls");
  return { caFile: path.join(dir, "ca.crt"), certFile: path.join(dir, "admin.crt"), keyFile: path.join(dir, "admin.key") };
}

/** Every table in `stdout` so far, in order, each as its rows. */
function tablesIn(stdout: string): Row[][] {
  const tables: Row[][] = [];
  let current: Row[] | undefined;
  for (const line of stdout.split("\n")) {
    if (HEADING.test(line)) {
      current = [];
      tables.push(current);
      continue;
    }
    const match = current && ROW.exec(line);
    if (!match) {
      current = undefined;
      continue;
    }
    const [, service, endpoint, zone, health, pid, log] = match;
    current!.push({ service, endpoint, zone, health, pid: Number(pid), log });
  }
  return tables;
}

/**
 * Base ports for `protomesh up` whose replica ports (base + 10 * i) were all free a moment ago and
 * do not overlap: the environment to run it with.
 */
async function meshPorts(): Promise<MeshPorts> {
  const taken = new Set<number>();
  // Each process's admin port (its port + ADMIN_PORT_OFFSET) must be free too.
  const withAdmin = [0, ADMIN_PORT_OFFSET];
  const controlPlane = await freePortRun(1, REPLICA_PORT_STRIDE, taken, withAdmin);
  const catalog = await freePortRun(CATALOG_REPLICAS, REPLICA_PORT_STRIDE, taken, withAdmin);
  const orders = await freePortRun(ORDERS_REPLICAS, REPLICA_PORT_STRIDE, taken, withAdmin);
  const env = { CONTROL_PLANE_PORT: String(controlPlane), CATALOG_PORT: String(catalog), ORDERS_PORT: String(orders) };
  return { controlPlane, catalog, orders, env };
}

/** The ports of `replicas` replicas from `base`. */
function endpointsPorts(base: number, replicas: number): number[] {
  return Array.from({ length: replicas }, (_, index) => base + REPLICA_PORT_STRIDE * index);
}

/** The ports of `replicas` replicas from `base`, as table endpoints. */
function endpoints(base: number, replicas: number): string[] {
  return Array.from({ length: replicas }, (_, index) => `127.0.0.1:${base + REPLICA_PORT_STRIDE * index}`);
}

/** `text` as a regular expression that matches it literally. */
function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** PlaceOrder of 2 × sku-1001 at `address` of `mesh` (as its operator on mTLS), on a client of its own that is closed after. */
function placeOrder(mesh: RunningMesh, address: string, idempotencyKey: string): Promise<PlaceOrderResponse> {
  const client = createClient(OrderServiceClient, address, { logger: captureLog().logger, tls: mesh.tls && { ...mesh.tls, serverService: "orders" } });
  return new Promise<PlaceOrderResponse>((resolve, reject) => {
    client.placeOrder(
      { customerId: "cust-launcher", items: [{ productId: "sku-1001", quantity: 2 }], idempotencyKey },
      (error, response) => (error ? reject(error) : resolve(response)),
    );
  }).finally(() => client.close());
}

/** Temporary directories and CLI runs of a suite, and their teardown. */
class Runs {
  private readonly runs: CliRun[] = [];
  private readonly dirs: string[] = [];

  /** A temporary directory, removed at `cleanUp`. */
  tempDir(): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-up-"));
    this.dirs.push(dir);
    return dir;
  }

  /**
   * `node dist/cli/protomesh.js <args>` in a temporary directory. The user's shell must not steer
   * the runs: the mesh config is deploy/mesh.yaml's TypeScript services (catalog and orders, as
   * deployed) unless a test says otherwise; the polyglot mesh as a whole is test/polyglot's.
   */
  cli(args: string[], env: Record<string, string> = {}, options: { viaMake?: boolean } = {}): CliRun {
    const typescriptConfig = path.join(this.tempDir(), "mesh.yaml");
    fs.writeFileSync(typescriptConfig, chaosMeshConfig(10_000, ["catalog", "orders"]));
    const run = new CliRun(args, { PROTOMESH_MESH_CONFIG: typescriptConfig, ...env }, this.tempDir(), options);
    this.runs.push(run);
    return run;
  }

  /** `protomesh up` on free ports, once its first table and the commands are out. */
  async up(env: Record<string, string> = {}, options: { viaMake?: boolean } = {}): Promise<RunningMesh> {
    const ports = await meshPorts();
    const run = this.cli(["up"], { ...ports.env, ...env }, options);
    await run.waitFor("stdout", READY, READY_TIMEOUT_MS);
    const tls = env.PROTOMESH_PLAINTEXT === "1" ? undefined : operatorFiles(run.cwd);
    return { run, ports, rows: tablesIn(run.stdout)[0], tls };
  }

  /**
   * Whatever happened, no launcher and no process it started may outlive the test: asks each
   * launcher still running to stop them, then kills whatever is left, and removes the directories.
   */
  async cleanUp(): Promise<void> {
    for (const run of this.runs.splice(0)) {
      if (run.isRunning) {
        // A run under make has a process group of its own: stop all of it, as Ctrl-C would.
        if (run.isGroupLeader) process.kill(-run.child.pid!, "SIGTERM");
        else run.child.kill("SIGTERM");
        await run.exitWithin(EXIT_TIMEOUT_MS).catch(() => {
          run.child.kill("SIGKILL");
          return run.exited;
        });
      }
      for (const pid of run.startedPids) if (!isProcessGone(pid)) process.kill(pid, "SIGKILL");
    }
    for (const dir of this.dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe("protomesh up (cli/launcher)", function () {
  const product = SEED_PRODUCTS.find((candidate) => candidate.id === "sku-1001")!;

  // One mesh for the steps of its life: starting it takes seconds (the control plane and orders
  // load the xDS protos), so the steps share it and run in order.
  describe("with the TypeScript services of deploy/mesh.yaml running", function () {
    const runs = new Runs();
    let mesh: RunningMesh;
    const stopped = () => endpoints(mesh.ports.catalog, CATALOG_REPLICAS)[1];

    before(async function () {
      // Inherited, CATALOG_TARGET would make orders dial this dead address instead of the catalog by name.
      mesh = await runs.up({ CATALOG_TARGET: "127.0.0.1:1" });
    });
    after(() => runs.cleanUp());

    it("lists the control plane SERVING and its 3 catalog and 2 orders replicas HEALTHY, with pids and logs, then commands to try", function () {
      const { run, ports, rows } = mesh;
      assert.deepEqual(
        rows.map((row) => [row.service, row.endpoint, row.health, row.log]),
        [
          ["control-plane", `127.0.0.1:${ports.controlPlane}`, "SERVING", path.join(".run", "control-plane.log")],
          ...endpoints(ports.catalog, CATALOG_REPLICAS).map((endpoint, i) => ["catalog", endpoint, "HEALTHY", path.join(".run", `catalog-${i}.log`)]),
          ...endpoints(ports.orders, ORDERS_REPLICAS).map((endpoint, i) => ["orders", endpoint, "HEALTHY", path.join(".run", `orders-${i}.log`)]),
        ],
        run.output(),
      );
      assert.deepEqual(rows.map((row) => row.pid).sort(), [...run.startedPids].sort(), "the table's pids are the processes started");
      for (const row of rows) assert.ok(fs.existsSync(path.join(run.cwd, row.log)), `${row.log} exists`);
      const catalog1 = rows.find((row) => row.endpoint === stopped())!;
      assert.match(run.stdout, /^ {2}export PATH="\$PWD\/\.tools\/bin:\$PATH"$/m);
      assert.match(run.stdout, /^ {2}TLS="-cacert \.run\/tls\/ca\.crt -cert \.run\/tls\/admin\.crt -key \.run\/tls\/admin\.key"$/m);
      assert.match(run.stdout, new RegExp(`^  grpcurl \\$TLS 127\\.0\\.0\\.1:${ports.controlPlane} list$`, "m"));
      assert.match(run.stdout, new RegExp(`^  grpcurl \\$TLS 127\\.0\\.0\\.1:${ports.controlPlane} protomesh\\.registry\\.v1\\.RegistryService/ListServices$`, "m"));
      assert.match(run.stdout, new RegExp(`^  kill ${catalog1.pid} +# stops catalog-1 \\(${escapeRegExp(catalog1.endpoint)}\\)`, "m"));
    });

    it("serves every TypeScript process's metrics on its admin port (its gRPC port + 1000), as the printed curl says, and the dashboard at the printed URL", async function () {
      const { run, ports } = mesh;
      assert.match(run.stdout, new RegExp(`^  curl -s http://127\\.0\\.0\\.1:${ports.catalog + ADMIN_PORT_OFFSET}/metrics \\| grep '\\^grpc_server_handled_total'$`, "m"));
      const orders0 = endpoints(ports.orders, ORDERS_REPLICAS)[0];
      await placeOrder(mesh, orders0, "launcher-metrics");
      const orders = (await scrape(ports.orders + ADMIN_PORT_OFFSET)).body;
      assert.ok(sample(orders, "grpc_server_handled_total", { grpc_method: "PlaceOrder", grpc_code: "OK" })! >= 1, "orders counts the PlaceOrder");
      assert.ok(
        sample(orders, "grpc_client_handled_total", { grpc_service: "shop.catalog.v1.CatalogService", grpc_method: "GetProduct", grpc_code: "OK" })! >= 1,
        "and its call to the catalog",
      );
      assert.match(run.stdout, new RegExp(`^The live mesh dashboard: http://127\\.0\\.0\\.1:${ports.controlPlane + ADMIN_PORT_OFFSET}/ \\(open it in a browser\\)$`, "m"));
      const page = await scrape(ports.controlPlane + ADMIN_PORT_OFFSET, "/");
      assert.equal(page.code, 200);
      assert.match(page.type, /^text\/html/);
      const controlPlane = (await scrape(ports.controlPlane + ADMIN_PORT_OFFSET)).body;
      assert.equal(sample(controlPlane, "protomesh_controlplane_endpoints", { service: "catalog", state: "HEALTHY" }), CATALOG_REPLICAS);
      assert.equal(sample(controlPlane, "protomesh_controlplane_endpoints", { service: "orders", state: "HEALTHY" }), ORDERS_REPLICAS);
    });

    it("runs every port on STRICT mTLS: the printed grpcurl and grpc-health-probe lines work as pasted, a plaintext client and a stranger's certificate are refused fast", async function () {
      const grpcurl = requireTool(this, "grpcurl");
      requireTool(this, "grpc-health-probe");
      const { run, ports } = mesh;
      const printed = (pattern: RegExp) => run.stdout.split("\n").find((line) => pattern.test(line))?.trim();
      const setup = ["export PATH=\"$PWD/.tools/bin:$PATH\"", printed(/^ {2}TLS=/), printed(/^ {2}PROBE_TLS=/)];
      const getProduct = printed(/^ {2}grpcurl \$TLS -servername catalog -d '\{"id":"sku-1001"\}' /);
      const probe = printed(/^ {2}grpc-health-probe -addr /);
      assert.ok(setup.every(Boolean) && getProduct && probe, run.stdout);
      // As a person pastes them, from the directory make up runs in (its .tools/bin linked in).
      fs.symlinkSync(path.join(path.dirname(grpcurl), ".."), path.join(run.cwd, ".tools"));
      // grpc-health-probe prints its verdict on stderr.
      const pasted = execFileSync("bash", ["-c", [...setup, getProduct, `${probe} 2>&1`].join("\n")], { cwd: run.cwd, encoding: "utf8" });
      assert.match(pasted, /"name": "Espresso beans 1 kg"/);
      assert.match(pasted, /status: SERVING/);
      // Only the control plane's certificate names 127.0.0.1 (what Go and Python xDS clients verify it by).
      const tlsDir = path.join(run.cwd, ".run", "tls");
      assert.match(new X509Certificate(fs.readFileSync(path.join(tlsDir, "control-plane.crt"))).subjectAltName!, /IP Address:127\.0\.0\.1/);
      assert.equal(new X509Certificate(fs.readFileSync(path.join(tlsDir, "catalog-0.crt"))).subjectAltName, "URI:spiffe://protomesh.local/service/catalog, DNS:catalog");
      assert.equal(fs.statSync(tlsDir).mode & 0o777, 0o700, "the CA key, the workloads' keys and the xDS socket are this user's alone");
      const catalog0 = `127.0.0.1:${ports.catalog}`;
      const plaintext = createClient(CatalogServiceClient, catalog0, { logger: captureLog().logger, defaultDeadlineMs: 5_000 });
      const startedAt = Date.now();
      const refused = await callUnary(plaintext.getProduct, plaintext, { id: "sku-1001" });
      plaintext.close();
      assert.equal(refused.error?.code, status.UNAVAILABLE, "a plaintext client never reaches a handler");
      assert.ok(Date.now() - startedAt < 3_000, `refused within ${Date.now() - startedAt} ms`);
      const elsewhere = await createMeshCa({ dir: path.join(run.cwd, "stranger"), trustDomain: "protomesh.local" });
      const stranger = await issueWorkloadCertificate(elsewhere, { service: "orders" });
      const forged = createClient(CatalogServiceClient, catalog0, {
        logger: captureLog().logger,
        defaultDeadlineMs: 5_000,
        tls: { caFile: mesh.tls!.caFile, certFile: stranger.certFile, keyFile: stranger.keyFile, serverService: "catalog" },
      });
      const denied = await callUnary(forged.getProduct, forged, { id: "sku-1001" });
      forged.close();
      assert.equal(denied.error?.code, status.UNAVAILABLE, "a certificate of another CA fails the handshake");
    });

    it("enforces deploy/mesh.yaml's authorization: orders refuses a workload its policy does not name PERMISSION_DENIED, naming the caller and the method", async function () {
      const exports = execFileSync(process.execPath, [path.join(__dirname, "..", "..", "cli", "protomesh.js"), "identity", "pricing"], {
        cwd: mesh.run.cwd,
        encoding: "utf8",
      });
      const files = Object.fromEntries([...exports.matchAll(/^export (PROTOMESH_TLS_[A-Z_]+)=(\S+)$/gm)].map(([, name, value]) => [name, value]));
      const asPricing = createClient(OrderServiceClient, `127.0.0.1:${mesh.ports.orders}`, {
        logger: captureLog().logger,
        defaultDeadlineMs: 5_000,
        tls: { caFile: files.PROTOMESH_TLS_CA_FILE, certFile: files.PROTOMESH_TLS_CERT_FILE, keyFile: files.PROTOMESH_TLS_KEY_FILE, serverService: "orders" },
      });
      const refused = await callUnary(asPricing.placeOrder, asPricing, { customerId: "cust-x", items: [{ productId: "sku-1001", quantity: 1 }], idempotencyKey: "authz-1" });
      asPricing.close();
      assert.equal(refused.error?.code, status.PERMISSION_DENIED, refused.error?.message);
      assert.equal(refused.error?.details, "spiffe://protomesh.local/service/pricing may not call /shop.orders.v1.OrderService/PlaceOrder (no rule allows it)");
      const placed = await placeOrder(mesh, `127.0.0.1:${mesh.ports.orders}`, "authz-2");
      assert.equal(placed.order?.lines[0]?.productName, product.name, "the operator is allowed, and orders may call the catalog");
    });

    it("places an order through an orders replica, which finds the catalog by name through the control plane", async function () {
      const orders1 = mesh.rows.find((row) => row.log.endsWith("orders-1.log"))!;
      const response = await placeOrder(mesh, orders1.endpoint, "launcher-by-name");
      assert.equal(response.order?.lines[0]?.productName, product.name, "orders priced the item from the catalog");
      assert.equal(response.order?.totalCents, 2 * product.priceCents);
      // Services log asynchronously: the line is written soon after the call, not before it returns.
      const byName = /"target":"xds:\/\/\/catalog".*"method":"GetProduct","code":"OK"/;
      await waitFor("orders-1 to log its call to the catalog by name", () =>
        byName.test(fs.readFileSync(path.join(mesh.run.cwd, orders1.log), "utf8")),
      );
    });

    it("reports a replica stopped with SIGTERM, prints a table without it, and keeps serving orders", async function () {
      const { run, ports, rows } = mesh;
      const replica = rows.find((row) => row.endpoint === stopped())!;
      process.kill(replica.pid, "SIGTERM");
      const left = new RegExp(`^\\[\\d\\d:\\d\\d:\\d\\d\\] registry: catalog ${escapeRegExp(stopped())} left \\(was HEALTHY\\)$`, "m");
      await run.waitFor("stdout", left, CHANGE_TIMEOUT_MS);
      await run.waitFor("stderr", new RegExp(`^catalog-1 \\(pid ${replica.pid}\\) exited: exit code 0; the rest keeps running$`, "m"), CHANGE_TIMEOUT_MS);

      const table = tablesIn(run.stdout).at(-1)!;
      assert.deepEqual(
        table.filter((row) => row.service === "catalog").map((row) => [row.endpoint, row.health]),
        endpoints(ports.catalog, CATALOG_REPLICAS).filter((endpoint) => endpoint !== stopped()).map((endpoint) => [endpoint, "HEALTHY"]),
        run.output(),
      );
      assert.equal(table.filter((row) => row.service === "orders" && row.health === "HEALTHY").length, ORDERS_REPLICAS);
      assert.ok(run.isRunning, "the launcher runs on");
      for (let i = 0; i < 6; i += 1) {
        const response = await placeOrder(mesh, `127.0.0.1:${ports.orders}`, `after-stop-${i}`);
        assert.equal(response.order?.lines[0]?.productName, product.name);
      }
    });

    it("stops the replicas, then the control plane, on SIGTERM and exits 0 with every child gone", async function () {
      const { run, rows } = mesh;
      const tablesBefore = tablesIn(run.stdout).length;
      run.child.kill("SIGTERM");
      const exit = await run.exitWithin(EXIT_TIMEOUT_MS);
      assert.deepEqual(exit, { code: 0, signal: null }, run.output());
      assert.match(run.stderr, /^SIGTERM: stopping orders-1, orders-0, catalog-2, catalog-0, control-plane$/m);
      for (const row of rows) {
        const name = path.basename(row.log, ".log");
        assert.match(run.stdout, new RegExp(`^${name} +pid ${row.pid} +exit code 0$`, "m"));
        assert.ok(isProcessGone(row.pid), `${name} (pid ${row.pid}) is gone`);
      }
      assert.equal(tablesIn(run.stdout).length, tablesBefore, "no table is printed while the mesh stops");
    });
  });

  describe("with PROTOMESH_PLAINTEXT=1, the plaintext mesh of local debugging", function () {
    const runs = new Runs();
    let mesh: RunningMesh;

    before(async function () {
      mesh = await runs.up({ CATALOG_TARGET: "127.0.0.1:1", PROTOMESH_PLAINTEXT: "1" });
    });
    after(() => runs.cleanUp());

    it("says so loudly before anything starts, prints plaintext commands, makes no certificates, and serves plaintext", async function () {
      const { run, ports } = mesh;
      assert.match(run.stderr, /PLAINTEXT MESH \(PROTOMESH_PLAINTEXT=1\): no mTLS, no identities, no authorization\./);
      assert.ok(run.stderr.indexOf("PLAINTEXT MESH") < run.stderr.indexOf("started control-plane"), "before the first process");
      assert.match(run.stdout, new RegExp(`^  grpcurl -plaintext 127\\.0\\.0\\.1:${ports.controlPlane} list$`, "m"));
      assert.doesNotMatch(run.stdout, /TLS=/);
      assert.equal(fs.existsSync(path.join(run.cwd, ".run", "tls")), false);
      const response = await placeOrder(mesh, `127.0.0.1:${ports.orders}`, "plaintext-1");
      assert.equal(response.order?.lines[0]?.productName, product.name);
      const log = fs.readFileSync(path.join(run.cwd, ".run", "control-plane.log"), "utf8");
      assert.match(log, /PLAINTEXT: the control plane runs without mTLS/);
    });

    it("refuses a PROTOMESH_PLAINTEXT it cannot read, naming the variable, starting nothing", async function () {
      const run = runs.cli(["up"], { PROTOMESH_PLAINTEXT: "maybe" });
      const exit = await run.exitWithin(EXIT_TIMEOUT_MS);
      assert.deepEqual(exit, { code: 2, signal: null }, run.output());
      assert.match(run.stderr, /PROTOMESH_PLAINTEXT: must be 1 \(a plaintext mesh\) or unset, got "maybe"/);
      assert.deepEqual(run.startedPids, []);
    });
  });

  // README's "Watch the mesh change", step by step, in its order.
  describe("following the README walkthrough", function () {
    const runs = new Runs();
    let mesh: RunningMesh;
    let byHand: ChildProcess | undefined;
    const catalog = (index: number) => mesh.rows.find((row) => row.log.endsWith(`catalog-${index}.log`))!;
    const orderOk = async (key: string) => {
      const response = await placeOrder(mesh, `127.0.0.1:${mesh.ports.orders}`, key);
      assert.equal(response.order?.lines[0]?.productName, product.name);
    };
    const change = (row: Row, what: string) =>
      new RegExp(`^\\[\\d\\d:\\d\\d:\\d\\d\\] registry: .*catalog ${escapeRegExp(row.endpoint)} ${what}`, "m");

    before(async () => {
      mesh = await runs.up({ CATALOG_TARGET: "127.0.0.1:1" });
    });
    after(async () => {
      if (byHand && byHand.exitCode === null) byHand.kill("SIGKILL");
      await runs.cleanUp();
    });

    it("step 2-3: a replica stopped with kill leaves, and orders keep working", async function () {
      process.kill(catalog(1).pid, "SIGTERM");
      await mesh.run.waitFor("stdout", change(catalog(1), "left"), CHANGE_TIMEOUT_MS);
      for (let i = 0; i < 4; i += 1) await orderOk(`walk-3-${i}`);
    });

    it("step 4: a frozen replica (kill -STOP) turns UNHEALTHY within 2 s while orders go to the one left; kill -CONT brings it back", async function () {
      const frozen = catalog(2);
      process.kill(frozen.pid, "SIGSTOP");
      try {
        // The bound is 2 s (heartbeat period + timeout); the wait allows for a loaded machine.
        await mesh.run.waitFor("stdout", change(frozen, "HEALTHY -> UNHEALTHY"), 5_000);
        for (let i = 0; i < 4; i += 1) await orderOk(`walk-4-${i}`);
      } finally {
        process.kill(frozen.pid, "SIGCONT");
      }
      await mesh.run.waitFor("stdout", change(frozen, "UNHEALTHY -> HEALTHY"), CHANGE_TIMEOUT_MS);
    });

    it("step 5: a killed replica (kill -9) turns UNHEALTHY within about a second, and orders keep working", async function () {
      const killed = catalog(2);
      const seen = mesh.run.stdout.length;
      process.kill(killed.pid, "SIGKILL");
      await mesh.run.waitFor("stdout", change(killed, "HEALTHY -> UNHEALTHY"), 5_000, seen);
      for (let i = 0; i < 4; i += 1) await orderOk(`walk-5-${i}`);
    });

    it("step 6: a replica started by hand joins and serves", async function () {
      const [port] = await freePorts(1);
      // The mesh is mTLS: the replica gets its identity from make up's CA first, as the README says.
      const exports = execFileSync(process.execPath, [path.join(__dirname, "..", "..", "cli", "protomesh.js"), "identity", "catalog"], {
        cwd: mesh.run.cwd,
        encoding: "utf8",
      });
      const identity = Object.fromEntries([...exports.matchAll(/^export (PROTOMESH_[A-Z_]+)=(\S+)$/gm)].map(([, name, value]) => [name, value]));
      assert.deepEqual(Object.keys(identity).sort(), ["PROTOMESH_TLS_CA_FILE", "PROTOMESH_TLS_CERT_FILE", "PROTOMESH_TLS_KEY_FILE", "PROTOMESH_XDS_SOCKET"], exports);
      assert.match(exports, /^# spiffe:\/\/protomesh\.local\/service\/catalog, valid until /m);
      byHand = spawn(process.execPath, [path.resolve(__dirname, "..", "..", "services", "catalog", "main.js")], {
        env: { ...process.env, ...identity, PROTOMESH_CONTROL_PLANE: `127.0.0.1:${mesh.ports.controlPlane}`, PORT: String(port), HOST: "127.0.0.1" },
        stdio: "ignore",
      });
      const row = { endpoint: `127.0.0.1:${port}` } as Row;
      await mesh.run.waitFor("stdout", change(row, "joined"), CHANGE_TIMEOUT_MS);
      await waitForServing(row.endpoint, READY_TIMEOUT_MS, undefined, mesh.tls);
      for (let i = 0; i < 4; i += 1) await orderOk(`walk-6-${i}`);
    });

    it("step 7: Ctrl-C stops the replicas make up started, then the control plane; the one started by hand keeps running", async function () {
      mesh.run.child.kill("SIGINT");
      const exit = await mesh.run.exitWithin(EXIT_TIMEOUT_MS);
      // catalog-2 died of the kill -9 of step 5: the launcher says so in its exit code.
      assert.deepEqual(exit, { code: 1, signal: null }, mesh.run.output());
      assert.match(mesh.run.stdout, new RegExp(`^catalog-2 +pid ${catalog(2).pid} +killed by SIGKILL$`, "m"));
      for (const row of mesh.rows.filter((candidate) => !candidate.log.endsWith("catalog-2.log"))) {
        assert.match(mesh.run.stdout, new RegExp(`^${path.basename(row.log, ".log")} +pid ${row.pid} +exit code 0$`, "m"));
      }
      assert.equal(byHand!.exitCode, null, "the replica started by hand is not the launcher's to stop");
      const exited = new Promise<number | null>((resolve) => byHand!.once("exit", (code) => resolve(code)));
      byHand!.kill("SIGTERM");
      assert.equal(await exited, 0);
    });
  });

  describe("with the polyglot mesh of deploy/mesh.yaml: catalog and orders in TypeScript, inventory in Go, pricing in Python", function () {
    const runs = new Runs();
    let mesh: RunningMesh;
    let extraPorts: { inventory: number; pricing: number; gateway: number; gatewayHttp: number };

    before(async function () {
      requireLanguages(this, "go", "python");
      const ports = await meshPorts();
      const taken = new Set([ports.controlPlane, ...endpointsPorts(ports.catalog, CATALOG_REPLICAS), ...endpointsPorts(ports.orders, ORDERS_REPLICAS)]);
      extraPorts = {
        inventory: await freePortRun(2, REPLICA_PORT_STRIDE, taken, [0, ADMIN_PORT_OFFSET]),
        pricing: await freePortRun(2, REPLICA_PORT_STRIDE, taken, [0, ADMIN_PORT_OFFSET]),
        gateway: await freePortRun(1, REPLICA_PORT_STRIDE, taken, [0, ADMIN_PORT_OFFSET]),
        gatewayHttp: await freePortRun(1, REPLICA_PORT_STRIDE, taken),
      };
      const run = runs.cli(["up"], {
        ...ports.env,
        INVENTORY_PORT: String(extraPorts.inventory),
        PRICING_PORT: String(extraPorts.pricing),
        GATEWAY_PORT: String(extraPorts.gateway),
        GATEWAY_HTTP_PORT: String(extraPorts.gatewayHttp),
        PROTOMESH_MESH_CONFIG: path.resolve(__dirname, "..", "..", "..", "deploy", "mesh.yaml"),
      });
      await run.waitFor("stdout", READY, 2 * READY_TIMEOUT_MS);
      mesh = { run, ports, rows: tablesIn(run.stdout)[0], tls: operatorFiles(run.cwd) };
    });
    after(() => runs.cleanUp());

    it("lists 2 inventory (Go) and 2 pricing (Python) replicas HEALTHY beside the TypeScript ones, and commands to try them", function () {
      const { run, rows } = mesh;
      assert.deepEqual(
        rows.map((row) => [row.service, row.health]),
        [
          ["control-plane", "SERVING"],
          ...Array.from({ length: CATALOG_REPLICAS }, () => ["catalog", "HEALTHY"]),
          ["gateway", "HEALTHY"],
          ["inventory", "HEALTHY"],
          ["inventory", "HEALTHY"],
          ["orders", "HEALTHY"],
          ["orders", "HEALTHY"],
          ["pricing", "HEALTHY"],
          ["pricing", "HEALTHY"],
        ],
        run.output(),
      );
      assert.deepEqual(
        rows.filter((row) => row.service === "inventory" || row.service === "pricing").map((row) => row.endpoint),
        [...endpoints(extraPorts.inventory, 2), ...endpoints(extraPorts.pricing, 2)],
      );
      assert.match(run.stdout, new RegExp(`^  grpcurl \\$TLS -servername inventory -d '\\{"product_id":"sku-1001"\\}' 127\\.0\\.0\\.1:${extraPorts.inventory} shop\\.inventory\\.v1\\.InventoryService/GetStock$`, "m"));
      assert.match(run.stdout, new RegExp(`127\\.0\\.0\\.1:${extraPorts.pricing} shop\\.pricing\\.v1\\.PricingService/QuoteBasket$`, "m"));
      assert.doesNotMatch(run.stderr, /is not started/);
    });

    it("places an order through all four services: stock reserved by inventory, basket quoted by pricing, lines named by the catalog", async function () {
      const orders0 = mesh.rows.find((row) => row.service === "orders")!;
      const client = createClient(OrderServiceClient, orders0.endpoint, { logger: captureLog().logger, tls: { ...mesh.tls!, serverService: "orders" } });
      try {
        const response = await new Promise<PlaceOrderResponse>((resolve, reject) =>
          client.placeOrder(
            { customerId: "cust-up", items: [{ productId: "sku-1001", quantity: 5 }], idempotencyKey: "up-polyglot" },
            (error, placed) => (error ? reject(error) : resolve(placed)),
          ),
        );
        const order = response.order!;
        assert.notEqual(order.reservationId, "", "inventory reserved the stock");
        assert.equal(order.lines[0].productName, "Espresso beans 1 kg", "the catalog named the line");
        // 5 × 24.90 = 124.50, 10 % off the line (12.45) = 112.05, then 5 % off the basket (5.60).
        assert.deepEqual([order.lines[0].discountCents, order.lines[0].lineTotalCents, order.discountCents, order.totalCents], [1245, 11205, 560, 10645]);
      } finally {
        client.close();
      }
    });

    it("runs the gateway: the catalog over HTTP/JSON, and PlaceOrder with a development token, by name through the mesh", async function () {
      const base = `http://127.0.0.1:${extraPorts.gatewayHttp}`;
      const product = await fetch(`${base}/v1/products/sku-1003`);
      assert.equal(product.status, 200);
      assert.equal(((await product.json()) as { product: { name: string } }).product.name, "Green tea 100 g");
      const token = execFileSync(process.execPath, [path.join(__dirname, "..", "..", "cli", "protomesh.js"), "token", "--scope", "orders:write"], { cwd: mesh.run.cwd, encoding: "utf8" }).trim();
      const body = JSON.stringify({ customerId: "cust-http", items: [{ productId: "sku-1003", quantity: 1 }], idempotencyKey: "up-http" });
      const refused = await fetch(`${base}/v1/orders`, { method: "POST", body });
      assert.equal(refused.status, 401);
      const placed = await fetch(`${base}/v1/orders`, { method: "POST", body, headers: { authorization: `Bearer ${token}` } });
      assert.equal(placed.status, 200, await placed.clone().text());
      assert.notEqual(((await placed.json()) as { order: { reservationId: string } }).order.reservationId, "");
      assert.match(mesh.run.stdout, new RegExp(`^  curl -s http://127\\.0\\.0\\.1:${extraPorts.gatewayHttp}/v1/products/sku-1001$`, "m"));
    });

    it("enforces inventory's policy in the Go kit: the gateway may read stock but not reserve it (deny wins)", async function () {
      // deploy/mesh.yaml: deny gateway ReserveStock and ReleaseStock, allow gateway "*".
      const base = `http://127.0.0.1:${extraPorts.gatewayHttp}`;
      const token = execFileSync(process.execPath, [path.join(__dirname, "..", "..", "cli", "protomesh.js"), "token", "--scope", "admin"], {
        cwd: mesh.run.cwd,
        encoding: "utf8",
      }).trim();
      const headers = { authorization: `Bearer ${token}` };
      const stock = await fetch(`${base}/v1/stock/sku-1001`);
      assert.equal(stock.status, 200, await stock.clone().text());
      const reserve = await fetch(`${base}/v1/reservations`, {
        method: "POST",
        headers,
        body: JSON.stringify({ orderId: "ord-gw", items: [{ productId: "sku-1001", quantity: 1 }] }),
      });
      const body = await reserve.text();
      assert.equal(reserve.status, 403, body);
      // Past the gateway's own check (the admin scope): the Go inventory refused the gateway's identity.
      assert.match(body, /spiffe:\/\/protomesh\.local\/service\/gateway may not call \/shop\.inventory\.v1\.InventoryService\/ReserveStock \(denied by rules\[0\]\)/);
    });

    it("Ctrl-C stops every replica of every language with exit code 0", async function () {
      mesh.run.child.kill("SIGINT");
      const exit = await mesh.run.exitWithin(EXIT_TIMEOUT_MS);
      assert.deepEqual(exit, { code: 0, signal: null }, mesh.run.output());
      for (const name of ["inventory-0", "inventory-1", "pricing-0", "pricing-1", "orders-0", "catalog-0", "gateway-0"]) {
        assert.match(mesh.run.stdout, new RegExp(`^${name} +pid \\d+ +exit code 0$`, "m"));
      }
    });
  });

  describe("stopped by a SIGTERM to every process at once (systemd's control-group stop, supervisors)", function () {
    const runs = new Runs();
    after(() => runs.cleanUp());

    it("drains every replica and kills nothing when make, the launcher and the replicas all get SIGTERM", async function () {
      const { run, rows } = await runs.up({}, { viaMake: true });
      // `kill -TERM -- -<pgid>` of make's group reaches make and the launcher; make passes it on to
      // the launcher again; a control-group stop also reaches the replicas, in groups of their own.
      process.kill(-run.child.pid!, "SIGTERM");
      for (const row of rows) process.kill(row.pid, "SIGTERM");
      await run.exitWithin(EXIT_TIMEOUT_MS);
      assert.doesNotMatch(run.stderr, /again: killing what is left|sending SIGKILL/, run.output());
      assert.equal([...run.stderr.matchAll(/^SIGTERM: /gm)].length, 1, `one stop, however many signals:\n${run.output()}`);
      for (const row of rows) {
        const name = path.basename(row.log, ".log");
        assert.match(run.stdout, new RegExp(`^${name} +pid ${row.pid} +exit code 0$`, "m"), run.output());
        assert.ok(isProcessGone(row.pid), `${name} is gone`);
        if (row.service === "control-plane") continue;
        const log = fs.readFileSync(path.join(run.cwd, row.log), "utf8");
        assert.match(log, /"msg":"draining"/, `${name} drained`);
        assert.match(log, /"msg":"stopped"/, `${name} stopped after its drain`);
      }
    });
  });

  describe("stopped early, or when something is wrong", function () {
    const runs = new Runs();
    afterEach(() => runs.cleanUp());

    it("stops what it started and exits 0 on SIGTERM while replicas are still starting", async function () {
      const ports = await meshPorts();
      const run = runs.cli(["up"], ports.env);
      await run.waitFor("stderr", /^started catalog-2 /m, READY_TIMEOUT_MS);
      run.child.kill("SIGTERM");
      const exit = await run.exitWithin(EXIT_TIMEOUT_MS);
      assert.deepEqual(exit, { code: 0, signal: null }, run.output());
      assert.match(run.stderr, /^SIGTERM: stopping catalog-2, catalog-1, catalog-0, control-plane$/m);
      assert.deepEqual(tablesIn(run.stdout), [], "no table: the mesh never came up");
      for (const pid of run.startedPids) assert.ok(isProcessGone(pid), `pid ${pid} is gone`);
    });

    it("stops everything and exits 1 when the control plane dies, naming it with its last log lines", async function () {
      const { run, rows } = await runs.up();
      const controlPlane = rows.find((row) => row.service === "control-plane")!;

      process.kill(controlPlane.pid, "SIGKILL");
      const exit = await run.exitWithin(EXIT_TIMEOUT_MS);
      assert.deepEqual(exit, { code: 1, signal: null }, run.output());
      assert.match(run.stderr, new RegExp(`^control-plane \\(pid ${controlPlane.pid}\\) exited unexpectedly: killed by SIGKILL$`, "m"));
      assert.match(run.stderr, /^last lines of \.run\/control-plane\.log:\n( {2}\{.*\n)*? {2}\{.*"msg":"control plane listening"/m);
      assert.match(run.stderr, /^stopping orders-1, orders-0, catalog-2, catalog-1, catalog-0$/m);
      for (const row of rows.slice(1)) {
        assert.match(run.stdout, new RegExp(`^${path.basename(row.log, ".log")} +pid ${row.pid} +exit code 0$`, "m"));
      }
      for (const pid of run.startedPids) assert.ok(isProcessGone(pid), `pid ${pid} is gone`);
    });

    it("exits 2 naming the file and the field when the mesh config is invalid, starting nothing", async function () {
      const ports = await meshPorts();
      const config = path.join(runs.tempDir(), "mesh.yaml");
      fs.writeFileSync(config, "services:\n  catalog:\n    replicas: -1\n");
      const run = runs.cli(["up"], { ...ports.env, PROTOMESH_MESH_CONFIG: config });
      const exit = await run.exitWithin(EXIT_TIMEOUT_MS);
      assert.deepEqual(exit, { code: 2, signal: null }, run.output());
      assert.equal(run.stderr, `protomesh up: mesh config ${config}: services.catalog.replicas: must be an integer from 0 to 64\n`);
    });

    it("refuses to start anything when a port is taken, naming the process and the address", async function () {
      const ports = await meshPorts();
      const squatter = await listenOn(ports.catalog + 2 * REPLICA_PORT_STRIDE);
      try {
        const run = runs.cli(["up"], ports.env);
        const exit = await run.exitWithin(EXIT_TIMEOUT_MS);
        assert.deepEqual(exit, { code: 1, signal: null }, run.output());
        const address = `127\\.0\\.0\\.1:${ports.catalog + 2 * REPLICA_PORT_STRIDE}`;
        assert.match(run.stderr, new RegExp(`catalog-2: cannot listen on ${address}: the address is already in use`));
        assert.deepEqual(run.startedPids, []);
      } finally {
        await closeServer(squatter);
      }
    });

    it("exits 2 naming the variable when CATALOG_PORT is not a port", async function () {
      const run = runs.cli(["up"], { CATALOG_PORT: "50o51" });
      const exit = await run.exitWithin(EXIT_TIMEOUT_MS);
      assert.deepEqual(exit, { code: 2, signal: null }, run.output());
      assert.match(run.stderr, /CATALOG_PORT must be a port number from 1 to 65535, got "50o51"/);
      assert.deepEqual(run.startedPids, []);
    });
  });
});

describe("protomesh (cli/protomesh)", function () {
  const runs = new Runs();
  afterEach(() => runs.cleanUp());

  it("exits 2 with the usage on stderr for an unknown subcommand", async function () {
    const run = runs.cli(["nope"]);
    const exit = await run.exitWithin(EXIT_TIMEOUT_MS);
    assert.deepEqual(exit, { code: 2, signal: null }, run.output());
    assert.match(run.stderr, /^protomesh: unknown command "nope"$/m);
    assert.match(run.stderr, /^Usage: protomesh <command>/m);
    assert.match(run.stderr, /^ {2}up +run the control plane and replicas/m);
    assert.match(run.stderr, /^ {2}control-plane +run the mesh control plane/m);
    assert.equal(run.stdout, "");
  });

  it("prints the usage on stdout and exits 0 for --help", async function () {
    const run = runs.cli(["--help"]);
    const exit = await run.exitWithin(EXIT_TIMEOUT_MS);
    assert.deepEqual(exit, { code: 0, signal: null }, run.output());
    assert.match(run.stdout, /^Usage: protomesh <command>/m);
    assert.equal(run.stderr, "");
  });

  it("control-plane serves on HOST:PORT with the config given and exits 0 on SIGTERM", async function () {
    const [port] = await freePorts(1);
    const run = runs.cli(["control-plane", path.resolve(__dirname, "..", "..", "..", "deploy", "mesh.yaml")], {
      HOST: "127.0.0.1",
      PORT: String(port),
    });
    await waitForServing(`127.0.0.1:${port}`, READY_TIMEOUT_MS);
    assert.match(run.stdout, /"msg":"control plane listening"/);
    assert.match(run.stdout, /"services":5/, "the five services of deploy/mesh.yaml are configured");
    run.child.kill("SIGTERM");
    assert.deepEqual(await run.exitWithin(EXIT_TIMEOUT_MS), { code: 0, signal: null }, run.output());
  });

  it("control-plane exits 1 naming the file and the field when the config is invalid", async function () {
    const config = path.join(runs.tempDir(), "mesh.yaml");
    fs.writeFileSync(config, "services:\n  catalog:\n    lb_policy: random\n");
    const run = runs.cli(["control-plane", config], { PORT: "0" });
    assert.deepEqual(await run.exitWithin(EXIT_TIMEOUT_MS), { code: 1, signal: null }, run.output());
    assert.equal(run.stderr, `protomesh control-plane: ${config}: services.catalog.lb_policy: must be one of round_robin, ring_hash, pick_first, weighted_round_robin, p2c_ewma, least_request\n`);
  });

  it("control-plane exits 2 with its usage for a second argument", async function () {
    const run = runs.cli(["control-plane", "a.yaml", "b.yaml"]);
    assert.deepEqual(await run.exitWithin(EXIT_TIMEOUT_MS), { code: 2, signal: null }, run.output());
    assert.match(run.stderr, /^protomesh control-plane: unexpected argument "b\.yaml"$/m);
    assert.match(run.stderr, /^Usage: protomesh control-plane \[config\.yaml\]$/m);
  });
});

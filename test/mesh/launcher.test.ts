import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { OrderServiceClient } from "../../generated/ts/shop/orders/v1/orders";
import type { PlaceOrderResponse } from "../../generated/ts/shop/orders/v1/orders";
import { createClient } from "../../mesh/client";
import { SEED_PRODUCTS } from "../../services/catalog/seed";
import { captureLog } from "../support/log-capture";

/** The compiled CLI, as `make up` runs it (this file runs from dist/test/mesh). */
const CLI = path.resolve(__dirname, "..", "..", "mesh", "cli.js");
/** Bounds on the launcher starting the stack and on it stopping; both far above what they take. */
const READY_TIMEOUT_MS = 20_000;
const EXIT_TIMEOUT_MS = 20_000;
/** A complete table row, e.g. "orders  127.0.0.1:6002  SERVING  1234  .run/orders.log". */
const ROW = /^(\S+) +(\S+) +(\S+) +(\d+) +(\S+)$/;
const ORDERS_ROW = /^orders +\S+ +\S+ +\d+ +\S+\n/m;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One `node dist/mesh/cli.js ...` subprocess, run in a temporary directory with its output kept. */
class CliRun {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  stdout = "";
  stderr = "";

  constructor(
    args: string[],
    env: Record<string, string>,
    readonly cwd: string,
  ) {
    this.child = spawn(process.execPath, [CLI, ...args], {
      cwd,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child.stdout?.setEncoding("utf8").on("data", (text: string) => (this.stdout += text));
    this.child.stderr?.setEncoding("utf8").on("data", (text: string) => (this.stderr += text));
    // "close" rather than "exit": by then every byte of output has been read.
    this.exited = new Promise((resolve) => this.child.once("close", (code, signal) => resolve({ code, signal })));
  }

  get isRunning(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Pids of the services the launcher reported starting (on stderr, before any table). */
  get startedPids(): number[] {
    return [...this.stderr.matchAll(/^started \S+ \(pid (\d+)\)/gm)].map((match) => Number(match[1]));
  }

  /** Resolves when stdout matches `pattern`; rejects if the CLI exits first or after `timeoutMs`. */
  waitForStdout(pattern: RegExp, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => settle(new Error(`no ${pattern} on stdout within ${timeoutMs} ms`)), timeoutMs);
      const onData = () => {
        if (pattern.test(this.stdout)) settle();
      };
      const onClose = () => settle(new Error(`the CLI exited before printing ${pattern}`));
      const settle = (error?: Error) => {
        clearTimeout(timer);
        this.child.stdout?.off("data", onData);
        this.child.off("close", onClose);
        if (error) reject(new Error(`${error.message}\n${this.output()}`));
        else resolve();
      };
      this.child.stdout?.on("data", onData);
      this.child.once("close", onClose);
      onData();
    });
  }

  /** The exit of the CLI, or a rejection naming its output after `timeoutMs`. */
  async exitWithin(timeoutMs: number): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the CLI did not exit within ${timeoutMs} ms\n${this.output()}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  output(): string {
    return `--- stdout\n${this.stdout}--- stderr\n${this.stderr}`;
  }
}

/** Table rows by service name, parsed from the launcher's stdout. */
function tableRows(stdout: string): Map<string, { address: string; health: string; pid: number; log: string }> {
  const rows = new Map<string, { address: string; health: string; pid: number; log: string }>();
  for (const line of stdout.split("\n")) {
    const match = ROW.exec(line);
    if (match) rows.set(match[1], { address: match[2], health: match[3], pid: Number(match[4]), log: match[5] });
  }
  return rows;
}

/** Ports that were free a moment ago, found by binding 127.0.0.1:0 and closing. */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => listenOnFreePort()));
  const ports = servers.map((server) => (server.address() as net.AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

function listenOnFreePort(): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

function isProcessGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ESRCH";
  }
}

function placeOrder(address: string): Promise<PlaceOrderResponse> {
  const client = createClient(OrderServiceClient, address, { logger: captureLog().logger });
  return new Promise<PlaceOrderResponse>((resolve, reject) => {
    client.placeOrder(
      { customerId: "cust-launcher", items: [{ productId: "sku-1001", quantity: 2 }], idempotencyKey: "launcher-1" },
      (error, response) => (error ? reject(error) : resolve(response)),
    );
  }).finally(() => client.close());
}

describe("protomesh up (mesh/launcher)", function () {
  const runs: CliRun[] = [];
  const workDirs: string[] = [];

  function cli(args: string[], env: Record<string, string> = {}): CliRun {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-up-"));
    workDirs.push(cwd);
    const run = new CliRun(args, env, cwd);
    runs.push(run);
    return run;
  }

  afterEach(async function () {
    // Whatever happened, no launcher and no service it started may outlive the test: ask the
    // launcher to stop them, then kill whatever is left.
    for (const run of runs.splice(0)) {
      if (run.isRunning) {
        run.child.kill("SIGTERM");
        await run.exitWithin(EXIT_TIMEOUT_MS).catch(() => {
          run.child.kill("SIGKILL");
          return run.exited;
        });
      }
      for (const pid of run.startedPids) if (!isProcessGone(pid)) process.kill(pid, "SIGKILL");
    }
    for (const dir of workDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("starts catalog and orders, serves PlaceOrder through both, and drains them with exit 0 on SIGTERM", async function () {
    const [catalogPort, ordersPort] = await freePorts(2);
    const run = cli(["up"], { CATALOG_PORT: String(catalogPort), ORDERS_PORT: String(ordersPort) });
    await run.waitForStdout(ORDERS_ROW, READY_TIMEOUT_MS);

    const rows = tableRows(run.stdout);
    assert.deepEqual([...rows.keys()], ["catalog", "orders"], run.output());
    const catalog = rows.get("catalog")!;
    const orders = rows.get("orders")!;
    assert.equal(catalog.address, `127.0.0.1:${catalogPort}`);
    assert.equal(orders.address, `127.0.0.1:${ordersPort}`);
    assert.equal(catalog.health, "SERVING");
    assert.equal(orders.health, "SERVING");
    assert.equal(catalog.log, path.join(".run", "catalog.log"));
    assert.ok(fs.existsSync(path.join(run.cwd, orders.log)), "the orders log file exists");
    assert.match(run.stdout, new RegExp(`^  grpcurl -plaintext 127\\.0\\.0\\.1:${catalogPort} list$`, "m"));

    const product = SEED_PRODUCTS.find((candidate) => candidate.id === "sku-1001")!;
    const response = await placeOrder(orders.address);
    assert.equal(response.order?.lines[0]?.productName, product.name, "orders priced the item from the catalog");
    assert.equal(response.order?.totalCents, 2 * product.priceCents);

    run.child.kill("SIGTERM");
    const exit = await run.exitWithin(EXIT_TIMEOUT_MS);
    assert.deepEqual(exit, { code: 0, signal: null }, run.output());
    assert.match(run.stdout, new RegExp(`^catalog +pid ${catalog.pid} +exit code 0$`, "m"));
    assert.match(run.stdout, new RegExp(`^orders +pid ${orders.pid} +exit code 0$`, "m"));
    assert.ok(isProcessGone(catalog.pid), `catalog (pid ${catalog.pid}) is gone`);
    assert.ok(isProcessGone(orders.pid), `orders (pid ${orders.pid}) is gone`);
  });

  it("exits 1 naming a service that dies, with its last log lines, and stops the others", async function () {
    const [catalogPort, ordersPort] = await freePorts(2);
    const run = cli(["up"], { CATALOG_PORT: String(catalogPort), ORDERS_PORT: String(ordersPort) });
    await run.waitForStdout(ORDERS_ROW, READY_TIMEOUT_MS);
    const rows = tableRows(run.stdout);
    const catalog = rows.get("catalog")!;
    const orders = rows.get("orders")!;

    process.kill(catalog.pid, "SIGKILL");
    const exit = await run.exitWithin(EXIT_TIMEOUT_MS);
    assert.deepEqual(exit, { code: 1, signal: null }, run.output());
    assert.match(run.stderr, new RegExp(`^catalog \\(pid ${catalog.pid}\\) exited unexpectedly: killed by SIGKILL$`, "m"));
    assert.match(run.stderr, /^last lines of \.run\/catalog\.log:\n {2}\{.*"msg":"listening"/m);
    assert.match(run.stdout, new RegExp(`^orders +pid ${orders.pid} +exit code 0$`, "m"));
    assert.ok(isProcessGone(orders.pid), `orders (pid ${orders.pid}) is gone`);
  });

  it("refuses to start anything when a port is taken, naming the service and the address", async function () {
    const squatter = await listenOnFreePort();
    try {
      const port = (squatter.address() as net.AddressInfo).port;
      const [ordersPort] = await freePorts(1);
      const run = cli(["up"], { CATALOG_PORT: String(port), ORDERS_PORT: String(ordersPort) });
      const exit = await run.exitWithin(EXIT_TIMEOUT_MS);
      assert.deepEqual(exit, { code: 1, signal: null }, run.output());
      assert.match(run.stderr, new RegExp(`catalog: cannot listen on 127\\.0\\.0\\.1:${port}: the address is already in use`));
      assert.deepEqual(run.startedPids, []);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });

  it("exits 2 naming the variable when CATALOG_PORT is not a port", async function () {
    const run = cli(["up"], { CATALOG_PORT: "50o51" });
    const exit = await run.exitWithin(EXIT_TIMEOUT_MS);
    assert.deepEqual(exit, { code: 2, signal: null }, run.output());
    assert.match(run.stderr, /CATALOG_PORT must be a port number from 1 to 65535, got "50o51"/);
    assert.deepEqual(run.startedPids, []);
  });

  it("exits 2 with the usage on stderr for an unknown subcommand", async function () {
    const run = cli(["nope"]);
    const exit = await run.exitWithin(EXIT_TIMEOUT_MS);
    assert.deepEqual(exit, { code: 2, signal: null }, run.output());
    assert.match(run.stderr, /^protomesh: unknown command "nope"$/m);
    assert.match(run.stderr, /^Usage: protomesh <command>/m);
    assert.match(run.stderr, /^ {2}up +run the reference services/m);
    assert.equal(run.stdout, "");
  });

  it("prints the usage on stdout and exits 0 for --help", async function () {
    const run = cli(["--help"]);
    const exit = await run.exitWithin(EXIT_TIMEOUT_MS);
    assert.deepEqual(exit, { code: 0, signal: null }, run.output());
    assert.match(run.stdout, /^Usage: protomesh <command>/m);
    assert.equal(run.stderr, "");
  });
});

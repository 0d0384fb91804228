import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { CatalogServiceClient } from "../../generated/ts/shop/catalog/v1/catalog";
import { OrderServiceClient } from "../../generated/ts/shop/orders/v1/orders";
import { HealthState, RegistryServiceClient } from "../../generated/ts/protomesh/registry/v1/registry";
import type { ListServicesResponse } from "../../generated/ts/protomesh/registry/v1/registry";
import type { Service } from "../../generated/ts/protomesh/registry/v1/registry";
import { waitForServing } from "../../cli/health-wait";
import { RegistryWatch } from "../../cli/registry-watch";
import { Metadata, credentials } from "@grpc/grpc-js";
import type { Client } from "@grpc/grpc-js";
import { createClient } from "../../mesh/client";
import type { ClientConstructor } from "../../mesh/client";
import { DELAY_ENV, FAIL_CODE_ENV, MAX_CONCURRENT_ENV } from "./delayed-catalog";
import { captureLog } from "./log-capture";
import type { CapturedLog } from "./log-capture";
import type { NetworkNamespace } from "./netns";
import { freePorts } from "./ports";
import { repoRoot } from "./tools";
import { waitFor } from "./wait";

/**
 * A real mesh as processes, for chaos tests: the control plane (`protomesh control-plane` with a
 * mesh config written here) and catalog replicas (services/catalog/main.js, or the delayed catalog
 * of delayed-catalog.ts), each its own process that a test can kill, freeze, continue and restart,
 * optionally inside a network namespace (netns.ts). The control plane's view is followed with
 * WatchServices, each health change timestamped; {@link ChaosMesh.stop} ends every process it
 * started, whatever state it is in.
 */

/** The compiled programs (this file runs from dist/test/support). */
const CLI = path.resolve(__dirname, "..", "..", "cli", "protomesh.js");
const CATALOG_MAIN = path.resolve(__dirname, "..", "..", "services", "catalog", "main.js");
const DELAYED_CATALOG = path.resolve(__dirname, "delayed-catalog.js");
const ORDERS_MAIN = path.resolve(__dirname, "..", "..", "services", "orders", "main.js");

/** Bounds far above what starting a process and its first health change take on 2 busy cores. */
export const START_TIMEOUT_MS = 20_000;
/** How long a process may take to stop on SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 5_000;
/** Output kept per process for failure messages (its last characters). */
const OUTPUT_KEPT_CHARS = 16_000;
/** Log level of every process: warnings only, so that a call costs no log line. */
const PROCESS_LOG_LEVEL = "warn";

/**
 * The mesh config of a chaos test: deploy/mesh.yaml's policies of `services` as deployed (LB
 * policy, client health checks, timeouts, retries, keepalive), with a lease TTL of the test's
 * choosing, and `overrides` merged into a service's policy.
 */
export function chaosMeshConfig(
  leaseTtlMs: number,
  services: readonly string[] = ["catalog"],
  overrides: Record<string, Record<string, unknown>> = {},
): string {
  const deployed = parseYaml(fs.readFileSync(path.join(repoRoot(), "deploy", "mesh.yaml"), "utf8")) as {
    services: Record<string, Record<string, unknown>>;
  };
  const policies = Object.fromEntries(services.map((name) => [name, { ...deployed.services[name], ...overrides[name] }]));
  return stringifyYaml({ lease_ttl_ms: leaseTtlMs, services: policies });
}

/** One process of the mesh, its stdout and stderr kept (the tail) for failure messages. */
export class MeshProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  private output = "";

  constructor(
    readonly name: string,
    file: string,
    args: readonly string[],
    env: Record<string, string>,
  ) {
    this.child = spawn(file, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    const keep = (text: string) => {
      this.output = (this.output + text).slice(-OUTPUT_KEPT_CHARS);
    };
    this.child.stdout?.setEncoding("utf8").on("data", keep);
    this.child.stderr?.setEncoding("utf8").on("data", keep);
    this.exited = new Promise((resolve) => this.child.once("close", () => resolve()));
  }

  get isRunning(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends `signal`; returns when (ms since the epoch). */
  signal(signal: NodeJS.Signals): number {
    const at = Date.now();
    if (this.isRunning) this.child.kill(signal);
    return at;
  }

  /** Continues it (if frozen) and asks it to stop; kills it after STOP_TIMEOUT_MS. */
  async stop(): Promise<void> {
    if (!this.isRunning) return this.exited;
    this.child.kill("SIGCONT");
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }

  /** The last of its output (stdout and stderr), as text. */
  get recentOutput(): string {
    return this.output;
  }

  /** Its name and the last of its output. */
  describe(): string {
    return `--- ${this.name} (pid ${this.child.pid ?? "?"}, ${this.isRunning ? "running" : "exited"})\n${this.output}`;
  }
}

/** How a replica is run. */
export interface ReplicaOptions {
  /** The service: "catalog" (default) or "orders" (services/orders/main.js itself). */
  service?: "catalog" | "orders";
  /** Further environment of the process (ORDERS_STORE_URL, say). */
  env?: Record<string, string>;
  /** GetProduct answers this late (the delayed catalog); unset: services/catalog/main.js itself. */
  delayMs?: number;
  /** The delayed catalog sheds calls beyond this many in flight. */
  maxConcurrentCalls?: number;
  /** The delayed catalog fails every GetProduct with this code (health stays SERVING) until SIGUSR2. */
  failCode?: number;
  /** Runs it inside this namespace, bound to 0.0.0.0 and registered with the namespace's address. */
  namespace?: NetworkNamespace;
  /** Runs this program instead (a Go or Python service, say), with the same environment. */
  program?: { file: string; args: readonly string[] };
}

/** One catalog replica: a process, restarted on the same port when asked. */
export class Replica {
  process: MeshProcess | undefined;

  constructor(
    readonly name: string,
    readonly address: string,
    readonly port: number,
    private readonly options: ReplicaOptions,
    private readonly controlPlane: string,
  ) {}

  /** The endpoint as the registry and grpc-js name it ("10.213.0.2:40123"). */
  get endpoint(): string {
    return `${this.address}:${this.port}`;
  }

  /** Starts (or starts again) the process. */
  spawn(): MeshProcess {
    const { namespace, delayMs, service, maxConcurrentCalls, failCode } = this.options;
    const env: Record<string, string> = {
      PORT: String(this.port),
      HOST: namespace ? "0.0.0.0" : this.address,
      PROTOMESH_CONTROL_PLANE: this.controlPlane,
      PROTOMESH_ADVERTISE_HOST: namespace ? namespace.address : "",
      PROTOMESH_ZONE: "",
      PROTOMESH_LOG_LEVEL: PROCESS_LOG_LEVEL,
      [DELAY_ENV]: String(delayMs ?? 0),
      [MAX_CONCURRENT_ENV]: maxConcurrentCalls === undefined ? "" : String(maxConcurrentCalls),
      [FAIL_CODE_ENV]: failCode === undefined ? "" : String(failCode),
      ...this.options.env,
    };
    const isDelayed = delayMs !== undefined || maxConcurrentCalls !== undefined || failCode !== undefined;
    const script = service === "orders" ? ORDERS_MAIN : isDelayed ? DELAYED_CATALOG : CATALOG_MAIN;
    const [file, args] = this.options.program
      ? [this.options.program.file, this.options.program.args]
      : namespace
        ? namespace.command(process.execPath, [script])
        : [process.execPath, [script]];
    this.process = new MeshProcess(this.name, file, args, env);
    return this.process;
  }

  /** SIGKILL; returns when. */
  kill(): number {
    return this.process!.signal("SIGKILL");
  }

  /** SIGSTOP; returns when. */
  freeze(): number {
    return this.process!.signal("SIGSTOP");
  }

  /** SIGCONT; returns when. */
  thaw(): number {
    return this.process!.signal("SIGCONT");
  }

  /** SIGUSR2: the delayed catalog stops failing (see `failCode`); returns when. */
  heal(): number {
    return this.process!.signal("SIGUSR2");
  }
}

/** A health change of an endpoint in the control plane's view, and when the watch saw it. */
export interface HealthChange {
  at: number;
  endpoint: string;
  /** HealthState, or undefined when the endpoint left the registry. */
  health: HealthState | undefined;
}

/** A control plane and catalog replicas as processes, and mesh clients of them. */
export class ChaosMesh {
  readonly replicas = new Map<string, Replica>();
  readonly healthChanges: HealthChange[] = [];
  /** Warnings of the test's own clients. */
  readonly log: CapturedLog = captureLog("warn");
  private controlPlaneProcess: MeshProcess | undefined;
  private readonly retired: MeshProcess[] = [];
  private readonly clients: Client[] = [];
  private watch: RegistryWatch | undefined;
  private health = new Map<string, HealthState>();

  private constructor(
    readonly dir: string,
    readonly configPath: string,
    readonly controlPlane: string,
    private readonly controlPlaneHost: string,
    private readonly controlPlanePort: number,
  ) {}

  /**
   * Writes `meshConfig` (YAML) and starts the control plane with it on `controlPlaneHost` (a
   * namespace's host address when a replica lives in one: the replica must reach it over the veth).
   */
  static async start(options: { meshConfig: string; controlPlaneHost?: string }): Promise<ChaosMesh> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-chaos-"));
    const configPath = path.join(dir, "mesh.yaml");
    fs.writeFileSync(configPath, options.meshConfig);
    const host = options.controlPlaneHost ?? "127.0.0.1";
    const [port] = await freePorts(1);
    const mesh = new ChaosMesh(dir, configPath, `${host}:${port}`, host, port);
    try {
      await mesh.startControlPlane();
    } catch (error) {
      await mesh.stop(); // the caller has no mesh to stop
      throw error;
    }
    mesh.watch = new RegistryWatch(mesh.controlPlane, (services) => mesh.record(services));
    return mesh;
  }

  /** Starts the control plane process (again, after a kill) and waits until it is SERVING. */
  async startControlPlane(): Promise<void> {
    if (this.controlPlaneProcess) this.retired.push(this.controlPlaneProcess);
    this.controlPlaneProcess = new MeshProcess("control-plane", process.execPath, [CLI, "control-plane", this.configPath], {
      HOST: this.controlPlaneHost,
      PORT: String(this.controlPlanePort),
      PROTOMESH_MESH_CONFIG: "",
      PROTOMESH_LOG_LEVEL: PROCESS_LOG_LEVEL,
    });
    await this.ready(waitForServing(this.controlPlane, START_TIMEOUT_MS), "the control plane to serve");
  }

  /** SIGKILLs the control plane; returns when. */
  killControlPlane(): number {
    return this.controlPlaneProcess!.signal("SIGKILL");
  }

  /**
   * Starts replica `name` (on 127.0.0.1, or in `options.namespace`) and waits until the control
   * plane has it HEALTHY.
   */
  async addReplica(name: string, options: ReplicaOptions = {}): Promise<Replica> {
    const [port] = await freePorts(1);
    const address = options.namespace?.address ?? "127.0.0.1";
    const replica = new Replica(name, address, port, options, this.controlPlane);
    this.replicas.set(name, replica);
    replica.spawn();
    await this.waitHealth(replica, HealthState.HEALTH_STATE_HEALTHY);
    return replica;
  }

  /** Restarts a replica that was killed, on its port, and waits until it is HEALTHY again. */
  async restart(replica: Replica): Promise<void> {
    if (replica.process) {
      await replica.process.stop();
      this.retired.push(replica.process);
    }
    replica.spawn();
    await this.waitHealth(replica, HealthState.HEALTH_STATE_HEALTHY);
  }

  /**
   * Resolves once the running control plane's registry (asked with ListServices, not the watch's
   * history) has every one of `replicas` HEALTHY: after a control-plane restart, a replica that
   * re-registered before the watch's first view of the new control plane shows no change there.
   */
  async waitRegistered(replicas: readonly Replica[], timeoutMs = START_TIMEOUT_MS): Promise<void> {
    const registry = new RegistryServiceClient(this.controlPlane, credentials.createInsecure());
    try {
      const healthy = async () => {
        const listed = await new Promise<ListServicesResponse | undefined>((resolve) =>
          registry.listServices({ service: "" }, new Metadata(), { deadline: Date.now() + 1_000 }, (error, response) => resolve(error ? undefined : response)),
        );
        const states = new Map(listed?.services.flatMap((service) => service.endpoints.map((endpoint) => [endpoint.endpointId, endpoint.health])) ?? []);
        return replicas.every((replica) => states.get(replica.endpoint) === HealthState.HEALTH_STATE_HEALTHY);
      };
      await this.ready(waitFor(`${replicas.map((replica) => replica.name).join(", ")} HEALTHY in the control plane's registry`, healthy, timeoutMs, 50), "the replicas to register");
    } finally {
      registry.close();
    }
  }

  /** The control plane's health of `replica` now (undefined: not registered). */
  healthOf(replica: Replica): HealthState | undefined {
    return this.health.get(replica.endpoint);
  }

  /**
   * Resolves once the control plane has `replica` in `health` (undefined: gone from the registry):
   * with `since`, to when (ms since the epoch) it first changed to that at or after `since`;
   * without, to now once it is so. Rejects with every process's output after `timeoutMs`.
   */
  async waitHealth(replica: Replica, health: HealthState | undefined, timeoutMs = START_TIMEOUT_MS, since?: number): Promise<number> {
    const change = () =>
      this.healthChanges.find((seen) => seen.endpoint === replica.endpoint && seen.health === health && seen.at >= since!);
    const isMet = () => (since === undefined ? this.healthOf(replica) === health : change() !== undefined);
    const what = `${replica.name} (${replica.endpoint}) to be ${health === undefined ? "gone" : HealthState[health]}`;
    await this.ready(
      // The watch asks its waiters before it tells onView: record this view first (record is idempotent).
      this.watch!.until((services) => {
        this.record(services);
        return isMet();
      }, timeoutMs).then((met) => {
        if (!met) throw new Error(`not within ${timeoutMs} ms`);
      }),
      what,
    );
    return since === undefined ? Date.now() : change()!.at;
  }

  /**
   * A catalog client dialling `catalog` by name through the control plane (closed by `stop`), once
   * its channel is READY: the xDS resources are in and an endpoint is connected, so that traffic
   * measures the mesh, not the client's start.
   */
  client(): Promise<CatalogServiceClient> {
    return this.readyClient(CatalogServiceClient, "catalog");
  }

  /** An orders client dialling `orders` by name through the control plane (closed by `stop`), once READY. */
  ordersClient(): Promise<OrderServiceClient> {
    return this.readyClient(OrderServiceClient, "orders");
  }

  private async readyClient<C extends Client>(clientClass: ClientConstructor<C>, service: string): Promise<C> {
    const client = createClient(clientClass, service, { controlPlane: this.controlPlane, logger: this.log.logger });
    this.clients.push(client);
    await this.ready(
      new Promise<void>((resolve, reject) =>
        client.waitForReady(Date.now() + START_TIMEOUT_MS, (error) => (error ? reject(error) : resolve())),
      ),
      `the ${service} client's channel to be READY`,
    );
    return client;
  }

  /** The replica a grpc-js peer string names ("127.0.0.1:40123" → "r0"), else the peer itself. */
  replicaOf(peer: string): string {
    for (const replica of this.replicas.values()) if (replica.endpoint === peer) return replica.name;
    return peer;
  }

  /** Every process's recent output and the health changes, for an assertion's message. */
  describe(): string {
    const processes = [this.controlPlaneProcess, ...this.retired, ...[...this.replicas.values()].map((replica) => replica.process)];
    const changes = this.healthChanges.map((change) => `${new Date(change.at).toISOString()} ${change.endpoint} ${change.health === undefined ? "gone" : HealthState[change.health]}`);
    return [`--- health changes\n${changes.join("\n")}`, ...processes.filter((p) => p !== undefined).map((p) => p.describe())].join("\n");
  }

  /** Closes the clients and the watch, then stops every process (continuing frozen ones first). */
  async stop(): Promise<void> {
    for (const client of this.clients) client.close();
    this.watch?.close();
    const processes = [...this.replicas.values()].map((replica) => replica.process);
    await Promise.all([...processes, ...this.retired].map((child) => child?.stop()));
    await this.controlPlaneProcess?.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** Notes the health changes between the last view and `services` (none when it is the same view). */
  private record(services: Service[]): void {
    const now = Date.now();
    const current = new Map<string, HealthState>();
    for (const service of services) {
      for (const endpoint of service.endpoints) current.set(endpoint.endpointId, endpoint.health);
    }
    for (const [endpoint, health] of current) {
      if (this.health.get(endpoint) !== health) this.healthChanges.push({ at: now, endpoint, health });
    }
    for (const endpoint of this.health.keys()) {
      if (!current.has(endpoint)) this.healthChanges.push({ at: now, endpoint, health: undefined });
    }
    this.health = current;
  }

  private async ready(waiting: Promise<unknown>, what: string): Promise<void> {
    try {
      await waiting;
    } catch (error) {
      throw new Error(`waiting for ${what}: ${(error as Error).message}\n${this.describe()}`, { cause: error });
    }
  }
}

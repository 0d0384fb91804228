import * as path from "node:path";
import type { CallRecord } from "./call-record";
import type { OpenLoad } from "./open-loop-process";
import { LOAD_CORE, NodeChild, SERVER_CORE } from "./pinned-process";
import type { ProcessSample } from "./process-probe";
import { pollUntil } from "./poll";
import type { BenchContext } from "./scenario";
import type { NetworkNamespace } from "../test/support/netns";
import { BENCH_DIST_DIR } from "./tools";

/**
 * The processes of the mesh scenarios (B3, B4, B7) as the harness drives them: a control plane and
 * replica hosts pinned to the server core, open-loop clients pinned to the load core. Whoever starts
 * one stops it; {@link MeshProcesses} stops everything it started, also when a scenario fails.
 */

/** The mesh service name the bench replicas register under and the clients dial. */
export const BENCH_SERVICE = "bench-catalog";

function logFile(context: BenchContext, name: string): string | undefined {
  return context.logDir ? path.join(context.logDir, `${name}-${Date.now()}.log`) : undefined;
}

/** The control plane process (controlplane-process.ts). */
export class BenchControlPlane {
  private constructor(
    readonly address: string,
    readonly child: NodeChild,
  ) {}

  static async start(
    context: BenchContext,
    options: { policy: string; leaseTtlMs: number; retries?: number; host?: string },
  ): Promise<BenchControlPlane> {
    const host = options.host ?? "127.0.0.1";
    const { child, port } = await NodeChild.start({
      script: path.join(BENCH_DIST_DIR, "controlplane-process.js"),
      args: [
        "--service", BENCH_SERVICE,
        "--policy", options.policy,
        "--lease-ttl-ms", String(options.leaseTtlMs),
        "--retries", String(options.retries ?? 0),
        "--host", host,
      ],
      core: SERVER_CORE,
      logFile: logFile(context, "control-plane"),
    });
    return new BenchControlPlane(`${host}:${port}`, child);
  }

  /** Puts `policy` in force for the bench service (clients that subscribe get it). */
  setPolicy(policy: string): Promise<void> {
    return this.child.request("setPolicy", { policy });
  }

  /** Resolves once `count` endpoints of the bench service are HEALTHY. */
  async waitHealthy(count: number, timeoutMs: number): Promise<void> {
    await pollUntil(
      `${count} healthy ${BENCH_SERVICE} endpoints`,
      async () => (await this.child.request<number>("healthy")) === count,
      timeoutMs,
    );
  }
}

/** Options of a replica host process. */
export interface ReplicaHostOptions {
  ids: readonly string[];
  controlPlane: string;
  /** auto: each server registers in listen; manual: on `register` (B7). */
  register: "auto" | "manual";
  medianMs: number;
  seed: number;
  /** Ports to bind (a restart binds the port it had); 0 or unset: free ones. */
  ports?: readonly number[];
  /** Runs the host in this network namespace, bound to 0.0.0.0 and registered with the namespace's address. */
  namespace?: NetworkNamespace;
}

/** A process hosting one or more bench replicas (replica-process.ts). */
export class ReplicaHost {
  private constructor(
    readonly child: NodeChild,
    readonly ports: Record<string, number>,
    /** The address its replicas register and clients reach them at. */
    readonly address: string,
  ) {}

  static async start(context: BenchContext, options: ReplicaHostOptions): Promise<ReplicaHost> {
    const namespace = options.namespace;
    const { child } = await NodeChild.start({
      script: path.join(BENCH_DIST_DIR, "replica-process.js"),
      args: [
        "--ids", options.ids.join(","),
        "--service", BENCH_SERVICE,
        "--control-plane", options.controlPlane,
        "--register", options.register,
        "--median-ms", String(options.medianMs),
        "--seed", String(options.seed),
        ...(options.ports ? ["--ports", options.ports.join(",")] : []),
        ...(namespace ? ["--host", "0.0.0.0", "--advertise", namespace.address] : []),
      ],
      core: SERVER_CORE,
      logFile: logFile(context, `replica-${options.ids.join("-")}`),
      wrap: namespace ? (file, args) => namespace.command(file, args) : undefined,
    });
    const replicas = await child.request<{ id: string; port: number }[]>("replicas");
    return new ReplicaHost(child, Object.fromEntries(replicas.map(({ id, port }) => [id, port])), namespace?.address ?? "127.0.0.1");
  }

  /** Its replicas by the address a client's call names as its peer ("127.0.0.1:40123" → "r0"). */
  get addresses(): Record<string, string> {
    return Object.fromEntries(Object.entries(this.ports).map(([id, port]) => [`${this.address}:${port}`, id]));
  }

  /** Sets a replica's median latency; resolves to when it took effect (epoch ms). */
  setMedian(id: string, medianMs: number): Promise<number> {
    return this.child.request("setMedian", { id, medianMs });
  }

  /** Sets a replica's grpc.health.v1 status; resolves to when (epoch ms). */
  setServing(id: string, isServing: boolean): Promise<number> {
    return this.child.request("setServing", { id, isServing });
  }

  /** Registers a replica (manual hosts); resolves to when the Register call was sent (epoch ms). */
  register(id: string): Promise<number> {
    return this.child.request("register", { id });
  }

  /** Deregisters a replica (manual hosts); resolves to when the Deregister call was sent (epoch ms). */
  deregister(id: string): Promise<number> {
    return this.child.request("deregister", { id });
  }

  /** Sends `signal` to the process (SIGKILL, SIGSTOP, SIGCONT); returns when (epoch ms). */
  signal(signal: NodeJS.Signals): number {
    process.kill(this.child.pid, signal);
    return performance.timeOrigin + performance.now();
  }
}

/** Options of an open-loop client process. */
export interface OpenLoopOptions {
  kind: "plain" | "mesh";
  /** mesh: the service name (dialled as xds:///name); plain: a static ipv4: list. */
  target: string;
  controlPlane?: string;
}

/** An open-loop client process (open-loop-process.ts). */
export class OpenLoopClient {
  private constructor(
    readonly kind: "plain" | "mesh",
    readonly child: NodeChild,
  ) {}

  static async start(context: BenchContext, options: OpenLoopOptions): Promise<OpenLoopClient> {
    const { child } = await NodeChild.start({
      script: path.join(BENCH_DIST_DIR, "open-loop-process.js"),
      args: [
        "--kind", options.kind,
        "--target", options.target,
        ...(options.controlPlane ? ["--control-plane", options.controlPlane] : []),
      ],
      core: LOAD_CORE,
      logFile: logFile(context, `open-loop-${options.kind}`),
    });
    return new OpenLoopClient(options.kind, child);
  }

  /** Starts the load; resolves to when it started (epoch ms). */
  begin(load: OpenLoad): Promise<number> {
    return this.child.request("begin", load);
  }

  /** OK calls per replica among those issued since `since` (epoch ms). */
  served(since: number): Promise<Record<string, number>> {
    return this.child.request("served", { since });
  }

  /**
   * Resolves to when (epoch ms, as seen here) every replica of `ids` has answered a call issued since
   * `since`; with no ids, when any replica has.
   */
  waitServedBy(ids: readonly string[], since: number, timeoutMs: number): Promise<number> {
    return pollUntil(
      `${this.kind} client: a call served by each of ${ids.join(", ")}`,
      async () => {
        const served = await this.served(since);
        return ids.length === 0 ? Object.values(served).some((count) => count > 0) : ids.every((id) => (served[id] ?? 0) > 0);
      },
      timeoutMs,
    );
  }

  /** Stops the load and returns every call it made (waits for those in flight, bounded). */
  end(timeoutMs = 30_000): Promise<CallRecord[]> {
    return this.child.request("end", undefined, timeoutMs);
  }
}

/** A process started by a mesh scenario: anything with a NodeChild and a window of figures. */
interface Started {
  child: NodeChild;
}

/**
 * Every process a mesh scenario starts, stopped together by {@link MeshProcesses.stopAll}
 * (continuing any it froze first), so that a scenario that fails leaves nothing behind.
 */
export class MeshProcesses {
  private readonly started = new Set<Started>();
  private readonly frozen = new Set<ReplicaHost>();

  /** Remembers `process` for stopAll and returns it. */
  add<T extends Started>(started: T): T {
    this.started.add(started);
    return started;
  }

  /** Freezes a replica host (SIGSTOP); returns when. */
  freeze(host: ReplicaHost): number {
    this.frozen.add(host);
    return host.signal("SIGSTOP");
  }

  /** Continues a frozen replica host (SIGCONT); returns when. */
  thaw(host: ReplicaHost): number {
    this.frozen.delete(host);
    return host.signal("SIGCONT");
  }

  /** Kills a process (SIGKILL) and forgets it; returns when. */
  kill(host: ReplicaHost): number {
    this.frozen.delete(host);
    this.started.delete(host);
    return host.signal("SIGKILL");
  }

  /** Starts a measurement window in each of `processes`. */
  async mark(processes: readonly Started[]): Promise<void> {
    await Promise.all(processes.map((started) => started.child.request("mark")));
  }

  /** The figures of each of `processes` since its mark. */
  sample(processes: readonly Started[]): Promise<ProcessSample[]> {
    return Promise.all(processes.map((started) => started.child.request<ProcessSample>("sample")));
  }

  /** Stops `started` now (a client between runs) and forgets it. */
  async stop(started: Started): Promise<void> {
    this.started.delete(started);
    await started.child.stop();
  }

  /** Continues what is frozen, then stops every process still running. */
  async stopAll(): Promise<void> {
    for (const host of this.frozen) host.signal("SIGCONT");
    this.frozen.clear();
    const all = [...this.started];
    this.started.clear();
    await Promise.all(all.map((started) => started.child.stop()));
  }
}

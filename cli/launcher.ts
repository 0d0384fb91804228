/**
 * Runs a local mesh as one unit, the way `docker compose up` runs containers: the control plane
 * first, then the service replicas stage by stage, each waited on until it reports SERVING over
 * grpc.health.v1. It then prints every endpoint as the control plane's registry sees it, follows
 * the registry (WatchServices) and prints the table again whenever it changes. A replica that exits
 * is reported and the rest runs on; the control plane exiting stops everything. On SIGINT/SIGTERM
 * the replicas get the SIGTERM that makes a protomesh service deregister and drain, last stage
 * first, then the control plane; a second Ctrl-C, a moment after the first, kills what is left.
 *
 * This is a terminal program, not a library with a log: the tables and the reports are its output,
 * written to stdout and stderr.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { HealthState } from "../generated/ts/protomesh/registry/v1/registry";
import type { Service } from "../generated/ts/protomesh/registry/v1/registry";
import { SERVING, waitForServing } from "./health-wait";
import { LaunchedProcess, assertAddressFree, describeExit } from "./launcher-process";
import type { ExitStatus, ProcessSpec } from "./launcher-process";
import { TablePrinter, tableRows } from "./launcher-table";
import { RegistryWatch } from "./registry-watch";
import { DEFAULT_DRAIN_GRACE_MS } from "../mesh/server";
import type { MeshTlsOptions } from "../mesh/tls";
import { isEscalation } from "../mesh/shutdown";

export type { ProcessSpec } from "./launcher-process";

/** What to run: a control plane and the replicas that register with it. */
export interface MeshPlan {
  /** Started first, stopped last; serves the registry the table is read from. Its exit stops everything. */
  controlPlane: ProcessSpec;
  /**
   * Replicas in start order: the processes of a stage start together, and the next stage once
   * every one of them reports SERVING (dependencies first). Stopped in the reverse order.
   */
  stages: ProcessSpec[][];
}

/** The launcher's directory of log files unless given another, under the working directory. */
export const DEFAULT_RUN_DIR = ".run";

/** Options of {@link launch}. */
export interface LaunchOptions {
  /** Directory of the log files, created when missing; DEFAULT_RUN_DIR under the working directory unless given. */
  runDir?: string;
  /** How long a stage may take to report SERVING, and the registry to see the replicas HEALTHY. */
  readyTimeoutMs?: number;
  /** How long each stage may take to exit after SIGTERM before it gets SIGKILL. */
  stopTimeoutMs?: number;
  /** Printed after the first table (commands to try, say); gets the pid of a process by name. */
  readyText?: (pidOf: (name: string) => number | undefined) => string;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** The launcher's own identity on an mTLS mesh: its health checks and registry watch use it. Plaintext unless given. */
  tls?: MeshTlsOptions;
}

/** Default time a stage has to report SERVING: node starting plus a bind, with a wide margin. */
export const READY_TIMEOUT_MS = 15_000;
/** Default time a stage has to exit after SIGTERM: a service's drain grace period plus a margin. */
export const STOP_TIMEOUT_MS = DEFAULT_DRAIN_GRACE_MS + 5_000;
/** Signals that stop the launched processes. SIGHUP too: they do not share the terminal's group. */
export const STOP_SIGNALS: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/** Log lines shown when a replica exits with code 0 while the rest runs on. */
const CLEAN_EXIT_TAIL_LINES = 3;

type Interruption =
  | { kind: "signal"; signal: NodeJS.Signals }
  | { kind: "exited"; proc: LaunchedProcess; status: ExitStatus }
  | { kind: "unhealthy"; proc: LaunchedProcess; error: Error };

/**
 * Starts `plan`, prints the table and `readyText`, then runs until a stop signal or until the
 * control plane exits (or something fails to start), and stops every process. Resolves to the exit
 * code for the launcher: 0 when stopped on request and every process exited cleanly (code 0, or
 * the SIGTERM of the stop before it had a handler), otherwise 1.
 * Rejects, with nothing started, when a name or address repeats or an address is taken.
 */
export async function launch(plan: MeshPlan, options: LaunchOptions = {}): Promise<number> {
  const specs = [plan.controlPlane, ...plan.stages.flat()];
  assertDistinct(specs.map((spec) => spec.name), "process names");
  assertDistinct(specs.map((spec) => spec.address), "addresses");
  for (const spec of specs) await assertAddressFree(spec);
  const runDir = path.resolve(options.runDir ?? DEFAULT_RUN_DIR);
  fs.mkdirSync(runDir, { recursive: true });
  return new MeshRun(plan, runDir, options).run();
}

class MeshRun {
  private readonly out: NodeJS.WritableStream;
  private readonly err: NodeJS.WritableStream;
  private readonly readyTimeoutMs: number;
  private readonly byName = new Map<string, LaunchedProcess>();
  private watch: RegistryWatch | undefined;
  private readonly table: TablePrinter;
  private isStopping = false;
  private requestStop: (signal: NodeJS.Signals) => void = () => undefined;
  private readonly stopRequested = new Promise<Interruption>((resolve) => {
    this.requestStop = (signal) => resolve({ kind: "signal", signal });
  });

  constructor(
    private readonly plan: MeshPlan,
    private readonly runDir: string,
    private readonly options: LaunchOptions,
  ) {
    this.out = options.stdout ?? process.stdout;
    this.err = options.stderr ?? process.stderr;
    this.readyTimeoutMs = options.readyTimeoutMs ?? READY_TIMEOUT_MS;
    this.table = new TablePrinter(this.out, () => this.rows());
  }

  async run(): Promise<number> {
    const killAll = () => this.started.forEach((proc) => proc.kill());
    let firstSignalAt: number | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      const now = Date.now();
      if (!this.isStopping) {
        firstSignalAt = now;
        this.isStopping = true;
        this.requestStop(signal);
        return;
      }
      // The same signal twice at once (a process-group kill, forwarded again by make) is one
      // request; only a deliberate second Ctrl-C kills what is left (mesh/shutdown.ts). During a
      // stop that no signal asked for (the control plane exited), a first Ctrl-C is that request.
      const sinceFirstMs = firstSignalAt === undefined ? Infinity : now - firstSignalAt;
      firstSignalAt ??= now;
      if (!isEscalation(signal, sinceFirstMs)) return;
      this.err.write(`${signal} again: killing what is left\n`);
      killAll();
    };
    for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
    // The children have process groups of their own, so nothing else stops them if this process
    // ends abruptly (an uncaught exception, process.exit): kill them on the way out.
    process.on("exit", killAll);
    try {
      const interruption = await this.startAndRun();
      this.isStopping = true;
      this.table.stop();
      this.watch?.close();
      this.report(interruption);
      const exits = await this.stopAll();
      const width = Math.max(...this.started.map((proc) => proc.spec.name.length));
      this.started.forEach((proc, index) => {
        this.out.write(`${proc.spec.name.padEnd(width)}  pid ${proc.pid ?? "-"}  ${describeExit(exits[index])}\n`);
      });
      const isClean = interruption.kind === "signal" && this.started.every((proc, index) => proc.isCleanExit(exits[index]));
      return isClean ? 0 : 1;
    } finally {
      this.watch?.close();
      for (const signal of STOP_SIGNALS) process.off(signal, onSignal);
      process.off("exit", killAll);
    }
  }

  private get started(): LaunchedProcess[] {
    return [...this.byName.values()];
  }

  private get replicas(): LaunchedProcess[] {
    return this.started.filter((proc) => proc.spec !== this.plan.controlPlane);
  }

  /** Resolves to what ended the run: a stop signal, the control plane's exit, or a failed start. */
  private async startAndRun(): Promise<Interruption> {
    const controlPlaneSpec = this.plan.controlPlane;
    let interruption = await this.startStage([controlPlaneSpec]);
    if (interruption) return interruption;
    this.watch = new RegistryWatch(
      controlPlaneSpec.address,
      () => this.table.update(),
      (error, failuresInARow) => {
        // One failure is what the control plane exiting looks like from here, and its exit is
        // reported on its own; a failure that repeats while it runs is news.
        if (failuresInARow !== 2 || this.isStopping) return;
        this.err.write(`watching the registry at ${controlPlaneSpec.address} fails (retrying): ${error.message}\n`);
      },
      { tls: this.options.tls },
    );
    for (const stage of this.plan.stages) {
      interruption = await this.startStage(stage);
      if (interruption) return interruption;
    }
    interruption = await this.untilInterrupted((signal) => this.registryHealthy(signal));
    if (interruption) return interruption;

    this.table.start();
    this.out.write("\n" + (this.options.readyText?.((name) => this.byName.get(name)?.pid) ?? ""));
    for (const proc of this.replicas) void proc.exited.then((status) => this.onReplicaExit(proc, status));
    const controlPlane = this.byName.get(controlPlaneSpec.name)!;
    return Promise.race([
      this.stopRequested,
      controlPlane.exited.then((status): Interruption => ({ kind: "exited", proc: controlPlane, status })),
    ]);
  }

  /** Spawns every process of `specs` and waits until each reports SERVING. */
  private async startStage(specs: readonly ProcessSpec[]): Promise<Interruption | undefined> {
    const procs = specs.map((spec) => {
      const proc = LaunchedProcess.spawn(spec, this.runDir);
      this.byName.set(spec.name, proc);
      this.err.write(`started ${spec.name} (pid ${proc.pid ?? "-"}), waiting for ${SERVING} at ${spec.address}\n`);
      return proc;
    });
    return this.untilInterrupted((signal) =>
      firstInterruption(
        procs.map((proc) =>
          waitForServing(proc.spec.address, this.readyTimeoutMs, signal, this.options.tls).then(
            () => undefined,
            (error: Error): Interruption => ({ kind: "unhealthy", proc, error }),
          ),
        ),
      ),
    );
  }

  /**
   * Runs `work` until it resolves, or a stop is requested, or any started process exits, whichever
   * comes first; `work`'s signal is aborted when it has lost.
   */
  private async untilInterrupted(
    work: (signal: AbortSignal) => Promise<Interruption | undefined>,
  ): Promise<Interruption | undefined> {
    const abandon = new AbortController();
    try {
      return await Promise.race([
        work(abandon.signal),
        this.stopRequested,
        ...this.started.map((proc) => proc.exited.then((status): Interruption => ({ kind: "exited", proc, status }))),
      ]);
    } finally {
      abandon.abort();
    }
  }

  /**
   * Resolves once the registry shows every replica HEALTHY. After the ready timeout it resolves
   * anyway, naming the replicas that are not: the table then shows the truth.
   */
  private async registryHealthy(signal: AbortSignal): Promise<undefined> {
    const notHealthy = (services: Service[]) => {
      const healthy = new Set(
        services.flatMap((service) =>
          service.endpoints.filter((e) => e.health === HealthState.HEALTH_STATE_HEALTHY).map((e) => e.endpointId),
        ),
      );
      return this.replicas.filter((proc) => !healthy.has(proc.spec.address));
    };
    const watch = this.watch!;
    const isMet = await watch.until((services) => notHealthy(services).length === 0, this.readyTimeoutMs, signal);
    if (!isMet && !signal.aborted) {
      const names = notHealthy(watch.services).map((proc) => `${proc.spec.name} (${proc.spec.address})`);
      this.err.write(`not HEALTHY in the registry within ${this.readyTimeoutMs} ms: ${names.join(", ")}\n`);
    }
    return undefined;
  }

  private rows() {
    const controlPlane = this.byName.get(this.plan.controlPlane.name)!;
    const asRow = (proc: LaunchedProcess) => ({ address: proc.spec.address, pid: proc.pid, log: proc.logName });
    const services = this.watch?.services ?? [];
    return tableRows(services, { name: controlPlane.spec.name, ...asRow(controlPlane) }, SERVING, this.replicas.map(asRow));
  }

  private onReplicaExit(proc: LaunchedProcess, status: ExitStatus): void {
    if (this.isStopping) return;
    // A clean exit is what a `kill <pid>` ends in: its last lines (drained, stopped) say enough.
    const tail = proc.logTail(status.code === 0 ? CLEAN_EXIT_TAIL_LINES : undefined);
    this.err.write(`${proc.spec.name} (pid ${proc.pid ?? "-"}) exited: ${describeExit(status)}; the rest keeps running\n${tail}`);
  }

  /** SIGTERM the stages, last first and each stage at once, then the control plane; bounded. */
  private async stopAll(): Promise<ExitStatus[]> {
    const stopTimeoutMs = this.options.stopTimeoutMs ?? STOP_TIMEOUT_MS;
    const order = [...this.plan.stages].reverse().concat([[this.plan.controlPlane]]);
    for (const stage of order) {
      const procs = stage.flatMap((spec) => this.byName.get(spec.name) ?? []);
      await Promise.all(
        procs.map((proc) =>
          proc.stop(stopTimeoutMs, () =>
            this.err.write(`${proc.spec.name} did not exit within ${stopTimeoutMs} ms of SIGTERM; sending SIGKILL\n`),
          ),
        ),
      );
    }
    return Promise.all(this.started.map((proc) => proc.exited));
  }

  private report(interruption: Interruption): void {
    const alive = this.started.filter((proc) => proc.isAlive).map((proc) => proc.spec.name).reverse();
    const stopping = alive.length > 0 ? `stopping ${alive.join(", ")}` : "nothing left to stop";
    if (interruption.kind === "signal") {
      this.err.write(`${interruption.signal}: ${stopping}\n`);
      return;
    }
    const { proc } = interruption;
    const what =
      interruption.kind === "unhealthy"
        ? `${proc.spec.name} is not healthy: ${interruption.error.message}`
        : `${proc.spec.name} (pid ${proc.pid ?? "-"}) exited unexpectedly: ${describeExit(interruption.status)}`;
    this.err.write(`${what}\n${proc.logTail()}${stopping}\n`);
  }
}

/** Resolves to the first interruption among `outcomes`, or to undefined once all are undefined. */
function firstInterruption(outcomes: Promise<Interruption | undefined>[]): Promise<Interruption | undefined> {
  return new Promise((resolve) => {
    let pending = outcomes.length;
    if (pending === 0) resolve(undefined);
    for (const outcome of outcomes) {
      void outcome.then((interruption) => {
        pending -= 1;
        if (interruption || pending === 0) resolve(interruption);
      });
    }
  });
}

function assertDistinct(values: string[], what: string): void {
  const repeated = values.find((value, index) => values.indexOf(value) !== index);
  if (repeated !== undefined) throw new TypeError(`${what} must be distinct: ${repeated} appears twice`);
}

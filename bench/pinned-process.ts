import { execFileSync, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import type { ControlRequest, ControlResponse, ReadyMessage } from "./control-channel";

/**
 * Starting benchmark processes pinned to a core with `taskset` (util-linux): the server under test on
 * SERVER_CORE, every load generator on LOAD_CORE, so that neither steals the other's CPU. On a
 * machine without taskset or with one core the processes run unpinned and the report says so.
 */

/** Core of the server under test. */
export const SERVER_CORE = 0;
/** Core of the load generator (h2load, ghz, the Node clients). */
export const LOAD_CORE = 1;

/** How long a started process may take to report ready. */
const READY_TIMEOUT_MS = 20_000;
/** How long a process may take to stop before it is killed. */
const STOP_TIMEOUT_MS = 5_000;
/** Bytes of a child's stderr kept for error messages. */
const STDERR_TAIL_BYTES = 4_096;

let pinningChecked: boolean | undefined;

/**
 * Whether processes are pinned: taskset exists, the machine has at least two cores, and BENCH_PIN is not
 * "0" (set it to compare with the scheduler's own placement).
 */
export function isPinningAvailable(): boolean {
  if (process.env.BENCH_PIN === "0") return false;
  if (pinningChecked === undefined) {
    let hasTaskset: boolean;
    try {
      execFileSync("taskset", ["--version"], { stdio: "ignore" });
      hasTaskset = true;
    } catch {
      hasTaskset = false;
    }
    // The machine's cores, not this process's: a harness itself pinned to one core (make bench-b9
    // runs B9's control plane under taskset -c 0) still pins its children to theirs.
    pinningChecked = hasTaskset && os.cpus().length >= 2;
  }
  return pinningChecked;
}

/** The command line that runs `command args` on `core` (unchanged when pinning is unavailable). */
export function pinnedCommand(core: number, command: string, args: readonly string[]): [string, string[]] {
  return isPinningAvailable() ? ["taskset", ["-c", String(core), command, ...args]] : [command, [...args]];
}

/** The outcome of a tool run to completion. */
export interface ToolRun {
  stdout: string;
  stderr: string;
}

/** A tool started on the load core: its outcome, and a way to stop it early. */
export interface StartedTool {
  /** Resolves with the output on exit code 0 (or after `kill()`), rejects otherwise. */
  done: Promise<ToolRun>;
  /** Stops the tool (SIGTERM); `done` then resolves with what it printed. */
  kill(): void;
}

/**
 * Starts a load-generating tool on LOAD_CORE. It is killed if it outlives `timeoutMs`, and `done`
 * rejects then.
 */
export function startTool(command: string, args: readonly string[], timeoutMs: number): StartedTool {
  const [file, argv] = pinnedCommand(LOAD_CORE, command, args);
  const child = spawn(file, argv, { stdio: ["ignore", "pipe", "pipe"] });
  let isKilledOnPurpose = false;
  const done = new Promise<ToolRun>((resolve, reject) => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`${command}: ${error.message}`));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      const run = { stdout: Buffer.concat(stdout).toString("utf8"), stderr: Buffer.concat(stderr).toString("utf8") };
      if (code === 0 || isKilledOnPurpose) return resolve(run);
      const why = signal ? `killed by ${signal} after the ${timeoutMs} ms limit` : `exit code ${String(code)}`;
      const output = `${run.stderr.slice(-STDERR_TAIL_BYTES)}${run.stdout.slice(-STDERR_TAIL_BYTES)}`;
      reject(new Error(`${command} ${args.join(" ")}: ${why}\n${output}`));
    });
  });
  return {
    done,
    kill: () => {
      isKilledOnPurpose = true;
      child.kill("SIGTERM");
    },
  };
}

/** Runs a load-generating tool on LOAD_CORE to completion, within `timeoutMs`. */
export function runTool(command: string, args: readonly string[], timeoutMs: number): Promise<ToolRun> {
  return startTool(command, args, timeoutMs).done;
}

/** Options of {@link NodeChild.start}. */
export interface NodeChildOptions {
  /** Compiled entry point (a dist/bench/*.js file). */
  script: string;
  args: readonly string[];
  core: number;
  /** Where the process's stdout (its pino log) goes; /dev/null unless a file is named. */
  logFile?: string;
  nodeArgs?: readonly string[];
  /** Wraps the (pinned) command line, e.g. to run it in a network namespace (`ip netns exec NAME ...`). */
  wrap?: (file: string, args: readonly string[]) => [string, string[]];
}

/**
 * A Node benchmark process (server or load client) pinned to a core and driven over IPC with the
 * protocol of control-channel.ts. Whoever starts it calls `stop()`.
 */
export class NodeChild {
  private readonly pending = new Map<number, (response: ControlResponse) => void>();
  private nextId = 1;
  private stderrTail = "";

  private constructor(
    private readonly child: ChildProcess,
    private readonly name: string,
  ) {
    child.stderr?.on("data", (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString("utf8")).slice(-STDERR_TAIL_BYTES);
    });
    child.on("message", (message: ControlResponse | ReadyMessage) => {
      if ("id" in message) this.pending.get(message.id)?.(message);
    });
    child.once("exit", (code, signal) => {
      const error = `${name} exited (code ${String(code)}, signal ${String(signal)}): ${this.stderrTail}`;
      for (const settle of this.pending.values()) settle({ id: 0, error });
      this.pending.clear();
    });
  }

  /** Starts the process and resolves once it reports ready, with the port it reports (servers). */
  static async start(options: NodeChildOptions): Promise<{ child: NodeChild; port: number }> {
    const log = fs.openSync(options.logFile ?? "/dev/null", "a");
    const pinned = pinnedCommand(options.core, process.execPath, [...(options.nodeArgs ?? []), options.script, ...options.args]);
    const [file, argv] = options.wrap ? options.wrap(...pinned) : pinned;
    let spawned: ChildProcess;
    try {
      // Production log level, whatever the caller's environment says; and no control plane: the
      // scenarios that need one (B3, B4, B7) start their own and name it.
      const env: NodeJS.ProcessEnv = { ...process.env, PROTOMESH_LOG_LEVEL: "info" };
      delete env.PROTOMESH_CONTROL_PLANE;
      spawned = spawn(file, argv, { stdio: ["ignore", log, "pipe", "ipc"], env });
    } finally {
      fs.closeSync(log);
    }
    const name = `${options.script.replace(/.*\//, "")} ${options.args.join(" ")}`;
    const child = new NodeChild(spawned, name);
    const ready = await new Promise<ReadyMessage>((resolve, reject) => {
      const notReady = () => fail(new Error(`${name}: not ready after ${READY_TIMEOUT_MS} ms`));
      const timer = setTimeout(notReady, READY_TIMEOUT_MS);
      const onMessage = (message: ControlResponse | ReadyMessage) => {
        if (!("ready" in message)) return;
        cleanup();
        resolve(message);
      };
      const onExit = () => fail(new Error(`${name} exited before it was ready: ${child.stderrTail}`));
      const cleanup = () => {
        clearTimeout(timer);
        spawned.off("message", onMessage);
        spawned.off("exit", onExit);
      };
      const fail = (error: Error) => {
        cleanup();
        spawned.kill("SIGKILL");
        reject(error);
      };
      spawned.on("message", onMessage);
      spawned.once("exit", onExit);
      spawned.once("error", (error) => fail(error));
    });
    return { child, port: ready.port ?? 0 };
  }

  /** Process id (for /proc and signals). */
  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** Sends `op` and resolves with the child's result; rejects on its error or after `timeoutMs`. */
  request<T>(op: string, args?: unknown, timeoutMs = 10_000): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: no answer to ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, (response) => {
        clearTimeout(timer);
        this.pending.delete(id);
        if (response.error !== undefined) reject(new Error(`${this.name}: ${op}: ${response.error}`));
        else resolve(response.result as T);
      });
      if (!this.child.connected) {
        this.pending.get(id)?.({ id, error: "not connected" });
        return;
      }
      this.child.send({ id, op, args } satisfies ControlRequest);
    });
  }

  /** Asks the process to stop, and kills it if it has not exited within STOP_TIMEOUT_MS. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    await this.request("stop", undefined, STOP_TIMEOUT_MS).catch(() => undefined);
    const timer = setTimeout(() => this.child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
    this.child.stderr?.destroy();
  }
}

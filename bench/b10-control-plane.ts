import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as readline from "node:readline";
import { epochMs } from "./call-record";
import { SERVER_CORE, pinnedCommand } from "./pinned-process";

/**
 * B10's control plane: the `protomesh control-plane` program itself (dist/cli/protomesh.js, no
 * mesh config, so no static entries), on SERVER_CORE, bound to 0.0.0.0:`port` (HOST and PORT, as
 * a user runs it) so that it can be killed and started again on the same port. What its registry
 * did is read from its own log (stdout, pino, one line per event with its time): "control plane
 * listening", "endpoint registered", "endpoint health changed", "lease expired". Its CPU and RSS
 * are read from /proc/<pid> by {@link ControlPlaneProcess.sample}.
 */

const CLI_SCRIPT = path.join(__dirname, "..", "cli", "protomesh.js");
/** How long a started control plane may take to log that it listens. */
const LISTEN_TIMEOUT_MS = 20_000;
/** Linux's USER_HZ: /proc/<pid>/stat counts CPU time in these ticks. */
const TICKS_PER_S = 100;
const STDERR_TAIL_BYTES = 4_096;

/** What the control plane's log said, as [time, service, endpoint id(, healthy)]. */
export interface ControlPlaneLog {
  listeningAt: number;
  registered: Array<[number, string, string]>;
  health: Array<[number, string, string, boolean]>;
  expired: Array<[number, string, string]>;
}

/** One reading of the process's CPU time (ms since it started) and resident memory. */
export interface ProcessSample {
  atMs: number;
  cpuMs: number;
  rssBytes: number;
}

interface LogLine {
  time: number;
  msg?: string;
  service?: string;
  endpoint?: string;
  healthy?: boolean;
}

/** One run of `protomesh control-plane`; whoever starts it kills it. */
export class ControlPlaneProcess {
  readonly log: ControlPlaneLog = { listeningAt: Number.NaN, registered: [], health: [], expired: [] };
  private readonly exited: Promise<number>;
  private stderrTail = "";

  private constructor(private readonly child: ChildProcess, logFile: string | undefined) {
    const copy = logFile ? fs.createWriteStream(logFile, { flags: "a" }) : undefined;
    readline.createInterface({ input: child.stdout! }).on("line", (line) => {
      copy?.write(`${line}\n`);
      this.read(line);
    });
    child.stderr!.on("data", (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString("utf8")).slice(-STDERR_TAIL_BYTES);
    });
    this.exited = new Promise((resolve) => child.once("exit", () => {
      copy?.end();
      resolve(epochMs());
    }));
  }

  /** Starts the control plane on 0.0.0.0:`port`; resolves once it has logged that it listens. */
  static async start(port: number, options: { logFile?: string; profileDir?: string } = {}): Promise<ControlPlaneProcess> {
    const env: NodeJS.ProcessEnv = { ...process.env, HOST: "0.0.0.0", PORT: String(port), PROTOMESH_LOG_LEVEL: "info" };
    delete env.PROTOMESH_MESH_CONFIG;
    delete env.PROTOMESH_CONTROL_PLANE;
    // A CPU profile is written when the program exits by itself (SIGTERM), not when it is killed.
    const profile = options.profileDir ? ["--cpu-prof", "--cpu-prof-dir", options.profileDir] : [];
    const [file, args] = pinnedCommand(SERVER_CORE, process.execPath, [...profile, CLI_SCRIPT, "control-plane"]);
    const controlPlane = new ControlPlaneProcess(spawn(file, args, { stdio: ["ignore", "pipe", "pipe"], env }), options.logFile);
    const deadline = Date.now() + LISTEN_TIMEOUT_MS;
    while (Number.isNaN(controlPlane.log.listeningAt)) {
      if (controlPlane.child.exitCode !== null || controlPlane.child.signalCode !== null || Date.now() > deadline) {
        controlPlane.child.kill("SIGKILL");
        throw new Error(`bench: the control plane did not listen on port ${port}: ${controlPlane.stderrTail}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return controlPlane;
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** Throws, with the end of its stderr, if the process has exited (it is only ever killed on purpose). */
  assertRunning(): void {
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      throw new Error(`bench: the control plane exited (code ${String(this.child.exitCode)}, signal ${String(this.child.signalCode)}): ${this.stderrTail}`);
    }
  }

  /** Sends `signal` (SIGKILL, SIGTERM) and resolves with the time (epoch ms) the process exited. */
  async kill(signal: NodeJS.Signals): Promise<number> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }

  /** CPU time and RSS now, from /proc/<pid>; undefined once the process is gone (or not on Linux). */
  sample(): ProcessSample | undefined {
    try {
      const stat = fs.readFileSync(`/proc/${this.pid}/stat`, "utf8");
      // Fields after "pid (comm) ": state is the 3rd field, utime the 14th, stime the 15th.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const cpuMs = ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_S;
      const rssKb = Number(/^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${this.pid}/status`, "utf8"))?.[1]);
      return { atMs: epochMs(), cpuMs, rssBytes: rssKb * 1024 };
    } catch {
      return undefined;
    }
  }

  private read(line: string): void {
    // Most lines are the server's call log (a KeepAlive each): parse only the registry's events.
    if (!/"msg":"(control plane listening|endpoint registered|endpoint health changed|lease expired)"/.test(line)) return;
    const record = JSON.parse(line) as LogLine;
    const where = [record.service ?? "", record.endpoint ?? ""] as const;
    switch (record.msg) {
      case "control plane listening":
        this.log.listeningAt = record.time;
        break;
      case "endpoint registered":
        this.log.registered.push([record.time, ...where]);
        break;
      case "endpoint health changed":
        this.log.health.push([record.time, ...where, record.healthy === true]);
        break;
      case "lease expired":
        this.log.expired.push([record.time, ...where]);
        break;
    }
  }
}

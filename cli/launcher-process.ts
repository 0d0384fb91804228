/**
 * One child of the launcher (cli/launcher.ts): spawned in a process group of its own with its
 * output in a log file, its exit as a promise, and a bounded stop (SIGTERM, then SIGKILL).
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";

/** One process to launch: how to run it and the address it listens on and serves grpc.health.v1 at. */
export interface ProcessSpec {
  /** Short name, shown in reports and naming the log file `<runDir>/<name>.log`. */
  name: string;
  /** The executable, e.g. `process.execPath` for node. */
  command: string;
  /** Its arguments, e.g. the script path. */
  args: string[];
  /**
   * Changes to the launcher's own environment for this process: a string sets the variable,
   * `undefined` removes it (so that a variable exported in the user's shell cannot reach it).
   */
  env: Record<string, string | undefined>;
  /** host:port the process listens on; it must be free before the start. */
  address: string;
}

/** How a process ended. */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be spawned at all. */
  error?: Error;
}

/** Lines of a log shown when a process fails; enough for the events that led up to it. */
export const LOG_TAIL_LINES = 20;
const LOG_TAIL_BYTES = 16 * 1024;

/** A spawned process. The caller stops it (`stop`, `kill`); nothing else does. */
export class LaunchedProcess {
  /** Resolves once, when the process has exited or failed to spawn. */
  readonly exited: Promise<ExitStatus>;
  private wasAskedToStop = false;

  private constructor(
    readonly spec: ProcessSpec,
    readonly child: ChildProcess,
    readonly logPath: string,
  ) {
    this.exited = new Promise<ExitStatus>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
      child.once("error", (error) => {
        if (child.pid === undefined) resolve({ code: null, signal: null, error });
      });
    });
  }

  /** Starts `spec` with its stdout and stderr written to `<runDir>/<name>.log` (truncated first). */
  static spawn(spec: ProcessSpec, runDir: string): LaunchedProcess {
    const logPath = path.join(runDir, `${spec.name}.log`);
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [name, value] of Object.entries(spec.env)) {
      if (value === undefined) delete env[name];
      else env[name] = value;
    }
    const logFd = fs.openSync(logPath, "w");
    try {
      const child = spawn(spec.command, spec.args, {
        env,
        // The child writes its pino lines straight into the file: no pipe through the launcher to
        // back up, and the log outlives the launcher however it ends.
        stdio: ["ignore", logFd, logFd],
        // A process group of its own, so a terminal's Ctrl-C reaches only the launcher, which then
        // sends the SIGTERM that drains. A second Ctrl-C, meant to make the launcher kill what is
        // left, would otherwise also make every service exit at once without draining (mesh/shutdown.ts).
        detached: true,
      });
      return new LaunchedProcess(spec, child, logPath);
    } finally {
      fs.closeSync(logFd);
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** True from the spawn until the process has exited. */
  get isAlive(): boolean {
    return this.child.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The log file, relative to the working directory when it lies below it. */
  get logName(): string {
    return displayPath(this.logPath);
  }

  /** SIGKILL, if still alive. */
  kill(): void {
    if (this.isAlive) this.child.kill("SIGKILL");
  }

  /**
   * Sends SIGTERM (a protomesh process then drains) and waits up to `timeoutMs` for the exit; after
   * that sends SIGKILL, calling `onKill` first so the caller can say so. Resolves to the exit.
   */
  async stop(timeoutMs: number, onKill: () => void): Promise<ExitStatus> {
    if (!this.isAlive) return this.exited;
    this.wasAskedToStop = true;
    this.child.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const outcome = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (outcome === "timeout" && this.isAlive) {
      onKill();
      this.child.kill("SIGKILL");
    }
    return this.exited;
  }

  /**
   * True when `exit` (this process's) is a clean one: code 0, or the SIGTERM of `stop` itself,
   * which a process still starting has no handler for yet (and nothing in flight to drain).
   */
  isCleanExit(exit: ExitStatus): boolean {
    return exit.code === 0 || (this.wasAskedToStop && exit.signal === "SIGTERM");
  }

  /** "last lines of <log>:" and up to `maxLines` last lines of the log, indented; or that it is empty. */
  logTail(maxLines = LOG_TAIL_LINES): string {
    const lines = lastLines(this.logPath, maxLines);
    if (lines.length === 0) return `${this.logName} is empty\n`;
    return `last lines of ${this.logName}:\n${lines.map((line) => `  ${line}\n`).join("")}`;
  }
}

/**
 * Throws, naming the process, when its address cannot be bound now. Without this check a process
 * left over from an earlier run would answer the health checks while the new one fails to bind,
 * and the launch would look healthy.
 */
export async function assertAddressFree(spec: ProcessSpec): Promise<void> {
  const match = /^\[?([^\]]*)\]?:(\d+)$/.exec(spec.address);
  if (!match) throw new TypeError(`${spec.name}: address must be host:port, got ${JSON.stringify(spec.address)}`);
  const server = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: match[1], port: Number(match[2]), exclusive: true }, resolve);
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const problem = code === "EADDRINUSE" ? "the address is already in use (by an earlier run?)" : (error as Error).message;
    throw new Error(`${spec.name}: cannot listen on ${spec.address}: ${problem}`, { cause: error });
  }
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** "exit code 0", "killed by SIGKILL" or "could not start: ...". */
export function describeExit(exit: ExitStatus): string {
  if (exit.error) return `could not start: ${exit.error.message}`;
  return exit.code !== null ? `exit code ${exit.code}` : `killed by ${exit.signal ?? "a signal"}`;
}

/** `file` relative to the working directory when it lies below it, else absolute. */
export function displayPath(file: string): string {
  const relative = path.relative(process.cwd(), file);
  return relative.startsWith("..") || path.isAbsolute(relative) ? file : relative;
}

function lastLines(file: string, maxLines: number): string[] {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, "r");
    const size = fs.fstatSync(fd).size;
    const length = Math.min(size, LOG_TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    fs.readSync(fd, buffer, 0, length, size - length);
    const lines = buffer.toString("utf8").split("\n");
    if (length < size) lines.shift(); // cut mid-line
    return lines.filter((line) => line.trim() !== "").slice(-maxLines);
  } catch {
    return [];
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

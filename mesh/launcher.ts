/**
 * Runs a set of local gRPC processes as one unit, the way `docker compose up` runs containers:
 * start each in order and wait until it reports SERVING over grpc.health.v1, print where they are,
 * and on SIGINT/SIGTERM stop them in reverse order with the SIGTERM that makes a protomesh service
 * drain. A process that dies on its own takes the others down and is named with its last log lines.
 *
 * This is a terminal program, not a library with a log: the table and the reports are its output,
 * written to stdout and stderr.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { SERVING, waitForServing } from "./health-wait";
import { DEFAULT_DRAIN_GRACE_MS } from "./server";

/** One process to launch: how to run it and the address it listens on and serves grpc.health.v1 at. */
export interface ProcessSpec {
  /** Short name, shown in the table and naming the log file `<runDir>/<name>.log`. */
  name: string;
  /** The executable, e.g. `process.execPath` for node. */
  command: string;
  /** Its arguments, e.g. the script path. */
  args: string[];
  /** Variables added to the launcher's own environment. */
  env: Record<string, string>;
  /** host:port the process listens on; it must be free before the start. */
  address: string;
}

/** Options of {@link launch}. */
export interface LaunchOptions {
  /** Directory of the log files, created when missing; default `.run` under the working directory. */
  runDir?: string;
  /** How long each process may take to report SERVING. */
  readyTimeoutMs?: number;
  /** How long each process may take to exit after SIGTERM before it gets SIGKILL. */
  stopTimeoutMs?: number;
  /** Printed after the table once every process is SERVING (commands to try, say). */
  readyText?: string;
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
}

/** Default time a process has to report SERVING: node starting plus a bind, with a wide margin. */
export const READY_TIMEOUT_MS = 15_000;
/** Default time a process has to exit after SIGTERM: a service's drain grace period plus a margin. */
export const STOP_TIMEOUT_MS = DEFAULT_DRAIN_GRACE_MS + 5_000;
/** Signals that stop the launched processes. SIGHUP too: they do not share the terminal's group. */
export const STOP_SIGNALS: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

const LOG_TAIL_LINES = 20;
const LOG_TAIL_BYTES = 16 * 1024;

interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be spawned at all. */
  error?: Error;
}

interface Running {
  spec: ProcessSpec;
  child: ChildProcess;
  logPath: string;
  /** Resolves once, when the process has exited or failed to spawn. */
  exited: Promise<ExitStatus>;
}

type Interruption =
  | { kind: "signal"; signal: NodeJS.Signals }
  | { kind: "exited"; proc: Running; status: ExitStatus }
  | { kind: "unhealthy"; proc: Running; error: Error };

/**
 * Starts `specs` in order, each once the previous reports SERVING, prints the table, then runs
 * until a stop signal or until a process exits on its own, and stops every process in reverse
 * order. Resolves to the exit code for the launcher: 0 when stopped on request and every process
 * exited with 0, otherwise 1. Rejects, with nothing started, when a name repeats or an address is
 * taken.
 */
export async function launch(specs: readonly ProcessSpec[], options: LaunchOptions = {}): Promise<number> {
  const out = options.stdout ?? process.stdout;
  const err = options.stderr ?? process.stderr;
  const runDir = path.resolve(options.runDir ?? ".run");
  const names = specs.map((spec) => spec.name);
  const repeated = names.find((name, index) => names.indexOf(name) !== index);
  if (repeated !== undefined) throw new TypeError(`process names must be distinct: ${repeated} appears twice`);
  for (const spec of specs) await assertAddressFree(spec);
  fs.mkdirSync(runDir, { recursive: true });

  const running: Running[] = [];
  const killAll = () => running.filter(isAlive).forEach((proc) => proc.child.kill("SIGKILL"));
  let isStopping = false;
  let requestStop: (signal: NodeJS.Signals) => void = () => undefined;
  const stopRequested = new Promise<Interruption>((resolve) => {
    requestStop = (signal) => resolve({ kind: "signal", signal });
  });
  const onSignal = (signal: NodeJS.Signals) => {
    if (!isStopping) {
      isStopping = true;
      requestStop(signal);
      return;
    }
    err.write(`${signal} again: killing what is left\n`);
    killAll();
  };
  for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
  // The children have their own process group, so nothing else stops them if this process ends
  // abruptly (an uncaught exception, process.exit): kill them on the way out.
  process.on("exit", killAll);
  try {
    let interruption = await startInOrder(specs, runDir, options.readyTimeoutMs ?? READY_TIMEOUT_MS, running, {
      stopRequested,
      err,
    });
    if (interruption === undefined) {
      out.write(formatTable(running) + "\n" + (options.readyText ?? ""));
      interruption = await Promise.race([
        stopRequested,
        ...running.map((proc) => proc.exited.then((exit): Interruption => ({ kind: "exited", proc, status: exit }))),
      ]);
    }
    isStopping = true;
    report(interruption, running, err);
    const exits = await stopInReverse(running, options.stopTimeoutMs ?? STOP_TIMEOUT_MS, err);
    const width = Math.max(...running.map((proc) => proc.spec.name.length));
    running.forEach((proc, index) => {
      out.write(`${proc.spec.name.padEnd(width)}  pid ${proc.child.pid ?? "-"}  ${describeExit(exits[index])}\n`);
    });
    const isClean = interruption.kind === "signal" && exits.every((exit) => exit.code === 0);
    return isClean ? 0 : 1;
  } finally {
    for (const signal of STOP_SIGNALS) process.off(signal, onSignal);
    process.off("exit", killAll);
  }
}

async function startInOrder(
  specs: readonly ProcessSpec[],
  runDir: string,
  readyTimeoutMs: number,
  running: Running[],
  context: { stopRequested: Promise<Interruption>; err: NodeJS.WritableStream },
): Promise<Interruption | undefined> {
  for (const spec of specs) {
    const proc = spawnLogged(spec, runDir);
    running.push(proc);
    context.err.write(`started ${spec.name} (pid ${proc.child.pid ?? "-"}), waiting for ${SERVING} at ${spec.address}\n`);
    const waiting = new AbortController();
    const interruption = await Promise.race([
      waitForServing(spec.address, readyTimeoutMs, waiting.signal).then(
        () => undefined,
        (error: Error): Interruption => ({ kind: "unhealthy", proc, error }),
      ),
      proc.exited.then((exit): Interruption => ({ kind: "exited", proc, status: exit })),
      context.stopRequested,
    ]);
    waiting.abort();
    if (interruption !== undefined) return interruption;
  }
  return undefined;
}

function spawnLogged(spec: ProcessSpec, runDir: string): Running {
  const logPath = path.join(runDir, `${spec.name}.log`);
  const logFd = fs.openSync(logPath, "w");
  let child: ChildProcess;
  try {
    child = spawn(spec.command, spec.args, {
      env: { ...process.env, ...spec.env },
      // The child writes its pino lines straight into the file: no pipe through the launcher to
      // back up, and the log outlives the launcher however it ends.
      stdio: ["ignore", logFd, logFd],
      // A process group of its own, so a terminal's Ctrl-C reaches only the launcher, which then
      // sends the single SIGTERM that drains. A protomesh service exits at once, without draining,
      // on a second signal (mesh/shutdown.ts), which SIGINT from the terminal plus ours would be.
      detached: true,
    });
  } finally {
    fs.closeSync(logFd);
  }
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", (error) => {
      if (child.pid === undefined) resolve({ code: null, signal: null, error });
    });
  });
  return { spec, child, logPath, exited };
}

/** SIGTERM each process, last started first, so that none loses a dependency while it drains. */
async function stopInReverse(running: Running[], timeoutMs: number, err: NodeJS.WritableStream): Promise<ExitStatus[]> {
  for (const proc of [...running].reverse()) {
    if (!isAlive(proc)) continue;
    proc.child.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const outcome = await Promise.race([proc.exited, timedOut]);
    clearTimeout(timer);
    if (outcome === "timeout" && isAlive(proc)) {
      err.write(`${proc.spec.name} did not exit within ${timeoutMs} ms of SIGTERM; sending SIGKILL\n`);
      proc.child.kill("SIGKILL");
    }
  }
  return Promise.all(running.map((proc) => proc.exited));
}

function report(interruption: Interruption, running: Running[], err: NodeJS.WritableStream): void {
  const others = running.filter(isAlive).map((proc) => proc.spec.name).reverse();
  const stopping = others.length > 0 ? `stopping ${others.join(", ")}` : "nothing left to stop";
  if (interruption.kind === "signal") {
    err.write(`${interruption.signal}: ${stopping}\n`);
    return;
  }
  const { proc } = interruption;
  const what =
    interruption.kind === "unhealthy"
      ? `${proc.spec.name} is not healthy: ${interruption.error.message}`
      : `${proc.spec.name} (pid ${proc.child.pid ?? "-"}) exited unexpectedly: ${describeExit(interruption.status)}`;
  const lines = lastLines(proc.logPath);
  const log = displayPath(proc.logPath);
  const tail = lines.length > 0 ? `last lines of ${log}:\n${lines.map((line) => `  ${line}\n`).join("")}` : `${log} is empty\n`;
  err.write(`${what}\n${tail}${stopping}\n`);
}

function formatTable(running: Running[]): string {
  const rows = [
    ["SERVICE", "ADDRESS", "HEALTH", "PID", "LOG"],
    ...running.map((proc) => [proc.spec.name, proc.spec.address, SERVING, String(proc.child.pid), displayPath(proc.logPath)]),
  ];
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join("  ").trimEnd() + "\n").join("");
}

async function assertAddressFree(spec: ProcessSpec): Promise<void> {
  // Without this check a process left over from an earlier run would answer the health checks
  // while the new one fails to bind, and the launch would look healthy.
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

function lastLines(file: string): string[] {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, "r");
    const size = fs.fstatSync(fd).size;
    const length = Math.min(size, LOG_TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    fs.readSync(fd, buffer, 0, length, size - length);
    const lines = buffer.toString("utf8").split("\n");
    if (length < size) lines.shift(); // cut mid-line
    return lines.filter((line) => line.trim() !== "").slice(-LOG_TAIL_LINES);
  } catch {
    return [];
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function describeExit(exit: ExitStatus): string {
  if (exit.error) return `could not start: ${exit.error.message}`;
  return exit.code !== null ? `exit code ${exit.code}` : `killed by ${exit.signal ?? "a signal"}`;
}

function displayPath(file: string): string {
  const relative = path.relative(process.cwd(), file);
  return relative.startsWith("..") ? file : relative;
}

function isAlive(proc: Running): boolean {
  return proc.child.pid !== undefined && proc.child.exitCode === null && proc.child.signalCode === null;
}

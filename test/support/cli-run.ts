import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as path from "node:path";

/** The compiled CLI, as `make up` runs it (this file runs from dist/test/support). */
export const CLI = path.resolve(__dirname, "..", "..", "cli", "protomesh.js");

/** How a CLI run ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One `node dist/cli/protomesh.js ...` subprocess, run in `cwd` with its output kept. */
export class CliRun {
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

  /** Pids of the processes the launcher reported starting (on stderr, before any table). */
  get startedPids(): number[] {
    return [...this.stderr.matchAll(/^started \S+ \(pid (\d+)\)/gm)].map((match) => Number(match[1]));
  }

  /** Resolves when `stream` matches `pattern`; rejects if the CLI exits first or after `timeoutMs`. */
  waitFor(stream: "stdout" | "stderr", pattern: RegExp, timeoutMs: number): Promise<void> {
    const source = this.child[stream]!;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => settle(new Error(`no ${pattern} on ${stream} within ${timeoutMs} ms`)), timeoutMs);
      const onData = () => {
        if (pattern.test(this[stream])) settle();
      };
      const onClose = () => settle(new Error(`the CLI exited before printing ${pattern}`));
      const settle = (error?: Error) => {
        clearTimeout(timer);
        source.off("data", onData);
        this.child.off("close", onClose);
        if (error) reject(new Error(`${error.message}\n${this.output()}`));
        else resolve();
      };
      source.on("data", onData);
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

/** True when no process has `pid` any more. */
export function isProcessGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ESRCH";
  }
}

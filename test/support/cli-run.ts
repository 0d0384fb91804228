import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

/** The compiled CLI, as `make up` runs it (this file runs from dist/test/support). */
export const CLI = path.resolve(__dirname, "..", "..", "cli", "protomesh.js");

/** How a CLI run ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * One `node dist/cli/protomesh.js ...` subprocess, run in `cwd` with its output kept. With
 * `viaMake`, run as `make up` runs it: a make recipe in a process group of its own (the group's
 * id is the make process's pid), make exec'ing the command directly as it does for `make up`.
 */
export class CliRun {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  /** True when the run leads a process group of its own (`viaMake`). */
  readonly isGroupLeader: boolean;
  stdout = "";
  stderr = "";

  constructor(
    args: string[],
    env: Record<string, string>,
    readonly cwd: string,
    options: { viaMake?: boolean } = {},
  ) {
    this.isGroupLeader = options.viaMake === true;
    let command = process.execPath;
    let commandArgs = [CLI, ...args];
    if (options.viaMake) {
      // No shell metacharacters in the recipe, so make runs it without a shell, as `make up` does.
      const makefile = path.join(cwd, "Makefile.protomesh");
      fs.writeFileSync(makefile, `run:\n\t${[process.execPath, CLI, ...args].join(" ")}\n`);
      command = "make";
      commandArgs = ["--no-print-directory", "-s", "-f", makefile, "run"];
    }
    this.child = spawn(command, commandArgs, {
      cwd,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: options.viaMake === true,
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

  /**
   * Resolves when `stream`, from character `from` on, matches `pattern`; rejects if the CLI exits
   * first or after `timeoutMs`.
   */
  waitFor(stream: "stdout" | "stderr", pattern: RegExp, timeoutMs: number, from = 0): Promise<void> {
    const source = this.child[stream]!;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => settle(new Error(`no ${pattern} on ${stream} within ${timeoutMs} ms`)), timeoutMs);
      const onData = () => {
        if (pattern.test(this[stream].slice(from))) settle();
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

/** How a Node script run to completion ended, with all it printed. */
export interface ScriptRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node script ...args` to completion, killed (SIGKILL) after `timeoutMs`. */
export function runNodeScript(script: string, args: readonly string[], timeoutMs: number): Promise<ScriptRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

/** The external tools `make tools` (and `make jaeger`) install into `.tools/bin` (pinned in the Makefile). */
export type ToolName = "grpcurl" | "grpc-health-probe" | "jaeger";

/** How long a tool may run before it is killed and the test fails; tools get their own, shorter limits. */
export const TOOL_TIMEOUT_MS = 20_000;

/** What a finished tool run produced. */
export interface ToolResult {
  /** The process's exit code. */
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The repository root: three levels above this file when it runs compiled (dist/test/support),
 * two when it runs from the sources (test/support), else the working directory (`make`, `npm test`).
 */
export function repoRoot(): string {
  const candidates = [path.resolve(__dirname, "..", "..", ".."), path.resolve(__dirname, "..", ".."), process.cwd()];
  return candidates.find((dir) => fs.existsSync(path.join(dir, "Makefile"))) ?? process.cwd();
}

/** Where `make tools` installs `name`. */
export function toolPath(name: ToolName): string {
  return path.join(repoRoot(), ".tools", "bin", name);
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** True when the CI environment variable says this is a CI run (where a missing tool is a failure). */
export function isCi(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.CI === "true" || env.CI === "1";
}

/**
 * Returns the path of an installed tool, for a `before` hook of a suite that drives it. When the
 * tool is missing, a CI run fails the suite with an error saying to run `make tools`; elsewhere the
 * reason is printed to stderr and the suite is skipped, so a skip is never silent.
 */
export function requireTool(context: Mocha.Context, name: ToolName): string {
  const file = toolPath(name);
  if (isExecutable(file)) return file;
  const reason = `${name} is not installed at ${file}: run \`make tools\` to install it`;
  if (isCi()) throw new Error(`${reason} (CI=true: missing tools fail the run)`);
  process.stderr.write(`skipping "${context.test?.parent?.fullTitle() ?? name}": ${reason}\n`);
  context.skip();
}

/**
 * Runs `file` with `args` (no shell) and resolves to its exit code and output, whatever the code.
 * Rejects when the process cannot start or is killed after `timeoutMs`, naming the command.
 */
export function runTool(file: string, args: readonly string[], timeoutMs = TOOL_TIMEOUT_MS): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: "SIGKILL", encoding: "utf8" }, (error, stdout, stderr) => {
      if (error === null) return resolve({ code: 0, stdout, stderr });
      if (typeof error.code === "number") return resolve({ code: error.code, stdout, stderr });
      const command = [path.basename(file), ...args].join(" ");
      const why = error.killed ? `was killed after ${timeoutMs} ms` : `failed to run: ${error.message}`;
      reject(new Error(`${command} ${why}\nstdout: ${stdout}\nstderr: ${stderr}`, { cause: error }));
    });
  });
}

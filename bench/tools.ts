import * as fs from "node:fs";
import * as path from "node:path";

/**
 * Where the benchmark tools are: `make bench-tools` puts ghz in .tools/bin and h2load comes from
 * Debian's nghttp2-client; PATH is searched first, then .tools/bin.
 */

/** The repository root, from the compiled (dist/bench) or source (bench) location. */
export const REPO_ROOT = fs.existsSync(path.resolve(__dirname, "..", "package.json"))
  ? path.resolve(__dirname, "..")
  : path.resolve(__dirname, "..", "..");

/** Directory of the compiled benchmark entry points. */
export const BENCH_DIST_DIR = path.join(REPO_ROOT, "dist", "bench");

/** The tools the built scenarios drive, and the make target that installs them. */
export const BENCH_TOOLS = ["h2load", "ghz"] as const;
export const TOOLS_TARGET = "bench-tools";

/** Absolute path of `name`, or a thrown error saying how to install it. */
export function toolPath(name: (typeof BENCH_TOOLS)[number]): string {
  const directories = [...(process.env.PATH ?? "").split(path.delimiter), path.join(REPO_ROOT, ".tools", "bin")];
  for (const directory of directories) {
    const candidate = path.join(directory, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  throw new Error(`bench: ${name} not found on PATH or in .tools/bin; run \`make ${TOOLS_TARGET}\``);
}

/** The tools missing here, by name. */
export function missingTools(): string[] {
  return BENCH_TOOLS.filter((name) => {
    try {
      toolPath(name);
      return false;
    } catch {
      return true;
    }
  });
}

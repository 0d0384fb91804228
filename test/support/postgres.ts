import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Client } from "pg";
import { freePorts } from "./ports";
import { isCi } from "./tools";

/** Where Debian's postgresql package puts each major version's server programs. */
export const POSTGRES_LIB_DIR = "/usr/lib/postgresql";
/** The unprivileged user that runs the server when the tests run as root (PostgreSQL refuses root). */
const SERVER_USER = "postgres";
/** Longest initdb, pg_ctl start or stop may take before the suite fails. */
const COMMAND_TIMEOUT_MS = 60_000;

/** A throwaway PostgreSQL server on 127.0.0.1, its data directory under the system's temp directory. */
export interface PostgresServer {
  port: number;
  /** A new, empty database; resolves to its URL (postgres://postgres@127.0.0.1:<port>/<name>). */
  createDatabase(): Promise<string>;
  /** Stops the server and removes its data directory. */
  stop(): Promise<void>;
}

/** The bin directory of the newest PostgreSQL that has initdb and pg_ctl, if any. */
export function postgresBinDir(libDir = POSTGRES_LIB_DIR): string | undefined {
  const versions = fs.existsSync(libDir) ? fs.readdirSync(libDir).filter((name) => /^\d+$/.test(name)) : [];
  return versions
    .sort((a, b) => Number(b) - Number(a))
    .map((version) => path.join(libDir, version, "bin"))
    .find((bin) => ["initdb", "pg_ctl"].every((program) => fs.existsSync(path.join(bin, program))));
}

/**
 * Starts a PostgreSQL server for a `before` hook. When PostgreSQL is not installed, a CI run fails
 * the suite saying how to install it; elsewhere the reason is printed and the suite is skipped.
 */
export async function requirePostgres(context: Mocha.Context): Promise<PostgresServer> {
  const bin = postgresBinDir();
  const isRoot = process.getuid?.() === 0;
  const problem =
    bin === undefined
      ? `PostgreSQL is not installed under ${POSTGRES_LIB_DIR}: run \`make test-postgres\` (apt-get install postgresql, as root)`
      : isRoot && !(await succeeds("id", ["-u", SERVER_USER]))
        ? `there is no "${SERVER_USER}" user to run PostgreSQL as (root may not): reinstall Debian's postgresql`
        : undefined;
  if (problem === undefined) return startPostgres(bin!, isRoot);
  if (isCi()) throw new Error(`${problem} (CI=true: a missing PostgreSQL fails the run)`);
  process.stderr.write(`skipping "${context.test?.parent?.fullTitle() ?? "PostgreSQL"}": ${problem}\n`);
  context.skip();
}

/**
 * initdb into a fresh directory, then pg_ctl start on a free port of 127.0.0.1 (its Unix socket in
 * the data directory), trusting local connections, with durability off: the data is thrown away.
 * As root, both run as the postgres user through runuser.
 */
async function startPostgres(bin: string, isRoot: boolean): Promise<PostgresServer> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-pg-"));
  const asServerUser = (program: string, args: string[]): [string, string[]] =>
    isRoot ? ["runuser", ["-u", SERVER_USER, "--", path.join(bin, program), ...args]] : [path.join(bin, program), args];
  if (isRoot) await run("chown", [SERVER_USER, dataDir]);
  const [port] = await freePorts(1);
  const options = `-p ${port} -k ${dataDir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
  try {
    await run(...asServerUser("initdb", ["-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]));
    await run(...asServerUser("pg_ctl", ["-D", dataDir, "-l", path.join(dataDir, "server.log"), "-o", options, "-w", "-t", "30", "start"]));
  } catch (error) {
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
  let databases = 0;
  return {
    port,
    async createDatabase() {
      databases += 1;
      const name = `orders_test_${databases}`;
      const client = new Client({ host: "127.0.0.1", port, user: "postgres", database: "postgres" });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    async stop() {
      try {
        await run(...asServerUser("pg_ctl", ["-D", dataDir, "-m", "immediate", "-w", "stop"]));
      } finally {
        fs.rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

/** Runs `command` (no shell) in the temp directory, which the server user can enter; rejects with its output unless it exits 0. */
function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd: os.tmpdir(), timeout: COMMAND_TIMEOUT_MS, encoding: "utf8" }, (error, stdout, stderr) => {
      if (error === null) return resolve();
      reject(new Error(`${[path.basename(command), ...args].join(" ")} failed: ${error.message}\nstdout: ${stdout}\nstderr: ${stderr}`, { cause: error }));
    });
  });
}

/** True when `command` runs and exits 0. */
function succeeds(command: string, args: string[]): Promise<boolean> {
  return run(command, args).then(
    () => true,
    () => false,
  );
}

#!/usr/bin/env node
/**
 * The `protomesh` command. A subcommand is one entry of COMMANDS. Running this file runs `main`;
 * importing it does nothing.
 */
import { launch } from "./launcher";
import { CATALOG_DEFAULT_PORT, ORDERS_DEFAULT_PORT, referenceStack } from "../services/stack";
import type { Stack } from "../services/stack";

/** Exit code of a command line that cannot be understood (the shell convention for misuse). */
export const USAGE_EXIT_CODE = 2;

/** One subcommand of `protomesh`. */
export interface Command {
  /** One line in the usage text. */
  summary: string;
  /** Usage of the subcommand itself, printed by `protomesh <command> --help`. */
  usage: string;
  /** Runs the subcommand with the arguments after its name; resolves to the process exit code. */
  run(args: string[]): Promise<number>;
}

/** The subcommands, by name. */
export const COMMANDS: Readonly<Record<string, Command>> = {
  up: {
    summary: "run the reference services (catalog, orders) locally until Ctrl-C",
    usage: [
      "Usage: protomesh up",
      "",
      "Starts catalog, then orders, from dist/; waits until each reports SERVING over",
      "grpc.health.v1; prints where they listen and grpcurl commands to try. Ctrl-C (or SIGTERM)",
      "drains and stops them. Each service logs to .run/<service>.log.",
      "",
      "Environment:",
      `  CATALOG_PORT  port of the catalog (default ${CATALOG_DEFAULT_PORT})`,
      `  ORDERS_PORT   port of the orders service (default ${ORDERS_DEFAULT_PORT})`,
      "",
      "Example: make up CATALOG_PORT=6001 ORDERS_PORT=6002",
      "",
    ].join("\n"),
    run: up,
  },
};

/** The top-level usage text, listing every subcommand. */
export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const lines = Object.entries(COMMANDS).map(([name, command]) => `  ${name.padEnd(width)}  ${command.summary}`);
  return [
    "Usage: protomesh <command> [--help]",
    "",
    "Commands:",
    ...lines,
    "",
    "Run `protomesh <command> --help` for the options of a command.",
    "",
  ].join("\n");
}

/** Dispatches `argv` (the arguments after the script) to a subcommand; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage());
    return 0;
  }
  const command = name !== undefined && Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (command === undefined) {
    const problem = name === undefined ? "a command is required" : `unknown command ${JSON.stringify(name)}`;
    process.stderr.write(`protomesh: ${problem}\n\n${usage()}`);
    return USAGE_EXIT_CODE;
  }
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(command.usage);
    return 0;
  }
  return command.run(args);
}

async function up(args: string[]): Promise<number> {
  if (args.length > 0) {
    process.stderr.write(`protomesh up: unexpected argument ${JSON.stringify(args[0])}\n\n${COMMANDS.up.usage}`);
    return USAGE_EXIT_CODE;
  }
  let stack: Stack;
  try {
    stack = referenceStack(process.env);
  } catch (error) {
    process.stderr.write(`protomesh up: ${(error as Error).message}\n`);
    return USAGE_EXIT_CODE;
  }
  try {
    return await launch(stack.processes, { readyText: tryIt(stack.tryCommands) });
  } catch (error) {
    process.stderr.write(`protomesh up: ${(error as Error).message}\n`);
    return 1;
  }
}

function tryIt(commands: string[]): string {
  return [
    "Try it from the repository root (`make up` installed grpcurl into .tools/bin):",
    '  export PATH="$PWD/.tools/bin:$PATH"',
    ...commands.map((command) => `  ${command}`),
    "",
    "Ctrl-C stops them.",
    "",
  ].join("\n");
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`protomesh: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}

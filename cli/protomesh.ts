#!/usr/bin/env node
/**
 * The `protomesh` command. A subcommand is one entry of COMMANDS. Running this file runs `main`;
 * importing it does nothing. This is a program: it reads the environment (mesh/settings.ts) and
 * hands plain options to the kit, the control plane and the launcher.
 */
import * as path from "node:path";
import { CONTROL_PLANE_DEFAULT_PORT } from "../mesh/controlplane/control-plane";
import { isServiceError } from "../mesh/errors";
import { issueWorkloadCertificate } from "../mesh/identity";
import { isServiceName } from "../mesh/names";
import { SETTINGS_ENV, loadSettings } from "../mesh/settings";
import type { MeshSettings } from "../mesh/settings";
import { runControlPlane } from "./control-plane";
import { DEV_AUDIENCE, DEV_ISSUER, DEV_JWKS_FILE, ensureDevKeys, mintDevToken } from "./gateway/dev-keys";
import { GATEWAY_DEFAULT_PORT, runGateway } from "./gateway/run";
import { ADMIN_NAME, STACK_TRUST_DOMAIN, identityEnv, isPlaintext, secureStack, stackCa, stackOperator, stackXdsSocket } from "./identities";
import type { StackIdentities } from "./identities";
import { DEFAULT_RUN_DIR, launch } from "./launcher";
import { formatReport, placeOrders } from "./place-orders";
import { ADMIN_PORT_OFFSET, CATALOG_DEFAULT_PORT, ORDERS_DEFAULT_PORT, REPLICA_PORT_STRIDE, referenceStack } from "./stack";
import type { Stack } from "./stack";

const MESH_CONFIG_ENV = SETTINGS_ENV.meshConfig;
/** The gateway config `protomesh gateway` reads unless given another. */
const DEFAULT_GATEWAY_CONFIG = path.resolve(__dirname, "..", "..", "deploy", "gateway.yaml");

/** Where `protomesh up` keeps its logs and, on mTLS, its CA and certificates (tls/). */
const RUN_DIR = DEFAULT_RUN_DIR;
/** What `PROTOMESH_PLAINTEXT=1 make up` says before anything starts. */
const PLAINTEXT_BANNER = [
  "",
  "  ************************************************************************************",
  "  *  PLAINTEXT MESH (PROTOMESH_PLAINTEXT=1): no mTLS, no identities, no authorization. *",
  "  *  Any process on this machine may call any method, register any endpoint and       *",
  "  *  inject faults. For local debugging only; unset PROTOMESH_PLAINTEXT for mTLS.      *",
  "  ************************************************************************************",
  "",
  "",
].join("\n");

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
    summary: "run the control plane and replicas of catalog and orders locally until Ctrl-C",
    usage: [
      "Usage: protomesh up",
      "",
      "Starts the control plane, then catalog and orders with as many replicas as the mesh config",
      "says (`replicas`), all on 127.0.0.1, each waited on until it reports SERVING over",
      "grpc.health.v1. Every replica registers with the control plane; orders calls the catalog by",
      "name (xds:///catalog). Prints every endpoint as the control plane's registry sees it, and",
      "again whenever that changes; then grpcurl commands to try. A replica that exits is reported",
      "and the rest keeps running; the control plane exiting stops everything. Ctrl-C (or SIGTERM)",
      "stops the replicas (they deregister and drain), then the control plane. A second Ctrl-C, a",
      "moment after the first, kills what is left; a SIGTERM however often it comes (a process-group",
      "kill, forwarded again by make) is one request to drain.",
      "Logs: .run/control-plane.log, .run/<service>-<i>.log.",
      "",
      `Ports: replica i of a service listens on its base port + ${REPLICA_PORT_STRIDE} * i`,
      `(catalog ${CATALOG_DEFAULT_PORT}, ${CATALOG_DEFAULT_PORT + REPLICA_PORT_STRIDE}, ${CATALOG_DEFAULT_PORT + 2 * REPLICA_PORT_STRIDE}; orders ${ORDERS_DEFAULT_PORT}, ${ORDERS_DEFAULT_PORT + REPLICA_PORT_STRIDE}).`,
      "",
      "Environment:",
      `  CONTROL_PLANE_PORT     port of the control plane (default ${CONTROL_PLANE_DEFAULT_PORT})`,
      `  CATALOG_PORT           base port of the catalog replicas (default ${CATALOG_DEFAULT_PORT})`,
      `  ORDERS_PORT            base port of the orders replicas (default ${ORDERS_DEFAULT_PORT})`,
      `  ADMIN_PORT_OFFSET      each process's admin HTTP port (/metrics) is its port + this (default ${ADMIN_PORT_OFFSET}; 0: none)`,
      `  ${MESH_CONFIG_ENV}  the mesh config (default deploy/mesh.yaml of this checkout)`,
      "  PROTOMESH_PLAINTEXT    1: run the mesh without mTLS, for local debugging only (loudly)",
      "",
      "Security: every port is STRICT mTLS by default. A fresh development CA in .run/tls issues",
      "each process a certificate naming its SPIFFE ID (spiffe://protomesh.local/service/<name>),",
      "renewed through the control plane before it expires; .run/tls/admin.crt is the operator's",
      "identity (spiffe://protomesh.local/admin/cli) for grpcurl, as the printed commands show.",
      "",
      "Example: make up CATALOG_PORT=6051 ORDERS_PORT=6052",
      "",
    ].join("\n"),
    run: up,
  },
  "control-plane": {
    summary: "run the mesh control plane (registry, xDS, health probing) until Ctrl-C",
    usage: [
      "Usage: protomesh control-plane [config.yaml]",
      "",
      "Runs the control plane: the registry API (protomesh.registry.v1.RegistryService), an xDS",
      "v3 ADS server for gRPC clients dialling xds:///<service>, grpc.health.v1 and reflection.",
      `Listens on HOST:PORT (default 127.0.0.1:${CONTROL_PLANE_DEFAULT_PORT}). The mesh config comes from the`,
      `argument, else ${MESH_CONFIG_ENV}; none means defaults for every service. SIGHUP reloads`,
      "it (an invalid file is refused and the config in force stays); SIGTERM or Ctrl-C stops.",
      "Logs one JSON line per event on stdout.",
      "",
      "Example: protomesh control-plane deploy/mesh.yaml",
      "",
    ].join("\n"),
    run: controlPlane,
  },
  identity: {
    summary: "issue a workload started by hand its certificate from the running make up mesh's CA",
    usage: [
      "Usage: protomesh identity <service>",
      "",
      "Issues <service> a key and a certificate (spiffe://protomesh.local/service/<service>, an hour)",
      "from the CA `make up` made in .run/tls, and prints the PROTOMESH_TLS_* and PROTOMESH_XDS_SOCKET",
      "variables that give a process that identity. Run it from the directory make up runs in.",
      "",
      'Example: eval "$(node dist/cli/protomesh.js identity catalog)"; PORT=50081 node dist/services/catalog/main.js',
      "",
    ].join("\n"),
    run: identityCommand,
  },
  "place-orders": {
    summary: "place orders through the mesh as a mesh client does, and say how they went",
    usage: [
      "Usage: protomesh place-orders [count]",
      "",
      "Places count orders (default 100), 4 at a time, each with a new idempotency key, through the",
      "mesh as any mesh client does: orders dialled by name over xDS, with the policy the control",
      "plane sends for it (retries of UNAVAILABLE and RESOURCE_EXHAUSTED in deploy/mesh.yaml), each",
      "call with a 5 s deadline. Then reads the orders back and prints how many calls succeeded, how",
      "many grpc-js retried, and how many idempotency keys got more than one order (none, ever).",
      `The control plane: ${SETTINGS_ENV.controlPlane} (default 127.0.0.1:${CONTROL_PLANE_DEFAULT_PORT}, as make up runs it).`,
      "",
      "Example: node dist/cli/protomesh.js place-orders 200",
      "",
    ].join("\n"),
    run: placeOrdersCommand,
  },
  gateway: {
    summary: "run the HTTP/JSON and gRPC-Web gateway into the mesh",
    usage: [
      "Usage: protomesh gateway [gateway.yaml]",
      "",
      "Serves the google.api.http rules of the shop's contracts as HTTP/JSON, and gRPC-Web for",
      "browsers, on the config's http_port (default 8080; GATEWAY_HTTP_PORT overrides it), and",
      "calls the services by name through the control plane (PROTOMESH_CONTROL_PLANE). Bearer",
      "tokens, per-route scopes and rate limits come from the config (default deploy/gateway.yaml).",
      `It is a kit server too: health and reflection on PORT (default ${GATEWAY_DEFAULT_PORT}), registered as "gateway".`,
      "GET /openapi.json is the OpenAPI document of the routes. SIGTERM drains.",
      "",
    ].join("\n"),
    run: gatewayCommand,
  },
  token: {
    summary: "sign a development bearer token for the gateway",
    usage: [
      "Usage: protomesh token [--subject NAME] [--scope \"SCOPE ...\"] [--ttl SECONDS]",
      "",
      `Signs a token with the development key in .data/ (made on first use, its public half in ${DEV_JWKS_FILE},`,
      `which deploy/gateway.yaml names), issuer ${DEV_ISSUER}, audience ${DEV_AUDIENCE}, and prints it.`,
      "Defaults: subject dev, no scope, 3600 s. For a laptop only.",
      "",
      'Example: curl -H "Authorization: Bearer $(node dist/cli/protomesh.js token --scope orders:write)" ...',
      "",
    ].join("\n"),
    run: tokenCommand,
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
  const settings = settingsOf("up");
  if (settings === undefined) return USAGE_EXIT_CODE;
  let stack: Stack;
  try {
    stack = referenceStack(settings, process.env);
  } catch (error) {
    process.stderr.write(`protomesh up: ${(error as Error).message}\n`);
    return USAGE_EXIT_CODE;
  }
  const plaintext = plaintextOf("up");
  if (plaintext === undefined) return USAGE_EXIT_CODE;
  // The gateway's development tokens: a key pair in .data/ whose public half deploy/gateway.yaml names.
  if (stack.gatewayHttp !== undefined) await ensureDevKeys();
  const runDir = path.resolve(RUN_DIR);
  let identities: StackIdentities | undefined;
  if (plaintext) {
    process.stderr.write(PLAINTEXT_BANNER);
  } else {
    try {
      identities = await secureStack(stack, runDir);
    } catch (error) {
      process.stderr.write(`protomesh up: cannot make the mesh's identities (openssl 3 is needed): ${(error as Error).message}\n`);
      return 1;
    }
  }
  for (const { name, reason } of stack.unavailable) {
    process.stderr.write(`protomesh up: ${name} is not started: ${reason}; the rest of the mesh runs without it\n`);
  }
  for (const name of stack.notStarted) {
    process.stderr.write(`protomesh up: the mesh config names ${JSON.stringify(name)}, which up has no program for: not started\n`);
  }
  try {
    return await launch(stack, {
      runDir,
      tls: identities?.admin,
      readyText: (pidOf) => tryIt(stack.tryCommands(pidOf, identities ? "$TLS" : "-plaintext"), stack.dashboardUrl, identities && path.relative(process.cwd(), identities.dir)),
    });
  } catch (error) {
    process.stderr.write(`protomesh up: ${(error as Error).message}\n`);
    return 1;
  }
}

/**
 * `protomesh identity <service>`: issues a workload of the running `make up` mesh its certificate
 * and prints the variables that give it that identity, for `eval`.
 */
async function identityCommand(args: string[]): Promise<number> {
  const [service, ...rest] = args;
  if (service === undefined || rest.length > 0 || !isServiceName(service)) {
    process.stderr.write(`protomesh identity: one mesh service name is needed (a DNS label such as catalog)\n\n${COMMANDS.identity.usage}`);
    return USAGE_EXIT_CODE;
  }
  const runDir = path.resolve(RUN_DIR);
  let ca;
  try {
    ca = stackCa(runDir);
  } catch (error) {
    process.stderr.write(`protomesh identity: ${(error as Error).message}\n`);
    return 1;
  }
  const stem = `${service}-byhand-${process.pid}`;
  const workload = await issueWorkloadCertificate(ca, { service, fileStem: stem, dnsNames: [service] });
  const exports = identityEnv(ca, workload, stackXdsSocket(runDir));
  process.stdout.write(
    `# ${workload.spiffeId}, valid until ${workload.notAfter.toISOString()} (the kit renews it through the control plane)\n` +
      Object.entries(exports)
        .map(([name, value]) => `export ${name}=${shellQuote(value)}`)
        .join("\n") +
      "\n",
  );
  return 0;
}

function shellQuote(text: string): string {
  return /^[A-Za-z0-9_./:@-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}

/**
 * Starts the control plane and resolves to 0 once it listens; the process then runs until
 * SIGTERM or SIGINT, on which cli/control-plane.ts stops it and exits.
 */
async function controlPlane(args: string[]): Promise<number> {
  if (args.length > 1) {
    process.stderr.write(`protomesh control-plane: unexpected argument ${JSON.stringify(args[1])}\n\n${COMMANDS["control-plane"].usage}`);
    return USAGE_EXIT_CODE;
  }
  const settings = settingsOf("control-plane");
  if (settings === undefined) return USAGE_EXIT_CODE;
  const file = args[0] ?? settings.meshConfigPath;
  try {
    await runControlPlane(settings, file);
    return 0;
  } catch (error) {
    // A config error names the field only; name the file too. Other errors (a port in use, an
    // unreadable file) say what they are about already.
    const problem = isServiceError(error) ? `${file}: ${error.details}` : (error as Error).message;
    process.stderr.write(`protomesh control-plane: ${problem}\n`);
    // Exit rather than return: nothing started may keep this process alive after a failed start.
    process.exit(1);
  }
}

async function placeOrdersCommand(args: string[]): Promise<number> {
  const count = args[0] === undefined ? 100 : Number(args[0]);
  if (args.length > 1 || !Number.isInteger(count) || count < 1 || count > 100_000) {
    process.stderr.write(`protomesh place-orders: count must be an integer from 1 to 100000\n\n${COMMANDS["place-orders"].usage}`);
    return USAGE_EXIT_CODE;
  }
  const settings = settingsOf("place-orders");
  if (settings === undefined) return USAGE_EXIT_CODE;
  // On the mTLS mesh of `make up` (its CA in .run/tls), as its operator; PROTOMESH_TLS_* name other files.
  const plaintext = plaintextOf("place-orders");
  if (plaintext === undefined) return USAGE_EXIT_CODE;
  const operator = settings.tls === undefined && !plaintext ? stackOperator(path.resolve(RUN_DIR)) : undefined;
  const tls = settings.tls ?? operator?.tls;
  const xdsSocket = settings.xdsSocket ?? operator?.xdsSocket;
  const report = await placeOrders(settings.controlPlane ?? `127.0.0.1:${CONTROL_PLANE_DEFAULT_PORT}`, count, {
    tls,
    xdsServer: xdsSocket === undefined ? undefined : `unix://${xdsSocket}`,
  });
  process.stdout.write(`${formatReport(report)}\n`);
  // The xDS client keeps the process alive after its channel closed; the report is out.
  process.exit(report.duplicated === 0 ? 0 : 1);
}

async function gatewayCommand(args: string[]): Promise<number> {
  if (args.length > 1) {
    process.stderr.write(`protomesh gateway: unexpected argument ${JSON.stringify(args[1])}\n\n${COMMANDS.gateway.usage}`);
    return USAGE_EXIT_CODE;
  }
  const settings = settingsOf("gateway");
  if (settings === undefined) return USAGE_EXIT_CODE;
  try {
    await runGateway(settings, args[0] ?? DEFAULT_GATEWAY_CONFIG, process.env);
    return 0;
  } catch (error) {
    process.stderr.write(`protomesh gateway: ${(error as Error).message}\n`);
    process.exit(1);
  }
}

async function tokenCommand(args: string[]): Promise<number> {
  const options = { subject: "dev", scopes: [] as string[], ttlS: 3600 };
  for (let index = 0; index < args.length; index += 2) {
    const [flag, value] = [args[index], args[index + 1]];
    if (value === undefined) {
      process.stderr.write(`protomesh token: ${flag} needs a value\n\n${COMMANDS.token.usage}`);
      return USAGE_EXIT_CODE;
    }
    if (flag === "--subject") options.subject = value;
    else if (flag === "--scope") options.scopes = value.split(" ").filter((scope) => scope !== "");
    else if (flag === "--ttl" && /^\d+$/.test(value) && Number(value) > 0) options.ttlS = Number(value);
    else {
      process.stderr.write(`protomesh token: unexpected ${JSON.stringify(flag)} ${JSON.stringify(value)}\n\n${COMMANDS.token.usage}`);
      return USAGE_EXIT_CODE;
    }
  }
  process.stdout.write(`${await mintDevToken(options)}\n`);
  return 0;
}

/** The settings from the environment, or undefined after printing which variable is wrong. */
function settingsOf(command: string): MeshSettings | undefined {
  try {
    return loadSettings(process.env);
  } catch (error) {
    process.stderr.write(`protomesh ${command}: ${isServiceError(error) ? error.details : (error as Error).message}\n`);
    return undefined;
  }
}

/** Whether the environment asks for the plaintext mesh, or undefined after printing why PROTOMESH_PLAINTEXT is wrong. */
function plaintextOf(command: string): boolean | undefined {
  try {
    return isPlaintext(process.env);
  } catch (error) {
    process.stderr.write(`protomesh ${command}: ${(error as Error).message}\n`);
    return undefined;
  }
}

function tryIt(commands: string[], dashboardUrl: string | undefined, tlsDir: string | undefined): string {
  const tls =
    tlsDir === undefined
      ? []
      : [
          `  # every port is mTLS: grpcurl and grpc-health-probe call as spiffe://${STACK_TRUST_DOMAIN}/admin/${ADMIN_NAME}`,
          `  TLS="-cacert ${tlsDir}/ca.crt -cert ${tlsDir}/admin.crt -key ${tlsDir}/admin.key"`,
          `  PROBE_TLS="-tls -tls-ca-cert ${tlsDir}/ca.crt -tls-client-cert ${tlsDir}/admin.crt -tls-client-key ${tlsDir}/admin.key"`,
        ];
  return [
    "Try it from the repository root (`make up` installs grpcurl into .tools/bin when Go is there):",
    '  export PATH="$PWD/.tools/bin:$PATH"',
    ...tls,
    ...commands.map((command) => `  ${command}`),
    "",
    ...(dashboardUrl === undefined ? [] : [`The live mesh dashboard: ${dashboardUrl} (open it in a browser)`, ""]),
    "The table is printed again whenever the registry changes. Ctrl-C stops everything.",
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

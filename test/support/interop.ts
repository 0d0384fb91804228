import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { Metadata, status } from "@grpc/grpc-js";
import type { ServerUnaryCall, ServiceError } from "@grpc/grpc-js";
import {
  EchoRequest,
  EchoResponse,
  HoldRequest,
  HoldResponse,
  InteropServiceClient,
  InteropServiceService,
  Payload,
} from "../../generated/ts/protomesh/interop/v1/interop";
import type { Hop, InteropServiceServer, MetadataEntry } from "../../generated/ts/protomesh/interop/v1/interop";
import { MeshError, REQUEST_ID_KEY, createClient, createServer, deadlineMs, isServiceError, unary } from "../../mesh";
import type { Logger, MeshServer } from "../../mesh";
import { isCi, repoRoot } from "./tools";

/**
 * The TypeScript side of the kits' interop contract (proto/protomesh/interop/v1/interop.proto), and
 * the Go and Python interop programs (test/interop/go, test/interop/python) that the polyglot tests
 * run as processes: `interop serve` serves InteropService through that language's kit, and
 * `interop call` calls any method by mesh name and prints one JSON line per call.
 */

export type Language = "typescript" | "go" | "python";

/** Prefix of the metadata keys Echo returns. */
const INTEROP_METADATA_PREFIX = "x-interop-";

/** The compiled Go programs and the Python virtualenv, as the Makefile builds them. */
export function polyglotPrograms(root = repoRoot()): { goInterop: string; goInventory: string; python: string; pythonInterop: string; pricing: string } {
  return {
    goInterop: path.join(root, "dist", "go", "interop"),
    goInventory: path.join(root, "dist", "go", "inventory"),
    python: path.join(root, ".venv", "bin", "python"),
    pythonInterop: path.join(root, "test", "interop", "python", "interop.py"),
    pricing: path.join(root, "services", "pricing", "main.py"),
  };
}

/** Why `language`'s programs cannot run here, or undefined when they can. */
export function languageUnavailable(language: "go" | "python"): string | undefined {
  const programs = polyglotPrograms();
  if (language === "go") {
    return fs.existsSync(programs.goInterop) && fs.existsSync(programs.goInventory)
      ? undefined
      : `${programs.goInterop} and ${programs.goInventory} not built (install Go, then \`make go-build\`)`;
  }
  return fs.existsSync(programs.python) ? undefined : `${programs.python} missing (install python3, then \`make python-env\`)`;
}

/** Skips the test (or suite) when `languages` cannot run here, saying why; under CI that fails instead. */
export function requireLanguages(context: Mocha.Context, ...languages: Array<"go" | "python">): void {
  const reasons = languages.map(languageUnavailable).filter((reason) => reason !== undefined);
  if (reasons.length === 0) return;
  if (isCi()) throw new Error(`required under CI: ${reasons.join("; ")}`);
  console.log(`      skipped: ${reasons.join("; ")}`);
  context.skip();
}

/** The command that runs `language`'s interop program with `args`. */
export function interopCommand(language: "go" | "python", args: readonly string[]): { file: string; args: string[] } {
  const programs = polyglotPrograms();
  return language === "go"
    ? { file: programs.goInterop, args: [...args] }
    : { file: programs.python, args: [programs.pythonInterop, ...args] };
}

/** A metadata entry as an interop program prints it. */
export interface PrintedEntry {
  key: string;
  text?: string;
  binary?: string;
}

/** One call as `interop call` prints it. */
export interface PrintedCall {
  code: number;
  codeName: string;
  details: string;
  response?: Record<string, unknown>;
  headers: PrintedEntry[];
  trailers: PrintedEntry[];
  elapsedMs: number;
  unknownFieldKept?: boolean;
}

/** What `interop call` is asked to do. */
export interface InteropCallOptions {
  target: string;
  method: string;
  request: unknown;
  deadlineMs?: number;
  cancelAfterMs?: number;
  metadata?: Record<string, string>;
  requestId?: string;
  count?: number;
  unknownField?: boolean;
  /** More environment for the program (e.g. the PROTOMESH_TLS_* files). */
  env?: Record<string, string>;
}

/** Runs `interop call` of `language` against the mesh of `controlPlane`; resolves to its printed calls. */
export function interopCall(language: "go" | "python", controlPlane: string, options: InteropCallOptions): Promise<PrintedCall[]> {
  const args = ["call", "--target", options.target, "--method", options.method, "--request", JSON.stringify(options.request)];
  if (options.deadlineMs !== undefined) args.push("--deadline-ms", String(options.deadlineMs));
  if (options.cancelAfterMs !== undefined) args.push("--cancel-after-ms", String(options.cancelAfterMs));
  for (const [key, value] of Object.entries(options.metadata ?? {})) args.push("--metadata", `${key}=${value}`);
  if (options.requestId !== undefined) args.push("--request-id", options.requestId);
  if (options.count !== undefined) args.push("--count", String(options.count));
  if (options.unknownField) args.push("--unknown-field");
  const command = interopCommand(language, args);
  return new Promise((resolve, reject) => {
    const child = spawn(command.file, command.args, {
      env: { ...process.env, PROTOMESH_CONTROL_PLANE: controlPlane, PROTOMESH_LOG_LEVEL: "warn", ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
    child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.once("close", (code) => {
      clearTimeout(timer);
      const lines = stdout.split("\n").filter((line) => line.startsWith("{"));
      const calls: PrintedCall[] = [];
      for (const line of lines) {
        const parsed = JSON.parse(line) as Partial<PrintedCall>;
        if (typeof parsed.codeName === "string") calls.push(parsed as PrintedCall);
      }
      if (code !== 0 || calls.length !== (options.count ?? 1)) {
        reject(new Error(`${language} interop call ${args.join(" ")} exited ${code} with ${calls.length} calls\n${stdout}\n${stderr}`));
      } else {
        resolve(calls);
      }
    });
  });
}

/**
 * Normal form of a Payload for comparing what the three languages printed: the proto3 JSON of the
 * message as ts-proto reads it (defaults dropped, int64 as strings, bytes base64, enums by name).
 */
export function normalPayload(json: unknown): unknown {
  return Payload.toJSON(Payload.fromJSON(json ?? {}));
}

/** The interop server of the TypeScript kit, registered as `service` with the control plane. */
export async function startTypescriptInterop(options: { service: string; controlPlane: string; logger: Logger }): Promise<{ server: MeshServer; endpoint: string; close(): Promise<void> }> {
  const server = createServer({ name: options.service, meshService: options.service, logger: options.logger, controlPlane: options.controlPlane, drainGraceMs: 2_000 });
  let endpoint = "";
  const relays = new Map<string, InteropServiceClient>();
  const relay = (service: string) => {
    let client = relays.get(service);
    if (!client) {
      client = createClient(InteropServiceClient, service, { controlPlane: options.controlPlane, logger: options.logger });
      relays.set(service, client);
    }
    return client;
  };
  server.addService(InteropServiceService, interopService(() => endpoint, relay, options.logger));
  const port = await server.listen("127.0.0.1:0");
  endpoint = `127.0.0.1:${port}`;
  return {
    server,
    endpoint,
    close: async () => {
      await server.drain();
      for (const client of relays.values()) client.close();
    },
  };
}

/** InteropService as the TypeScript kit serves it (the proto's comments are the spec). */
export function interopService(endpoint: () => string, relay: (service: string) => InteropServiceClient, logger: Logger): InteropServiceServer {
  return {
    echo: (call, callback) => {
      const metadata = interopEntries(call.metadata);
      const trailers = new Metadata();
      for (const entry of metadata) {
        if (entry.key.endsWith("-bin")) trailers.add(entry.key, Buffer.from(entry.binary));
        else trailers.add(entry.key, entry.text);
      }
      const response: EchoResponse = { payload: call.request.payload, metadata, language: "typescript", endpoint: endpoint() };
      callback(null, response, trailers);
    },
    hold: unary<HoldRequest, HoldResponse>(async (request, call) => {
      const deadline = deadlineMs(call.getDeadline());
      const hop: Hop = {
        language: "typescript",
        endpoint: endpoint(),
        remainingMs: Number.isFinite(deadline) ? Math.max(0, Math.round(deadline - Date.now())) : -1,
        requestId: String(call.metadata.get(REQUEST_ID_KEY)[0] ?? ""),
      };
      const [next, ...rest] = request.relayTo;
      if (next === undefined) {
        const started = Date.now();
        const reason = await holdFor(request.holdMs, call);
        logger.info({ heldMs: Date.now() - started, reason, requestId: hop.requestId }, "hold ended");
        return { hops: [hop] };
      }
      const downstream = await new Promise<HoldResponse>((resolve, reject) =>
        relay(next).hold({ holdMs: request.holdMs, relayTo: rest }, (error: ServiceError | null, response: HoldResponse) => {
          if (!error) return resolve(response);
          // A downstream call the kit cancelled because this call's deadline passed ends this call
          // DEADLINE_EXCEEDED, as a caller whose own timer had not fired yet should be told.
          const code = isServiceError(error) && error.code === status.CANCELLED && Date.now() >= deadline ? status.DEADLINE_EXCEEDED : error.code;
          reject(isServiceError(error) ? new MeshError(code, `${next}: ${error.details}`) : new MeshError(status.INTERNAL, `${next}: ${String(error)}`));
        }),
      );
      return { hops: [hop, ...downstream.hops] };
    }),
  };
}

/** Waits `holdMs`, or less when the call is cancelled or its deadline passes; resolves to why it ended. */
function holdFor(holdMs: number, call: ServerUnaryCall<HoldRequest, HoldResponse>): Promise<"done" | "cancelled" | "deadline"> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => end("done"), holdMs);
    const onCancelled = () => end(deadlineMs(call.getDeadline()) <= Date.now() ? "deadline" : "cancelled");
    call.once("cancelled", onCancelled);
    function end(reason: "done" | "cancelled" | "deadline") {
      clearTimeout(timer);
      call.off("cancelled", onCancelled);
      resolve(reason);
    }
  });
}

/** The request's x-interop-* entries, sorted by key, values in the order received. */
function interopEntries(metadata: Metadata): MetadataEntry[] {
  const entries: MetadataEntry[] = [];
  const keys = Object.keys(metadata.getMap()).filter((key) => key.startsWith(INTEROP_METADATA_PREFIX)).sort();
  for (const key of keys) {
    for (const value of metadata.get(key)) {
      entries.push(
        typeof value === "string"
          ? { key, text: value, binary: Buffer.alloc(0) }
          : { key, text: "", binary: Buffer.from(value) },
      );
    }
  }
  return entries;
}

export { EchoRequest, EchoResponse, HoldRequest, HoldResponse, InteropServiceClient, Payload };

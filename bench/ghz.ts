import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { TlsFiles } from "./bench-tls";
import { runTool } from "./pinned-process";
import { REPO_ROOT, toolPath } from "./tools";

/**
 * ghz (grpc-go load tester) as the suite's gRPC-aware check. h2load sees HTTP statuses only, so
 * before a scenario measures, ghz calls every server under test through grpc-go, with the
 * descriptor set `make gen` writes, and every call must end OK. ghz is not the load generator of
 * B0–B6: pinned to one core it tops out near 5k calls/s with milliseconds of its own latency
 * (measured here), below what a Node server core serves; see BENCHMARKS.md. It is the load of B11,
 * which reproduces grpc_bench's method (ghz against each server) so its figures read beside theirs.
 */

/** The descriptor set ghz reads the services from. */
export const DESCRIPTOR_SET = path.join(REPO_ROOT, "generated", "descriptor.binpb");

/** A short ghz run to verify a method end to end. */
export interface GhzCheck {
  address: string;
  /** Fully-qualified method, `package.Service.Method`. */
  call: string;
  /** The request, as the JSON ghz takes. */
  data: unknown;
  requests: number;
  /** The client side of the bench TLS, for a server that speaks mTLS only (B1T, B2T); plaintext when absent. */
  tls?: TlsFiles;
}

/** A ghz load: closed loop, `concurrency` calls in flight over `connections`, timed or counted. */
export interface GhzLoad {
  address: string;
  /** Fully-qualified method, `package.Service.Method`. */
  call: string;
  /** The request, as the JSON ghz takes. */
  data: unknown;
  connections: number;
  /** Calls in flight in total, spread evenly over the connections (at least one each). */
  concurrency: number;
  /** Go threads of ghz (GOMAXPROCS, its --cpus); it runs pinned to the load core whatever this says. */
  cpus: number;
  /** A timed run: calls still in flight at the end are waited for and counted (--duration-stop wait). */
  durationS?: number;
  /** A counted run, when `durationS` is absent. */
  requests?: number;
  /** The client side of the bench TLS; plaintext when absent. */
  tls?: TlsFiles;
}

/** What the scenarios read from ghz's JSON report. */
export interface GhzResult {
  /** Calls ghz made, whatever their status. */
  count: number;
  requestsPerSecond: number;
  /** Latency percentiles of the calls (ms), from ghz's latency distribution. */
  latencyMs: { p50: number; p90: number; p99: number };
  /** Calls by status code name ("OK", "Unavailable", …). */
  statusCodes: Record<string, number>;
}

/** Runs `check` and throws, naming the status codes seen, unless every call ended OK. */
export async function verifyWithGhz(check: GhzCheck, timeoutMs = 30_000): Promise<void> {
  const { address, call, data, requests, tls } = check;
  const result = await runGhz({ address, call, data, requests, tls, connections: 2, concurrency: 10, cpus: 2 }, timeoutMs);
  assertAllOk(result, `ghz ${check.call} on ${check.address}`, requests);
}

/** Throws, naming the status codes seen, unless every call of `result` (and `expected` of them, when given) ended OK. */
export function assertAllOk(result: GhzResult, what: string, expected = result.count): void {
  const codes = result.statusCodes;
  const isAllOk = Object.keys(codes).length === 1 && codes.OK === expected && expected > 0;
  if (!isAllOk) throw new Error(`${what}: expected ${expected} OK, got ${JSON.stringify(codes)}`);
}

/** Runs ghz on the load core with `load` and reads its JSON report. */
export async function runGhz(load: GhzLoad, timeoutMs: number): Promise<GhzResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-ghz-"));
  try {
    const report = path.join(dir, "report.json");
    const amount =
      load.durationS === undefined
        ? ["-n", String(load.requests ?? 200)]
        : ["-z", `${load.durationS}s`, "--duration-stop", "wait"];
    await runTool(
      toolPath("ghz"),
      [
        ...transportFlags(load.tls),
        "--protoset", DESCRIPTOR_SET,
        "--call", load.call,
        "-d", JSON.stringify(load.data),
        ...amount,
        "-c", String(load.concurrency),
        "--connections", String(load.connections),
        "--cpus", String(load.cpus),
        "-O", "json",
        "-o", report,
        load.address,
      ],
      timeoutMs,
    );
    return parseGhzReport(fs.readFileSync(report, "utf8"));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * ghz's flags for plaintext, or for mTLS with the bench client's certificate. The server's chain
 * goes unchecked (--skipTLS): Go checks a host name, and an X.509-SVID names none, only its SPIFFE
 * ID; the server still checks the client's certificate, which is what the verification needs.
 */
function transportFlags(tls: TlsFiles | undefined): string[] {
  return tls ? ["--skipTLS", "--cert", tls.certFile, "--key", tls.keyFile] : ["--insecure"];
}

/** The figures of a ghz JSON report (ghz v0.120: durations in ns). */
export function parseGhzReport(json: string): GhzResult {
  const report = JSON.parse(json) as {
    count?: number;
    rps?: number;
    statusCodeDistribution?: Record<string, number>;
    latencyDistribution?: { percentage: number; latency: number }[] | null;
  };
  const latencies = report.latencyDistribution ?? [];
  const ms = (percentage: number) => {
    const found = latencies.find((entry) => entry.percentage === percentage);
    return found === undefined ? Number.NaN : found.latency / 1e6;
  };
  return {
    count: report.count ?? 0,
    requestsPerSecond: report.rps ?? Number.NaN,
    latencyMs: { p50: ms(50), p90: ms(90), p99: ms(99) },
    statusCodes: report.statusCodeDistribution ?? {},
  };
}

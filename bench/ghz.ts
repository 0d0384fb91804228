import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { runTool } from "./pinned-process";
import { REPO_ROOT, toolPath } from "./tools";

/**
 * ghz (grpc-go load tester) as the suite's gRPC-aware check. h2load sees HTTP statuses only, so
 * before a scenario measures, ghz calls every server under test through grpc-go, with the
 * descriptor set `make gen` writes, and every call must end OK. ghz is not the load generator:
 * pinned to one core it tops out near 5k calls/s with milliseconds of its own latency (measured
 * here), below what a Node server core serves; see BENCHMARKS.md.
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
}

/** Runs `check` and throws, naming the status codes seen, unless every call ended OK. */
export async function verifyWithGhz(check: GhzCheck, timeoutMs = 30_000): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-ghz-"));
  try {
    const report = path.join(dir, "report.json");
    await runTool(
      toolPath("ghz"),
      [
        "--insecure",
        "--protoset", DESCRIPTOR_SET,
        "--call", check.call,
        "-d", JSON.stringify(check.data),
        "-n", String(check.requests),
        "-c", "10",
        "--connections", "2",
        "-O", "json",
        "-o", report,
        check.address,
      ],
      timeoutMs,
    );
    const parsed = JSON.parse(fs.readFileSync(report, "utf8")) as { statusCodeDistribution?: Record<string, number> };
    const codes = parsed.statusCodeDistribution ?? {};
    const isAllOk = Object.keys(codes).length === 1 && codes.OK === check.requests;
    if (!isAllOk) {
      throw new Error(`ghz ${check.call} on ${check.address}: expected ${check.requests} OK, got ${JSON.stringify(codes)}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

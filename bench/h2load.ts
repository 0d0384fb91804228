import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { startTool } from "./pinned-process";
import { toolPath } from "./tools";

/**
 * h2load (nghttp2's HTTP/2 load generator, C, one core) driving gRPC: every request is a POST of a
 * pre-encoded gRPC frame with `content-type: application/grpc` and `te: trailers`, the two headers a
 * gRPC server requires. h2load judges a request by its HTTP status only, so the scenarios check
 * the gRPC status once with a real client before they measure.
 */

/** One h2load run: either timed (`durationS`, after `warmUpMs`) or counted (`requests`). */
export interface H2loadLoad {
  url: string;
  /** The request body: a gRPC frame. */
  body: Buffer;
  connections: number;
  /** Streams in flight per connection (h2load -m). */
  streamsPerConnection: number;
  durationS?: number;
  warmUpMs?: number;
  requests?: number;
  /** Open-loop rate per connection (h2load --rps); closed loop when absent. */
  rpsPerConnection?: number;
}

/** What the scenarios read from h2load's summary (and its per-request log, when asked). */
export interface H2loadResult {
  requestsPerSecond: number;
  succeeded: number;
  failed: number;
  /** Requests answered with a non-2xx HTTP status. */
  non2xx: number;
  /** Bytes received, headers and data. */
  trafficBytes: number;
  /** Mean request time in ms (h2load's summary has no percentiles). */
  meanRequestMs: number;
  /** Per-request latency (µs) from h2load --log-file, when `withLatencies` was set. */
  latenciesUs?: number[];
}

/** Runs h2load on the load core to completion and parses its summary (and per-request log). */
export async function runH2load(load: H2loadLoad, timeoutMs: number, withLatencies = false): Promise<H2loadResult> {
  const run = startH2load(load, timeoutMs, withLatencies);
  return run.done;
}

/** h2load started, with its parsed result to come and a way to stop it (held streams, B6). */
export interface StartedH2load {
  done: Promise<H2loadResult>;
  kill(): void;
}

/** Starts h2load on the load core; its temporary files go when it ends. */
export function startH2load(load: H2loadLoad, timeoutMs: number, withLatencies = false): StartedH2load {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-bench-"));
  const bodyFile = path.join(dir, "body.bin");
  const logFile = path.join(dir, "requests.tsv");
  fs.writeFileSync(bodyFile, load.body);
  const args = [
    "-t", "1",
    "-c", String(load.connections),
    "-m", String(load.streamsPerConnection),
    "-d", bodyFile,
    "-H", "content-type: application/grpc",
    "-H", "te: trailers",
  ];
  if (load.durationS !== undefined) {
    args.push("-D", String(load.durationS));
    if (load.warmUpMs) args.push(`--warm-up-time=${load.warmUpMs}ms`);
  } else {
    args.push("-n", String(load.requests ?? 1000));
  }
  if (load.rpsPerConnection !== undefined) args.push(`--rps=${load.rpsPerConnection}`);
  if (withLatencies) args.push(`--log-file=${logFile}`);
  args.push(load.url);
  const tool = startTool(toolPath("h2load"), args, timeoutMs);
  const done = tool.done
    .then(({ stdout }) => {
      const result = parseH2load(stdout);
      return withLatencies ? { ...result, latenciesUs: readLatencies(logFile) } : result;
    })
    .finally(() => fs.rmSync(dir, { recursive: true, force: true }));
  return { done, kill: () => tool.kill() };
}

/** Latencies (µs) of the 2xx requests in an h2load --log-file: start µs, HTTP status, µs to the end. */
function readLatencies(logFile: string): number[] {
  if (!fs.existsSync(logFile)) return [];
  const latencies: number[] = [];
  for (const line of fs.readFileSync(logFile, "utf8").split("\n")) {
    const [, statusCode, latency] = line.split("\t");
    if (statusCode === "200") latencies.push(Number(latency));
  }
  return latencies;
}

/** Parses the summary h2load prints (nghttp2 1.4x–1.6x). Throws when a line is missing. */
export function parseH2load(stdout: string): H2loadResult {
  const match = (pattern: RegExp, what: string) => {
    const found = pattern.exec(stdout);
    if (!found) throw new Error(`h2load: no ${what} in its output:\n${stdout.slice(-2_000)}`);
    return found;
  };
  const finished = match(/finished in [\d.]+m?s, ([\d.]+) req\/s/, "'finished in' line");
  const requests = match(/requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed/, "requests line");
  const codes = match(/status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/, "status codes line");
  const traffic = match(/traffic: [^(]*\((\d+)\) total/, "traffic line");
  const time = match(/time for request:\s+[\d.]+[mu]?s\s+[\d.]+[mu]?s\s+([\d.]+)([mu]?s)/, "request time line");
  return {
    requestsPerSecond: Number(finished[1]),
    succeeded: Number(requests[1]),
    failed: Number(requests[2]),
    non2xx: Number(codes[2]) + Number(codes[3]) + Number(codes[4]),
    trafficBytes: Number(traffic[1]),
    meanRequestMs: toMs(Number(time[1]), time[2]),
  };
}

function toMs(value: number, unit: string): number {
  if (unit === "us") return value / 1000;
  if (unit === "ms") return value;
  return value * 1000;
}

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { ClientKind, ClientLoad, ClientResult } from "./client-process";
import { runH2load } from "./h2load";
import { LOAD_CORE, NodeChild, SERVER_CORE } from "./pinned-process";
import { BENCH_DIST_DIR } from "./tools";
import { H2LOAD_TIMEOUT_MS, SATURATION_CONNECTIONS, SATURATION_STREAMS_PER_CONNECTION, UNARY_BODY, UNARY_PATH } from "./unary-load";

/**
 * Where the per-call CPU goes (issue 11: "profile first"): a V8 CPU profile (`node --cpu-prof`) of
 * the process under test at saturation, plain grpc-js and protomesh one after the other, as their
 * top frames by self time. Not part of `make bench`: a tool to point at what to look at, and the
 * source of BENCHMARKS.md's "top frames" tables.
 *
 *   node dist/bench/profile.js [--side server|client] [--calls N] [--top K] [--keep DIR]
 *
 * - server: the bench server (server-process.ts, `plain` then `mesh`) on the server core, h2load on
 *   the load core: 4 connections × 25 streams of GetProduct, a warm-up of N/2 calls, then N calls.
 * - client: a plain server on the server core, the bench client (client-process.ts, `plain` then
 *   `mesh`) on the load core at 100 calls in flight, warmed up, then N calls.
 * Only the samples taken during the measured calls count (the profile's clock is the monotonic one
 * `process.hrtime` reads). Shares are of the process's busy time (idle excluded; "(program)", V8's
 * unattributed native time, counted as node); "µs per call" is
 * a frame's self time over the measured calls, the profiler's own overhead included.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A frame's self time within the window, and what it is. */
interface FrameTime {
  frame: string;
  group: FrameGroup;
  selfUs: number;
}

/** Whose code a frame is. */
type FrameGroup = "protomesh" | "grpc-js" | "pino" | "protobuf" | "node" | "gc" | "other";

/** What one profiled run found. */
interface ProfileSummary {
  kind: string;
  calls: number;
  busyUs: number;
  frames: FrameTime[];
}

function groupOf(functionName: string, url: string): FrameGroup {
  if (functionName === "(garbage collector)") return "gc";
  if (functionName === "(program)") return "node";
  if (url.includes("/node_modules/@grpc/")) return "grpc-js";
  if (url.includes("/node_modules/pino") || url.includes("/node_modules/sonic-boom")) return "pino";
  if (url.includes("/node_modules/@bufbuild/") || url.includes("/generated/")) return "protobuf";
  if (url.includes("/dist/mesh/")) return "protomesh";
  if (url.startsWith("node:") || url === "") return "node";
  return "other";
}

function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url.replace(/^.*\/node_modules\//, "").replace(/^.*\/dist\//, "");
  return `${functionName || "(anonymous)"} ${where}${where ? `:${lineNumber + 1}` : ""}`;
}

/** Self time per frame of the samples taken in [fromUs, toUs] (the profile's clock), idle left out. */
function summarize(profile: CpuProfile, fromUs: number, toUs: number): { busyUs: number; frames: FrameTime[] } {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<string, FrameTime>();
  let busyUs = 0;
  let at = profile.startTime;
  for (let index = 0; index < profile.samples.length; index++) {
    at += profile.timeDeltas[index] ?? 0;
    const next = profile.timeDeltas[index + 1] ?? 0;
    if (at < fromUs || at > toUs) continue;
    const node = byId.get(profile.samples[index]);
    if (node === undefined || node.callFrame.functionName === "(idle)") continue;
    const name = frameName(node);
    let frame = selfUs.get(name);
    if (frame === undefined) {
      frame = { frame: name, group: groupOf(node.callFrame.functionName, node.callFrame.url), selfUs: 0 };
      selfUs.set(name, frame);
    }
    frame.selfUs += next;
    busyUs += next;
  }
  return { busyUs, frames: [...selfUs.values()].sort((a, b) => b.selfUs - a.selfUs) };
}

function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

function readProfile(dir: string): CpuProfile {
  const file = fs.readdirSync(dir).find((name) => name.endsWith(".cpuprofile"));
  if (file === undefined) throw new Error(`profile: no .cpuprofile written in ${dir}`);
  return JSON.parse(fs.readFileSync(path.join(dir, file), "utf8")) as CpuProfile;
}

async function profileServer(kind: "plain" | "mesh" | "metrics" | "tracing", calls: number, dir: string): Promise<ProfileSummary> {
  const profileDir = fs.mkdtempSync(path.join(dir, `server-${kind}-`));
  const { child, port } = await NodeChild.start({
    script: path.join(BENCH_DIST_DIR, "server-process.js"),
    args: ["--kind", kind],
    core: SERVER_CORE,
    nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${profileDir}`],
  });
  let window: [number, number];
  try {
    const load = (requests: number) => ({
      url: `http://127.0.0.1:${port}${UNARY_PATH}`,
      body: UNARY_BODY,
      connections: SATURATION_CONNECTIONS,
      streamsPerConnection: SATURATION_STREAMS_PER_CONNECTION,
      requests,
    });
    await runH2load(load(Math.ceil(calls / 2)), H2LOAD_TIMEOUT_MS);
    const from = monotonicUs();
    const result = await runH2load(load(calls), H2LOAD_TIMEOUT_MS);
    window = [from, monotonicUs()];
    if (result.failed > 0 || result.non2xx > 0) throw new Error(`profile: ${result.failed + result.non2xx} of ${calls} calls to ${kind} failed`);
  } finally {
    await child.stop();
  }
  return { kind, calls, ...summarize(readProfile(profileDir), ...window) };
}

async function profileClient(kind: ClientKind, calls: number, dir: string): Promise<ProfileSummary> {
  const { child: server, port } = await NodeChild.start({
    script: path.join(BENCH_DIST_DIR, "server-process.js"),
    args: ["--kind", "plain"],
    core: SERVER_CORE,
  });
  const profileDir = fs.mkdtempSync(path.join(dir, `client-${kind}-`));
  try {
    const { child } = await NodeChild.start({
      script: path.join(BENCH_DIST_DIR, "client-process.js"),
      args: ["--kind", kind, "--target", `127.0.0.1:${port}`],
      core: LOAD_CORE,
      nodeArgs: ["--cpu-prof", `--cpu-prof-dir=${profileDir}`],
    });
    let window: [number, number];
    let measured: ClientResult;
    try {
      const load = (maxCalls: number): ClientLoad => ({ concurrency: 100, warmUpMs: 0, durationMs: 120_000, maxCalls });
      await child.request<ClientResult>("run", load(Math.ceil(calls / 2)), 150_000);
      const from = monotonicUs();
      measured = await child.request<ClientResult>("run", load(calls), 150_000);
      window = [from, monotonicUs()];
    } finally {
      await child.stop();
    }
    if (measured.errors > 0) throw new Error(`profile: ${measured.errors} calls of the ${kind} client failed`);
    return { kind, calls: measured.calls, ...summarize(readProfile(profileDir), ...window) };
  } finally {
    await server.stop();
  }
}

const GROUPS: readonly FrameGroup[] = ["protomesh", "grpc-js", "pino", "protobuf", "node", "gc", "other"];

/** The Markdown of one side: busy µs per call by group, then the top frames of each run. */
function formatProfiles(side: string, runs: readonly ProfileSummary[], top: number): string {
  const perCall = (us: number, run: ProfileSummary) => (us / run.calls).toFixed(2);
  const lines = [
    `### ${side}: busy CPU per call by whose code it is (µs, profiler overhead included)`,
    "",
    `| | ${runs.map((run) => run.kind).join(" | ")} |`,
    `| --- | ${runs.map(() => "---:").join(" | ")} |`,
    `| all | ${runs.map((run) => perCall(run.busyUs, run)).join(" | ")} |`,
  ];
  for (const group of GROUPS) {
    const cells = runs.map((run) => perCall(run.frames.filter((frame) => frame.group === group).reduce((sum, frame) => sum + frame.selfUs, 0), run));
    lines.push(`| ${group} | ${cells.join(" | ")} |`);
  }
  for (const run of runs) {
    lines.push("", `${side}, ${run.kind} (${run.calls} calls): top ${top} frames by self time`, "", "| share | µs/call | frame |", "| ---: | ---: | --- |");
    for (const frame of run.frames.slice(0, top)) {
      lines.push(`| ${((frame.selfUs / run.busyUs) * 100).toFixed(1)} % | ${perCall(frame.selfUs, run)} | \`${frame.frame}\` (${frame.group}) |`);
    }
  }
  return lines.join("\n");
}

function option(args: readonly string[], name: string): string | undefined {
  const index = args.indexOf(name);
  return index >= 0 ? args[index + 1] : undefined;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes("--help")) {
    process.stdout.write("usage: node dist/bench/profile.js [--side server|client|both] [--calls N] [--top K] [--keep DIR]\n");
    return;
  }
  const side = option(args, "--side") ?? "both";
  const calls = Number(option(args, "--calls") ?? 60_000);
  const top = Number(option(args, "--top") ?? 12);
  if (!["server", "client", "both"].includes(side) || !Number.isInteger(calls) || calls < 100 || !Number.isInteger(top) || top < 1) {
    throw new Error("profile: --side must be server, client or both; --calls an integer >= 100; --top an integer >= 1");
  }
  const keep = option(args, "--keep");
  const dir = keep ?? fs.mkdtempSync(path.join(os.tmpdir(), "protomesh-profile-"));
  fs.mkdirSync(dir, { recursive: true });
  try {
    const out: string[] = [];
    if (side !== "client") {
      const runs = [await profileServer("plain", calls, dir), await profileServer("mesh", calls, dir), await profileServer("metrics", calls, dir), await profileServer("tracing", calls, dir)];
      out.push(formatProfiles("server", runs, top));
    }
    if (side !== "server") {
      const runs = [await profileClient("plain", calls, dir), await profileClient("mesh", calls, dir), await profileClient("metrics", calls, dir), await profileClient("tracing", calls, dir)];
      out.push(formatProfiles("client", runs, top));
    }
    process.stdout.write(`${out.join("\n\n")}\n`);
  } finally {
    if (keep === undefined) fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
}

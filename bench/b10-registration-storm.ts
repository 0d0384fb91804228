import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { Metadata, credentials } from "@grpc/grpc-js";
import { RegistryServiceClient } from "../generated/ts/protomesh/registry/v1/registry";
import type { Service } from "../generated/ts/protomesh/registry/v1/registry";
import { DEFAULT_LEASE_TTL_MS } from "../mesh/controlplane/registry";
import { KEEPALIVE_FRACTION } from "../mesh/registry-lease";
import { restartFigures } from "./b10-analysis";
import type { RestartFigures, RestartRecord } from "./b10-analysis";
import type { CallOutcome } from "./b10-caller-process";
import { ControlPlaneProcess } from "./b10-control-plane";
import type { ProcessSample } from "./b10-control-plane";
import type { LeaseEvent } from "./b10-lease-process";
import { expectedEndpoints, serviceName } from "./b10-mesh";
import type { SubscriberEvent, SubscriberState } from "./b10-subscriber-process";
import { table } from "./b10-table";
import { epochMs } from "./call-record";
import { busyShare, readCoreTimes } from "./core-usage";
import { flag } from "./control-channel";
import { LOAD_CORE, NodeChild, isPinningAvailable } from "./pinned-process";
import { pollUntil, sleep } from "./poll";

/**
 * B10, registration storm (issue 11, point 4). A benchmark, not a test: it prints figures and
 * never fails on time. `node dist/bench/b10-registration-storm.js [--endpoints 1000] [--services 10]
 * [--repeats 3] [--cases SIGKILL,SIGTERM] [--subscribers 20] [--settle-ms 12000] [--down-ms 0]
 * [--call-interval-ms 50] [--spread-ms N] [--out DIR] [--log-dir DIR] [--cp-profile-dir DIR]`
 * (or `make bench-b10`); JSON in
 * DIR/b10-latest.json (default bench/results/).
 *
 * Each run starts a fresh mesh: the `protomesh control-plane` program with no static entries
 * (b10-control-plane.ts, core 0); `--endpoints` endpoints over `--services` services, registered
 * by real leases from `--replica-processes` processes, each with one grpc.health.v1 server that all
 * its endpoints (distinct 127.1.x.y addresses) point at (b10-lease-process.ts); `--subscribers`
 * raw ADS streams spread over the services (b10-subscriber-process.ts); a grpc-js-xds client
 * calling svc-000 through the mesh (b10-caller-process.ts). Once the mesh is whole (every endpoint
 * registered and HEALTHY in the registry, every subscriber listing all of its service HEALTHY),
 * the control plane gets the case's signal, is started again on the same port once it has exited
 * (after `--down-ms`), and the run watches until the mesh is whole again, then `--settle-ms` more
 * for flapping. Figures per restart: b10-analysis.ts; table: b10-table.ts.
 */

const BENCH_DIR = __dirname;
/** Keep-alive period of a lease at the control plane's default TTL. */
const KEEPALIVE_MS = Math.round(DEFAULT_LEASE_TTL_MS * KEEPALIVE_FRACTION);
/**
 * The leases start spread over at least one keep-alive period, so that their keep-alives are out of
 * phase, and over 10 ms per endpoint (10 s for 1,000: three periods), so that the first start is a
 * gentle 100 registrations/s: the storm under test is the restart's, not the first start's.
 */
const START_SPREAD_MS_PER_ENDPOINT = 10;
const SAMPLE_EVERY_MS = 100;
const REGISTRY_CALL_DEADLINE_MS = 10_000;
const REGISTRY_LIST_ATTEMPTS = 3;
/** Calls the caller must have answered before the control plane is killed. */
const CALLS_BEFORE_KILL = 20;
const CALLER_READY_TIMEOUT_MS = 30_000;
/** Then how long it calls before the kill: the steady spread of its calls over the endpoints. */
const STEADY_CALLS_MS = 2_000;

interface Settings {
  endpoints: number;
  services: number;
  repeats: number;
  cases: NodeJS.Signals[];
  replicaProcesses: number;
  subscribers: number;
  subscriberProcesses: number;
  settleMs: number;
  downMs: number;
  spreadMs: number;
  callIntervalMs: number;
  wholeTimeoutMs: number;
  logDir: string | undefined;
  /** Where the restarted control plane writes a CPU profile (node --cpu-prof), if anywhere. */
  profileDir: string | undefined;
}

function settingsFromFlags(): Settings {
  const number = (name: string, fallback: number) => {
    const value = Number(flag(name, String(fallback)));
    if (!Number.isFinite(value) || value < 0) throw new Error(`bench: --${name} must be a number >= 0`);
    return value;
  };
  const cases = flag("cases", "SIGKILL,SIGTERM").split(",").map((name) => name.trim().toUpperCase()) as NodeJS.Signals[];
  if (!cases.every((signal) => signal === "SIGKILL" || signal === "SIGTERM")) throw new Error("bench: --cases takes SIGKILL and SIGTERM");
  const endpoints = number("endpoints", 1000);
  const settings: Settings = {
    endpoints,
    services: number("services", 10),
    repeats: number("repeats", 3),
    cases,
    replicaProcesses: number("replica-processes", 4),
    subscribers: number("subscribers", 20),
    subscriberProcesses: number("subscriber-processes", 2),
    settleMs: number("settle-ms", 12_000),
    downMs: number("down-ms", 0),
    spreadMs: number("spread-ms", Math.max(KEEPALIVE_MS, START_SPREAD_MS_PER_ENDPOINT * endpoints)),
    // 20 calls/s: the caller shares its core with the replicas, whose heartbeats must be answered within 1 s.
    callIntervalMs: number("call-interval-ms", 50),
    wholeTimeoutMs: number("whole-timeout-ms", 60_000),
    logDir: process.argv.includes("--log-dir") ? flag("log-dir") : undefined,
    profileDir: process.argv.includes("--cp-profile-dir") ? path.resolve(flag("cp-profile-dir")) : undefined,
  };
  if (settings.endpoints < settings.services || settings.services < 1) throw new Error("bench: needs --services >= 1 and --endpoints >= --services");
  if (settings.endpoints > 250 * 250) throw new Error("bench: --endpoints at most 62500 (127.1.x.y)");
  return settings;
}

/** A free TCP port on 0.0.0.0, kept for every control plane of the benchmark. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "0.0.0.0", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * The kernel's count of connections dropped because a listen socket's accept queue was full
 * (TcpExt ListenOverflows, /proc/net/netstat): system-wide, NaN where unreadable. A storm of
 * reconnections overflows the control plane's backlog (Node listens with 511), and each dropped
 * handshake waits for TCP's SYN retransmission (1 s, then 2 s, 4 s, ...).
 */
function listenOverflows(): number {
  try {
    const lines = fs.readFileSync("/proc/net/netstat", "utf8").split("\n").filter((line) => line.startsWith("TcpExt:"));
    const names = lines[0].split(/\s+/);
    const values = lines[1].split(/\s+/);
    return Number(values[names.indexOf("ListenOverflows")]);
  } catch {
    return Number.NaN;
  }
}

/** Ids whose last health line in the log says HEALTHY. */
function healthyInLog(controlPlane: ControlPlaneProcess): number {
  const latest = new Map<string, boolean>();
  for (const [, service, id, isHealthy] of controlPlane.log.health) latest.set(`${service}/${id}`, isHealthy);
  return [...latest.values()].filter(Boolean).length;
}

/** The registry as ListServices shows it at the end; undefined if an overloaded control plane never answered. */
async function listRegistry(port: number): Promise<Service[] | undefined> {
  const client = new RegistryServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
  try {
    for (let attempt = 1; attempt <= REGISTRY_LIST_ATTEMPTS; attempt++) {
      try {
        return await new Promise<Service[]>((resolve, reject) =>
          client.listServices({ service: "" }, new Metadata(), { deadline: Date.now() + REGISTRY_CALL_DEADLINE_MS }, (error, response) =>
            error ? reject(error) : resolve(response.services),
          ),
        );
      } catch (error) {
        process.stderr.write(`b10: ListServices attempt ${attempt}: ${(error as Error).message}\n`);
      }
    }
    return undefined;
  } finally {
    client.close();
  }
}

/** The processes of one run but the control plane, and how to read them. */
class Mesh {
  private constructor(
    readonly replicas: NodeChild[],
    readonly subscribers: NodeChild[],
    readonly streams: string[],
    readonly expected: Map<string, Set<string>>,
  ) {}

  /** The grpc-js-xds client calling through the mesh, once started. */
  caller: NodeChild | undefined;

  static async start(settings: Settings, port: number, seed: number): Promise<Mesh> {
    const replicas: NodeChild[] = [];
    const ports: number[] = [];
    const perProcess = Math.ceil(settings.endpoints / settings.replicaProcesses);
    for (let first = 0; first < settings.endpoints; first += perProcess) {
      const count = Math.min(perProcess, settings.endpoints - first);
      const args = ["--port", String(port), "--first", String(first), "--count", String(count), "--services", String(settings.services)];
      args.push("--spread-ms", String(settings.spreadMs), "--seed", String(seed * 1_000 + first));
      const started = await NodeChild.start({ script: path.join(BENCH_DIR, "b10-lease-process.js"), args, core: LOAD_CORE });
      replicas.push(started.child);
      ports.push(started.port);
    }
    const expected = expectedEndpoints(settings.endpoints, settings.services, (g) => ports[Math.floor(g / perProcess)]);
    const streams = Array.from({ length: settings.subscribers }, (_, i) => serviceName(i % settings.services));
    const subscribers: NodeChild[] = [];
    const perSubscriberProcess = Math.ceil(streams.length / Math.max(1, settings.subscriberProcesses));
    for (let first = 0; first < streams.length; first += perSubscriberProcess) {
      const args = ["--control-plane", `127.0.0.1:${port}`, "--services", streams.slice(first, first + perSubscriberProcess).join(",")];
      subscribers.push((await NodeChild.start({ script: path.join(BENCH_DIR, "b10-subscriber-process.js"), args, core: LOAD_CORE })).child);
    }
    return new Mesh(replicas, subscribers, streams, expected);
  }

  async states(): Promise<SubscriberState[]> {
    return (await Promise.all(this.subscribers.map((child) => child.request<SubscriberState[]>("state")))).flat();
  }

  async subscriberEvents(): Promise<SubscriberEvent[][]> {
    return (await Promise.all(this.subscribers.map((child) => child.request<SubscriberEvent[][]>("log")))).flat();
  }

  async leaseEvents(): Promise<LeaseEvent[]> {
    return (await Promise.all(this.replicas.map((child) => child.request<LeaseEvent[]>("events")))).flat();
  }

  async calls(): Promise<CallOutcome[]> {
    return this.caller ? this.caller.request<CallOutcome[]>("calls") : [];
  }

  /** Every endpoint registered and HEALTHY in the log, every subscriber listing its whole service HEALTHY (with `edsSince` more EDS than then). */
  async isWhole(controlPlane: ControlPlaneProcess, edsSince: readonly number[] = []): Promise<boolean> {
    controlPlane.assertRunning();
    const total = [...this.expected.values()].reduce((sum, ids) => sum + ids.size, 0);
    if (healthyInLog(controlPlane) < total) return false;
    const states = await this.states();
    return states.every((state, i) => {
      const size = this.expected.get(state.service)?.size ?? 0;
      return state.healthy === size && state.listed === size && state.eds > (edsSince[i] ?? 0);
    });
  }

  async stop(): Promise<void> {
    await Promise.all([this.caller, ...this.subscribers, ...this.replicas].map((child) => child?.stop()));
  }
}

/** One run: a fresh mesh, whole; the control plane gets `signal` and is started again; figures of the restart. */
async function runOnce(settings: Settings, port: number, signal: NodeJS.Signals, seed: number): Promise<RestartFigures> {
  const logFile = (what: string) => (settings.logDir ? path.join(settings.logDir, `b10-${signal}-${seed}-${what}.log`) : undefined);
  let controlPlane = await ControlPlaneProcess.start(port, { logFile: logFile("control-plane-1") });
  let started: Mesh | undefined;
  const samples: ProcessSample[] = [];
  let sampler: NodeJS.Timeout | undefined;
  try {
    const mesh = (started = await Mesh.start(settings, port, seed));
    await pollUntil("the mesh whole before the restart", () => mesh.isWhole(controlPlane), settings.wholeTimeoutMs + settings.spreadMs);
    if (settings.callIntervalMs > 0) {
      const args = ["--control-plane", `127.0.0.1:${port}`, "--service", serviceName(0), "--interval-ms", String(settings.callIntervalMs)];
      mesh.caller = (await NodeChild.start({ script: path.join(BENCH_DIR, "b10-caller-process.js"), args, core: LOAD_CORE })).child;
      const codes = new Map<number, number>();
      const isCalling = async () => {
        for (const [, code] of await mesh.calls()) codes.set(code, (codes.get(code) ?? 0) + 1);
        return (codes.get(0) ?? 0) >= CALLS_BEFORE_KILL;
      };
      await pollUntil("calls through the mesh", isCalling, CALLER_READY_TIMEOUT_MS).catch((error: Error) => {
        throw new Error(`${error.message}; status codes so far: ${JSON.stringify(Object.fromEntries(codes))}`);
      });
    }
    await sleep(STEADY_CALLS_MS);
    // Only what follows the kill counts; the calls before it give the steady spread over endpoints.
    const [, , callsBefore] = await Promise.all([mesh.subscriberEvents(), mesh.leaseEvents(), mesh.calls()]);
    const edsAtKill = (await mesh.states()).map((state) => state.eds);
    const rssBeforeKillBytes = controlPlane.sample()?.rssBytes ?? Number.NaN;

    const overflowsAtKill = listenOverflows();
    const killAt = epochMs();
    const exitAt = await controlPlane.kill(signal);
    if (settings.downMs > 0) await sleep(settings.downMs);
    controlPlane = await ControlPlaneProcess.start(port, { logFile: logFile("control-plane-2"), profileDir: settings.profileDir });
    const restarted = controlPlane;
    const coresAtRestart = readCoreTimes();
    sampler = setInterval(() => {
      const sample = restarted.sample();
      if (sample) samples.push(sample);
    }, SAMPLE_EVERY_MS);
    // Not whole in time is a figure; a control plane that died is a failed run.
    const isWhole = await pollUntil("the mesh whole after the restart", () => mesh.isWhole(restarted, edsAtKill), settings.wholeTimeoutMs).then(
      () => true,
      () => {
        restarted.assertRunning();
        return false;
      },
    );
    const coresAtWhole = readCoreTimes();
    const overflowsUntilWhole = listenOverflows() - overflowsAtKill;
    if (isWhole) await sleep(settings.settleMs);
    const endAt = epochMs();
    const [events, leaseEvents, calls, registry] = await Promise.all([mesh.subscriberEvents(), mesh.leaseEvents(), mesh.calls(), listRegistry(port)]);
    const record: RestartRecord = {
      signal,
      killAt,
      exitAt,
      listeningAt: restarted.log.listeningAt,
      endAt,
      expected: mesh.expected,
      log: restarted.log,
      samples,
      rssBeforeKillBytes,
      listenOverflows: overflowsUntilWhole,
      coresBusy: [...coresAtWhole.keys()].sort((a, b) => a - b).map((core) => busyShare(coresAtRestart, coresAtWhole, core)),
      leaseEvents,
      subscribers: mesh.streams.map((service, i) => ({ service, events: events[i] })),
      callsBefore,
      calls,
      registry,
    };
    if (settings.logDir) {
      const raw = { ...record, expected: Object.fromEntries([...record.expected].map(([service, ids]) => [service, [...ids]])) };
      fs.writeFileSync(logFile("record")!.replace(/\.log$/, ".json"), JSON.stringify(raw));
    }
    return restartFigures(record);
  } finally {
    clearInterval(sampler);
    await started?.stop();
    await controlPlane.kill("SIGTERM");
  }
}

async function main(): Promise<void> {
  const settings = settingsFromFlags();
  if (settings.logDir) fs.mkdirSync(settings.logDir, { recursive: true });
  if (!isPinningAvailable()) process.stderr.write("b10: processes are not pinned (no taskset, one core visible, or BENCH_PIN=0): the control plane shares its core\n");
  const port = await freePort();
  const runs: RestartFigures[] = [];
  let seed = 0;
  for (const signal of settings.cases) {
    for (let repeat = 1; repeat <= settings.repeats; repeat++) {
      seed += 1;
      process.stderr.write(`b10: ${signal} ${repeat}/${settings.repeats}, ${settings.endpoints} endpoints over ${settings.services} services\n`);
      const figures = await runOnce(settings, port, signal, seed);
      process.stderr.write(`b10:   whole again ${figures.isWhole ? `after ${(figures.wholeAtSubscribersMs / 1000).toFixed(2)} s` : "NOT within the timeout"}\n`);
      runs.push(figures);
    }
  }
  const out = flag("out", path.join(BENCH_DIR, "..", "..", "bench", "results"));
  fs.mkdirSync(out, { recursive: true });
  const machine = { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, totalMemBytes: os.totalmem(), isPinned: isPinningAvailable() };
  // Where logs and profiles went is not a setting of the figures.
  const shown = { ...settings, logDir: undefined, profileDir: undefined };
  fs.writeFileSync(path.join(out, "b10-latest.json"), `${JSON.stringify({ machine, settings: shown, runs }, null, 2)}\n`);
  process.stdout.write(`${table(runs, settings)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`b10 failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import pino from "pino";
import { HealthState } from "../generated/ts/protomesh/registry/v1/registry";
import type { Endpoint } from "../generated/ts/protomesh/registry/v1/registry";
import { parseMeshConfig } from "../mesh/controlplane/config";
import { ControlPlane } from "../mesh/controlplane/control-plane";
import { createLogger } from "../mesh/logger";
import { MAX_LEASE_TTL_MS } from "../mesh/controlplane/registry";
import { XDS_TYPE_URLS } from "../mesh/controlplane/xds-protos";
import { epochMs } from "./call-record";
import { flag } from "./control-channel";
import { percentileOf as percentile } from "./pair-statistics";
import { NodeChild } from "./pinned-process";
import { pollUntil, sleep } from "./poll";

/**
 * B9, control-plane scale (issue 11, point 3). A benchmark, not a test: it prints figures and never
 * fails on time. `node dist/bench/b9-control-plane-scale.js [--sizes 2x5:100+100,...] [--changes 40]
 * [--warmup-changes 6] [--processes 1] [--log-file F] [--out DIR]` (rows as JSON in DIR/b9-latest.json, default bench/results/) (or `make bench-b9`).
 *
 * Per size `NxM:T+O`: protomesh's ControlPlane in this process (so its CPU can be read with
 * process.cpuUsage), N services of M static endpoints each (mesh config), every endpoint a distinct
 * loopback address on one real grpc.health.v1 server (b9-health-process.ts), so the prober makes
 * them HEALTHY the production way. T raw ADS subscribers watch the changed service svc-000, O more
 * are spread over the other services (b9-subscriber-process.ts, in `--processes` child processes).
 * Then `--warmup-changes` unmeasured changes, and `--changes` endpoint changes of svc-000, alternately: deregister one registered endpoint
 * (timed until every one of the T subscribers has an EDS without it) and register it again (timed
 * until every one has it listed, UNHEALTHY as registered and not yet probed, and until every one
 * has it HEALTHY, which includes the prober's first Watch answer). Per change:
 * the CPU of the xDS server's update() calls, the process CPU above its idle rate, the ADS
 * responses received by the T subscribers and by the O others, by type.
 */

const BENCH_DIR = __dirname;
/** The endpoint that comes and goes; outside the 127.1.0.0/16 of the static ones. */
const CHANGING_ADDRESS = "127.2.0.1";
const TARGET_SERVICE = "svc-000";
/** How long after the last arrival responses are still counted for a change (then the next one). */
const SETTLE_MS = 300;
/** How long every subscriber may take to see a change before the run gives up. */
const ARRIVAL_TIMEOUT_MS = 20_000;
const IDLE_WINDOW_MS = 3_000;
const TYPE_LETTERS = ["L", "R", "C", "E"];

interface Size {
  services: number;
  endpointsPerService: number;
  targetStreams: number;
  otherStreams: number;
}

interface Row {
  size: Size;
  removeMs: number[];
  addMs: number[];
  listedMs: number[];
  updateCpuMs: number[];
  updateCalls: number[];
  excessCpuMs: number[];
  idleCpuPercent: number;
  rssMb: number;
  heapMb: number;
  targetResponses: number[];
  otherResponses: number[];
}

type Counts = Array<{ service: string; counts: Record<string, number> }>;

function parseSizes(text: string): Size[] {
  return text.split(",").map((item) => {
    const match = /^(\d+)x(\d+):(\d+)\+(\d+)$/.exec(item.trim());
    if (!match) throw new Error(`bench: --sizes item ${item}: expected NxM:T+O`);
    const [services, endpointsPerService, targetStreams, otherStreams] = match.slice(1).map(Number);
    if (services < 2 && otherStreams > 0) throw new Error(`bench: --sizes item ${item}: other subscribers need a second service`);
    return { services, endpointsPerService, targetStreams, otherStreams };
  });
}

function serviceName(index: number): string {
  return `svc-${String(index).padStart(3, "0")}`;
}

/** The mesh config: N services of M static endpoints, 127.1.x.y:<port>, distinct across the mesh. */
function meshConfig(size: Size, port: number) {
  const services: Record<string, unknown> = {};
  for (let s = 0; s < size.services; s++) {
    const endpoints = [];
    for (let e = 0; e < size.endpointsPerService; e++) {
      const g = s * size.endpointsPerService + e;
      endpoints.push({ address: `127.1.${Math.floor(g / 250)}.${(g % 250) + 1}`, port });
    }
    services[serviceName(s)] = { lb_policy: "round_robin", endpoints };
  }
  return parseMeshConfig(JSON.stringify({ services }));
}

function mean(values: readonly number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / Math.max(1, values.length);
}

function cpuMs(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
}


/** Responses received between two snapshots, summed over the subscribers `isCounted` keeps, by type. */
function responsesBetween(before: Counts, after: Counts, isCounted: (service: string) => boolean): number[] {
  return XDS_TYPE_URLS.map((typeUrl) =>
    after.reduce((sum, subscriber, index) => {
      if (!isCounted(subscriber.service)) return sum;
      return sum + (subscriber.counts[typeUrl] ?? 0) - (before[index].counts[typeUrl] ?? 0);
    }, 0),
  );
}

async function runSize(
  size: Size,
  healthPort: number,
  changes: number,
  warmupChanges: number,
  processes: number,
  logFile: string,
): Promise<Row> {
  const logger = createLogger({ name: "b9-control-plane", level: "info", destination: pino.destination({ dest: logFile, sync: false }) });
  const controlPlane = new ControlPlane({ logger, config: meshConfig(size, healthPort), warmupMs: 0 });
  // Every change reaches clients through XdsServer.update(): time its synchronous work.
  const xds = controlPlane.xds;
  const update = xds.update.bind(xds);
  let updateCpuMs = 0;
  let updateCalls = 0;
  xds.update = (...changed) => {
    const start = process.cpuUsage();
    update(...changed);
    updateCpuMs += cpuMs(start);
    updateCalls += 1;
  };
  const cpPort = await controlPlane.listen("127.0.0.1:0");
  const staticCount = size.services * size.endpointsPerService;
  const healthyCount = () =>
    controlPlane.registry
      .serviceNames()
      .flatMap((service) => controlPlane.registry.entries(service))
      .filter((entry) => entry.health === HealthState.HEALTH_STATE_HEALTHY).length;
  await pollUntil("every static endpoint HEALTHY", async () => healthyCount() >= staticCount, 60_000);

  const streams: string[] = [];
  for (let i = 0; i < size.targetStreams; i++) streams.push(TARGET_SERVICE);
  for (let i = 0; i < size.otherStreams; i++) streams.push(serviceName(1 + (i % (size.services - 1))));
  const children: NodeChild[] = [];
  const perProcess = Math.ceil(streams.length / processes);
  for (let p = 0; p * perProcess < streams.length; p++) {
    const mine = streams.slice(p * perProcess, (p + 1) * perProcess);
    const { child } = await NodeChild.start({
      script: path.join(BENCH_DIR, "b9-subscriber-process.js"),
      args: ["--control-plane", `127.0.0.1:${cpPort}`, "--services", mine.join(",")],
      core: 1,
    });
    children.push(child);
  }
  const counts = async (): Promise<Counts> => (await Promise.all(children.map((child) => child.request<Counts>("counts")))).flat();
  await pollUntil(
    "every subscriber has all four resource types",
    async () => (await counts()).every((subscriber) => XDS_TYPE_URLS.every((typeUrl) => (subscriber.counts[typeUrl] ?? 0) > 0)),
    60_000,
  );

  const endpoint: Endpoint = {
    service: TARGET_SERVICE,
    address: CHANGING_ADDRESS,
    port: healthPort,
    zone: "",
    weight: 1,
    metadata: {},
    healthServiceName: "",
  };
  let leaseId = "";
  const renew = setInterval(() => leaseId && controlPlane.registry.keepAlive(leaseId), MAX_LEASE_TTL_MS / 5);
  let change = 0;
  /** Makes one change; resolves with ms until every target subscriber saw it, and the figures of its window. */
  const timedChange = async (isPresent: boolean) => {
    change += 1;
    await Promise.all(
      children.map((child) =>
        child.request("expect", { change, service: TARGET_SERVICE, address: CHANGING_ADDRESS, port: healthPort, present: isPresent }),
      ),
    );
    await Promise.all(children.map((child) => child.request("arrivals")));
    const before = await counts();
    const cpuStart = process.cpuUsage();
    const wallStart = performance.now();
    updateCpuMs = 0;
    updateCalls = 0;
    const startedAt = epochMs();
    if (isPresent) leaseId = controlPlane.registry.register(endpoint, MAX_LEASE_TTL_MS).leaseId;
    else {
      controlPlane.registry.deregister(leaseId);
      leaseId = ""; // gone: the renewal timer must not keep it alive (NOT_FOUND)
    }
    const arrivals: number[] = [];
    const listings: number[] = [];
    await pollUntil(
      `change ${change} at all ${size.targetStreams} subscribers of ${TARGET_SERVICE}`,
      async () => {
        for (const child of children) {
          for (const arrival of await child.request<Array<{ change: number; atMs: number; isFinal: boolean }>>("arrivals")) {
            if (arrival.change === change) (arrival.isFinal ? arrivals : listings).push(arrival.atMs);
          }
        }
        return arrivals.length >= size.targetStreams;
      },
      ARRIVAL_TIMEOUT_MS,
    );
    await sleep(SETTLE_MS);
    const after = await counts();
    return {
      latencyMs: Math.max(...arrivals) - startedAt,
      listedMs: listings.length > 0 ? Math.max(...listings) - startedAt : NaN,
      cpuMs: cpuMs(cpuStart),
      wallMs: performance.now() - wallStart,
      updateCpuMs,
      updateCalls,
      target: responsesBetween(before, after, (service) => service === TARGET_SERVICE),
      other: responsesBetween(before, after, (service) => service !== TARGET_SERVICE),
    };
  };

  await timedChange(true); // the changing endpoint in place, seen HEALTHY everywhere: not measured
  // Warm-up changes, not measured either: the first removals and additions run code neither the
  // control plane nor the subscribers have compiled yet (up to 3× slower at 200 subscribers).
  for (let i = 0; i < warmupChanges; i++) await timedChange(i % 2 === 1);
  await sleep(1_000);
  const idleStart = process.cpuUsage();
  await sleep(IDLE_WINDOW_MS);
  const idleRate = cpuMs(idleStart) / IDLE_WINDOW_MS;

  const row: Row = {
    size,
    removeMs: [],
    addMs: [],
    listedMs: [],
    updateCpuMs: [],
    updateCalls: [],
    excessCpuMs: [],
    idleCpuPercent: idleRate * 100,
    rssMb: 0,
    heapMb: 0,
    targetResponses: [0, 0, 0, 0],
    otherResponses: [0, 0, 0, 0],
  };
  for (let i = 0; i < changes; i++) {
    const isPresent = i % 2 === 1;
    const result = await timedChange(isPresent);
    (isPresent ? row.addMs : row.removeMs).push(result.latencyMs);
    if (isPresent) row.listedMs.push(result.listedMs);
    row.updateCpuMs.push(result.updateCpuMs);
    row.updateCalls.push(result.updateCalls);
    row.excessCpuMs.push(result.cpuMs - idleRate * result.wallMs);
    result.target.forEach((n, t) => (row.targetResponses[t] += n));
    result.other.forEach((n, t) => (row.otherResponses[t] += n));
  }
  const memory = process.memoryUsage();
  row.rssMb = memory.rss / 2 ** 20;
  row.heapMb = memory.heapUsed / 2 ** 20;
  clearInterval(renew);
  await Promise.all(children.map((child) => child.stop()));
  await controlPlane.stop();
  logger.flush();
  return row;
}

function fixed(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "–";
}

function byType(totals: readonly number[], changes: number): string {
  return totals.map((n, t) => `${TYPE_LETTERS[t]}${fixed(n / changes, 1)}`).join(" ");
}

function table(rows: readonly Row[], changes: number): string {
  const lines = [
    "| services × endpoints | endpoints | subscribers (svc-000 + others) | remove → all: p50 / p99 ms | add → listed at all: p50 / p99 ms | add → HEALTHY at all: p50 / p99 ms | update() CPU ms / change (calls) | process CPU ms / change above idle | idle CPU % | RSS MB (heap) | ADS responses / change to svc-000's subscribers | to other subscribers |",
    "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
  ];
  for (const row of rows) {
    const { size } = row;
    lines.push(
      `| ${size.services} × ${size.endpointsPerService} | ${size.services * size.endpointsPerService + 1} | ${size.targetStreams} + ${size.otherStreams} | ` +
        `${fixed(percentile(row.removeMs, 50))} / ${fixed(percentile(row.removeMs, 99))} | ` +
        `${fixed(percentile(row.listedMs, 50))} / ${fixed(percentile(row.listedMs, 99))} | ${fixed(percentile(row.addMs, 50))} / ${fixed(percentile(row.addMs, 99))} | ` +
        `${fixed(mean(row.updateCpuMs), 2)} (${fixed(mean(row.updateCalls))}) | ${fixed(mean(row.excessCpuMs))} | ${fixed(row.idleCpuPercent)} | ` +
        `${fixed(row.rssMb, 0)} (${fixed(row.heapMb, 0)}) | ${byType(row.targetResponses, changes)} | ${byType(row.otherResponses, changes)} |`,
    );
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  const sizes = parseSizes(flag("sizes", "2x5:100+100,10x10:100+100,100x10:100+100,200x10:100+100,200x10:100+0,200x10:200+0"));
  const changes = Number(flag("changes", "40"));
  const warmupChanges = 2 * Math.ceil(Number(flag("warmup-changes", "6")) / 2); // ends with the endpoint in place
  // One process for all subscribers: they share core 1 with the endpoints' health server whatever
  // their number, and more processes on one core add only the scheduler's time slices between them
  // (removal p99 79–153 ms at 200 subscribers in 4 processes, 41–69 ms in one; BENCHMARKS.md, B9).
  const processes = Number(flag("processes", "1"));
  const logFile = flag("log-file", "/dev/null");
  const { child: health, port: healthPort } = await NodeChild.start({ script: path.join(BENCH_DIR, "b9-health-process.js"), args: [], core: 1 });
  const rows: Row[] = [];
  try {
    for (const size of sizes) {
      process.stderr.write(`b9: ${size.services} × ${size.endpointsPerService}, ${size.targetStreams} + ${size.otherStreams} subscribers\n`);
      rows.push(await runSize(size, healthPort, changes, warmupChanges, processes, logFile));
    }
  } finally {
    await health.stop();
  }
  const out = flag("out", path.join(BENCH_DIR, "..", "..", "bench", "results"));
  fs.mkdirSync(out, { recursive: true });
  const machine = { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, totalMemBytes: os.totalmem() };
  fs.writeFileSync(path.join(out, "b9-latest.json"), `${JSON.stringify({ machine, changes, rows }, null, 2)}\n`);
  process.stdout.write(`${table(rows, changes)}\n`);
  process.stdout.write(
    `\n${changes} changes per size (half removals, half additions; p99 of ${changes / 2} is their maximum). Types: L Listener, R RouteConfiguration, C Cluster, E ClusterLoadAssignment.\n`,
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`b9 failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});

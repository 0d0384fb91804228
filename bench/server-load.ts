import type { BenchServer } from "./bench-server";
import { busyShare, readCoreTimes } from "./core-usage";
import { runH2load } from "./h2load";
import type { H2loadLoad } from "./h2load";
import { percentileOf } from "./pair-statistics";
import { LOAD_CORE } from "./pinned-process";

/** A server measured under one h2load load (B0, B1, B5). */
export interface ServerRun {
  requestsPerSecond: number;
  /** Server CPU time per 1000 requests (ms): its CPU utilisation over the window / the request rate. */
  cpuMsPer1000Requests: number;
  /** Server CPU utilisation over the window, in cores. */
  cpuCores: number;
  /** Event-loop delay p99 of the server over the window (B8). */
  eventLoopDelayP99Ms: number;
  /** Latency percentiles (ms) from h2load's per-request log, when asked for. */
  latencyMs?: { p50: number; p90: number; p99: number; p999: number };
  /** Bytes h2load received. */
  trafficBytes: number;
  /**
   * Busy share of the load core over the run, whoever ran there. h2load itself takes ~0.1 here;
   * much more means other work shared the machine and the pair is noisier.
   */
  loadCoreBusy: number;
  /** Share of the calls protomesh's load shedder refused (not counted in requestsPerSecond); 0 for the other kinds. */
  shedShare: number;
}

/**
 * At most this share of a run's calls may be shed by protomesh's load shedder for the run to count.
 * Its adaptive limit refuses calls whenever the event loop falls 70 ms behind in a 100 ms window,
 * which a garbage collection and a burst of h2load's requests do now and then at saturation, and
 * even at half load: a few per cent of calls (BENCHMARKS.md). They are counted as not served; a
 * fifth or more means the core was not the server's own.
 */
export const MAX_SHED_SHARE = 0.2;

/**
 * Runs `load` against `server` and reads the server's own figures over the same window. A run in
 * which any request failed is not a measurement: it throws, naming the counts. Calls protomesh's
 * load shedder refused (RESOURCE_EXHAUSTED, in HTTP 200's trailers, which h2load counts as
 * answered) are not served: the throughput counts the answered calls only, and the run says how
 * many were shed; it throws beyond `options.maxShedShare` (MAX_SHED_SHARE unless given).
 */
export async function measureServer(
  server: BenchServer,
  load: H2loadLoad,
  options: { withLatencies?: boolean; timeoutMs: number; maxShedShare?: number },
): Promise<ServerRun> {
  const maxShedShare = options.maxShedShare ?? MAX_SHED_SHARE;
  await server.mark();
  const coresBefore = readCoreTimes();
  const result = await runH2load(load, options.timeoutMs, options.withLatencies ?? false);
  const coresAfter = readCoreTimes();
  const sample = await server.sample();
  if (result.failed > 0 || result.non2xx > 0 || result.succeeded === 0) {
    throw new Error(
      `${server.kind} server: ${result.succeeded} succeeded, ${result.failed} failed, ` +
        `${result.non2xx} non-2xx under ${load.url}`,
    );
  }
  const shedShare = sample.shedCalls / result.succeeded;
  if (shedShare > maxShedShare) {
    throw new Error(
      `${server.kind} server: its load shedder refused ${sample.shedCalls} of ${result.succeeded} calls under ${load.url} ` +
        `(over ${maxShedShare * 100} %: event-loop delay over its target, a busy core?)`,
    );
  }
  const requestsPerSecond = result.requestsPerSecond * (1 - shedShare);
  const cpuCores = sample.cpuMs / sample.elapsedMs;
  const run: ServerRun = {
    requestsPerSecond,
    cpuCores,
    cpuMsPer1000Requests: (cpuCores * 1e6) / requestsPerSecond,
    eventLoopDelayP99Ms: sample.eventLoopDelayP99Ms,
    trafficBytes: result.trafficBytes,
    loadCoreBusy: busyShare(coresBefore, coresAfter, LOAD_CORE),
    shedShare,
  };
  const latencies = result.latenciesUs ?? [];
  if (latencies.length > 0) {
    const ms = (percentile: number) => percentileOf(latencies, percentile) / 1000;
    run.latencyMs = { p50: ms(50), p90: ms(90), p99: ms(99), p999: ms(99.9) };
  }
  return run;
}

/** One run in a progress line: throughput (or `throughput`), latency when measured, and the cores' load. */
export function describeServerRun(run: ServerRun, throughput = `${run.requestsPerSecond.toFixed(0)} req/s`): string {
  const latency = run.latencyMs ? `, p99 ${run.latencyMs.p99.toFixed(2)} ms` : "";
  const shed = run.shedShare > 0 ? `, ${(run.shedShare * 100).toFixed(2)} % shed` : "";
  const loadCore = Number.isNaN(run.loadCoreBusy) ? "" : `, load core ${(run.loadCoreBusy * 100).toFixed(0)} % busy`;
  return `${throughput}${shed}${latency}, server ${run.cpuCores.toFixed(2)} cores${loadCore}`;
}

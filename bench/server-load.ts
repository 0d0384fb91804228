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
}

/**
 * Runs `load` against `server` and reads the server's own figures over the same window. A run in
 * which any request failed is not a measurement: it throws, naming the counts; so does one in which
 * protomesh's load shedder refused calls, which h2load cannot tell from answers.
 */
export async function measureServer(
  server: BenchServer,
  load: H2loadLoad,
  options: { withLatencies?: boolean; timeoutMs: number },
): Promise<ServerRun> {
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
  if (sample.shedCalls > 0) {
    // A shed call is HTTP 200 with RESOURCE_EXHAUSTED in the trailers: h2load counts it as answered.
    throw new Error(
      `${server.kind} server: its load shedder refused ${sample.shedCalls} of ${result.succeeded} calls under ${load.url} ` +
        "(event-loop delay over its target: a busy core?)",
    );
  }
  const cpuCores = sample.cpuMs / sample.elapsedMs;
  const run: ServerRun = {
    requestsPerSecond: result.requestsPerSecond,
    cpuCores,
    cpuMsPer1000Requests: (cpuCores * 1e6) / result.requestsPerSecond,
    eventLoopDelayP99Ms: sample.eventLoopDelayP99Ms,
    trafficBytes: result.trafficBytes,
    loadCoreBusy: busyShare(coresBefore, coresAfter, LOAD_CORE),
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
  const loadCore = Number.isNaN(run.loadCoreBusy) ? "" : `, load core ${(run.loadCoreBusy * 100).toFixed(0)} % busy`;
  return `${throughput}${latency}, server ${run.cpuCores.toFixed(2)} cores${loadCore}`;
}

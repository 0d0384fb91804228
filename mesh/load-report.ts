import { performance } from "node:perf_hooks";
import * as v8 from "node:v8";
import type { Server, ServerWritableStream } from "@grpc/grpc-js";
import { OrcaLoadReport } from "../generated/ts/xds/data/orca/v3/orca_load_report";
import { OpenRcaServiceService } from "../generated/ts/xds/service/orca/v3/orca";
import type { OpenRcaServiceServer, OrcaLoadReportRequest } from "../generated/ts/xds/service/orca/v3/orca";
import { systemClock } from "./clock";
import type { Cancel, Clock } from "./clock";
import { isServerFailure } from "./errors";
import type { CallRecord, CallSink } from "./observer";

/**
 * ORCA backend metrics (gRFC A51, xds.data.orca.v3.OrcaLoadReport) of one server: what the
 * client-side weighted_round_robin (gRFC A58) weighs endpoints by. Published both ways A51 defines:
 * - per call, in the `endpoint-load-metrics-bin` trailer of every response;
 * - out of band, as the xds.service.orca.v3.OpenRcaService/StreamCoreMetrics stream a client
 *   opens per connection.
 * The contract is the one grpc-js ships (proto/xds), compiled with protomesh's by `make gen`.
 *
 * The utilisation is Node's own: `application_utilization` is the event loop's utilisation (the
 * share of the last window the loop was busy, `performance.eventLoopUtilization`), which reaches 1
 * when the process is saturated however many cores the machine has, where `cpu_utilization` (also
 * sent: process CPU time over the window, as a fraction of one core, capped at 1) would read 1/N
 * of a saturated N-core machine. A58 uses application_utilization when set, so weights follow the
 * event loop. `rps_fractional` and `eps` count the calls and the server-fault failures (errors.ts
 * `isServerFailure`) that ended in the window; `mem_utilization` is the V8 heap used over its limit.
 */

/** Length of the window the figures are measured over. */
export const LOAD_WINDOW_MS = 1_000;
/**
 * Shortest interval between out-of-band reports, whatever a client asks (A51 lets a server bound
 * it; grpc-go and grpc-java default to 30 s, shortened here because weights older than one window
 * are stale).
 */
export const MIN_REPORT_INTERVAL_MS = 1_000;

/** One window's figures: the OrcaLoadReport every report carries (the maps stay empty). */
export type LoadFigures = OrcaLoadReport;

/**
 * Measures a server's load over rolling windows: a CallSink counting ended calls, and a sampler
 * of the event loop, CPU and heap once per window. Started by `start`, stopped by `stop`.
 */
export class LoadMeter implements CallSink {
  private calls = 0;
  private failures = 0;
  private figuresNow: LoadFigures = OrcaLoadReport.create();
  private lastElu = performance.eventLoopUtilization();
  private lastCpu = process.cpuUsage();
  private lastSampleMs: number;
  private cancelSample: Cancel | undefined;
  private encoded: Buffer | undefined;

  /**
   * `applicationUtilization`, when given, is the application's own measure of how busy it is
   * (A51's application_utilization is application-defined), read once per window in place of the
   * event loop's utilisation.
   */
  constructor(
    private readonly clock: Clock = systemClock,
    private readonly applicationUtilization?: () => number,
  ) {
    this.lastSampleMs = clock.now();
  }

  callEnded(record: CallRecord): void {
    this.calls += 1;
    if (isServerFailure(record.code)) this.failures += 1;
  }

  /** The figures of the last complete window. */
  get figures(): LoadFigures {
    return this.figuresNow;
  }

  /** The figures as a serialized OrcaLoadReport, encoded once per window. */
  get encodedFigures(): Buffer {
    this.encoded ??= Buffer.from(OrcaLoadReport.encode(this.figuresNow).finish());
    return this.encoded;
  }

  /** Takes a first sample (so that the first reports are not all zero), then one per window. */
  start(): void {
    if (this.cancelSample) return;
    this.sample();
    const tick = () => {
      this.sample();
      this.cancelSample = this.clock.schedule(tick, LOAD_WINDOW_MS, { unref: true });
    };
    this.cancelSample = this.clock.schedule(tick, LOAD_WINDOW_MS, { unref: true });
  }

  stop(): void {
    this.cancelSample?.();
    this.cancelSample = undefined;
  }

  /** Closes the current window (called once per window; a test may call it directly). */
  sample(): void {
    const nowMs = this.clock.now();
    const windowMs = Math.max(1, nowMs - this.lastSampleMs);
    const elu = performance.eventLoopUtilization(this.lastElu);
    this.lastElu = performance.eventLoopUtilization();
    const cpu = process.cpuUsage(this.lastCpu);
    this.lastCpu = process.cpuUsage();
    const heap = v8.getHeapStatistics();
    this.figuresNow = OrcaLoadReport.create({
      applicationUtilization: this.applicationUtilization?.() ?? elu.utilization,
      cpuUtilization: Math.min(1, (cpu.user + cpu.system) / 1000 / windowMs),
      memUtilization: heap.used_heap_size / heap.heap_size_limit,
      rpsFractional: (this.calls * 1000) / windowMs,
      eps: (this.failures * 1000) / windowMs,
    });
    this.encoded = undefined;
    this.calls = 0;
    this.failures = 0;
    this.lastSampleMs = nowMs;
  }
}

/**
 * The trailer of a per-call ORCA report (A51), which the server's call observer (observer-server.ts)
 * writes from `LoadMeter.encodedFigures`. grpc-js has a per-call recorder for this
 * (`call.getMetricsRecorder()` under the `grpc.server_call_metric_recording` option), but 1.14.7
 * re-reads the ORCA protos from disk for every report it serializes (orca.ts keeps its loaded protos
 * in a `const` that stays null), a few milliseconds per call; this is the same trailer from the
 * same message, encoded by the generated OrcaLoadReport encoder once per window.
 */
export const LOAD_REPORT_TRAILER = "endpoint-load-metrics-bin";

/** Full name of the out-of-band ORCA service, for health and reflection. */
export const ORCA_SERVICE_NAME = "xds.service.orca.v3.OpenRcaService";
/** Its one method, a long-lived stream a drain ends. */
export const ORCA_STREAM_PATH = `/${ORCA_SERVICE_NAME}/StreamCoreMetrics`;


/**
 * Adds OpenRcaService to `server`: each StreamCoreMetrics stream gets the meter's figures at once
 * and then every `report_interval` (at least MIN_REPORT_INTERVAL_MS), until the client cancels.
 * The stream is long-lived (interceptor-inflight.ts): a drain ends it with a status and calls the
 * returned `stop`, which ends the reporting of every stream.
 */
export function addLoadReportService(server: Server, meter: LoadMeter, clock: Clock = systemClock): () => void {
  const streams = new Set<Cancel>();
  const handlers: OpenRcaServiceServer = {
    streamCoreMetrics(call: ServerWritableStream<OrcaLoadReportRequest, OrcaLoadReport>) {
      const asked = call.request.reportInterval;
      const askedMs = asked ? asked.seconds * 1000 + asked.nanos / 1e6 : 0;
      const intervalMs = Math.max(MIN_REPORT_INTERVAL_MS, askedMs);
      let cancelNext: Cancel | undefined;
      const stop: Cancel = () => {
        cancelNext?.();
        streams.delete(stop);
      };
      const report = () => {
        call.write(meter.figures);
        cancelNext = clock.schedule(report, intervalMs, { unref: true });
      };
      streams.add(stop);
      call.on("cancelled", stop);
      report();
    },
  };
  server.addService(OpenRcaServiceService, handlers);
  return () => {
    for (const stop of [...streams]) stop();
  };
}

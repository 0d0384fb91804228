import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { Context, Span, TextMapGetter, TextMapSetter, Tracer } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import type { Sampler } from "@opentelemetry/sdk-trace";
import type { Metadata, status } from "@grpc/grpc-js";
import { isServerFailure } from "./errors";
import type { MethodPath } from "./method-path";

/**
 * Traces (OpenTelemetry): one span per call on each side, made by the call observers when a
 * tracer is given, the W3C `traceparent` (and `tracestate`) carried in the call's metadata, so that
 * a call's server span is the child of its client span, and a call made while handling an inbound
 * call is the child of that call's server span, across every hop and language of the mesh. The
 * mesh's own services (health, reflection, ORCA: method-path.ts MESH_SERVICES) get no span. Without
 * a tracer nothing of this runs. Span names and attributes follow OpenTelemetry's RPC conventions:
 * `package.Service/Method`, rpc.system "grpc", rpc.service, rpc.method, rpc.grpc.status_code; a
 * server failure (errors.ts) sets the span's status to ERROR.
 */

const propagator = new W3CTraceContextPropagator();

/** The W3C Trace Context headers, as gRPC metadata and HTTP carry them. */
export const TRACEPARENT_KEY = "traceparent";
export const TRACESTATE_KEY = "tracestate";

const metadataGetter: TextMapGetter<Metadata> = {
  keys: (metadata) => Object.keys(metadata.getMap()),
  get: (metadata, key) => {
    const values = metadata.get(key);
    return values.length === 0 ? undefined : values.map(String);
  },
};
const metadataSetter: TextMapSetter<Metadata> = { set: (metadata, key, value) => metadata.set(key, value) };

/** The attributes of a call's span. */
function attributesOf(method: MethodPath): Record<string, string> {
  return { "rpc.system": "grpc", "rpc.service": method.service, "rpc.method": method.method };
}

/** Starts the server span of an inbound call, the child of the traceparent its metadata carries, if any. */
export function startServerSpan(tracer: Tracer, method: MethodPath, metadata: Metadata): Span {
  const parent = propagator.extract(ROOT_CONTEXT, metadata, metadataGetter);
  return tracer.startSpan(method.path.slice(1), { kind: SpanKind.SERVER, attributes: attributesOf(method) }, parent);
}

/**
 * Starts the client span of an outbound call, the child of `parent` (the inbound call's span), else
 * of a traceparent the caller put in `metadata` (the gateway forwards its HTTP caller's), and
 * writes its own traceparent into `metadata`.
 */
export function startClientSpan(tracer: Tracer, method: MethodPath, parent: Span | undefined, metadata: Metadata): Span {
  const parentContext: Context =
    parent !== undefined
      ? trace.setSpan(ROOT_CONTEXT, parent)
      : metadata.get(TRACEPARENT_KEY).length > 0
        ? propagator.extract(ROOT_CONTEXT, metadata, metadataGetter)
        : ROOT_CONTEXT;
  const span = tracer.startSpan(method.path.slice(1), { kind: SpanKind.CLIENT, attributes: attributesOf(method) }, parentContext);
  propagator.inject(trace.setSpan(parentContext, span), metadata, metadataSetter);
  return span;
}

/** Ends a call's span with its status code. */
export function endSpan(span: Span, code: status, details: string): void {
  span.setAttribute("rpc.grpc.status_code", code);
  if (isServerFailure(code)) span.setStatus({ code: SpanStatusCode.ERROR, message: details });
  span.end();
}

/** A process's tracer and the function that flushes and stops it. */
export interface ProcessTracing {
  tracer: Tracer;
  /** Exports the spans still buffered and stops; call it after the process's servers have drained. */
  shutdown(): Promise<void>;
}

/**
 * The process's tracer as the standard OpenTelemetry variables configure it, or undefined when they
 * ask for none: traces go to an OTLP/HTTP collector (JSON) at OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else
 * OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces (the exporter reads OTEL_EXPORTER_OTLP_HEADERS and the
 * rest itself), unless OTEL_SDK_DISABLED is "true" or OTEL_TRACES_EXPORTER names no "otlp".
 * OTEL_SERVICE_NAME names the service (default `serviceName`); OTEL_TRACES_SAMPLER and
 * OTEL_TRACES_SAMPLER_ARG choose the sampler as the specification defines them (default
 * parentbased_always_on); OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_EXPORT_TIMEOUT, OTEL_BSP_MAX_QUEUE_SIZE and
 * OTEL_BSP_MAX_EXPORT_BATCH_SIZE tune the batching (the SDK's defaults: 5 s, 30 s, 2048, 512). Read
 * once, at a program's edge; a value it does not know is refused, naming the variable.
 */
export function tracingFromEnvironment(env: NodeJS.ProcessEnv, serviceName: string): ProcessTracing | undefined {
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const url = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || (base ? `${base.replace(/\/$/, "")}/v1/traces` : undefined);
  if (!url || env.OTEL_SDK_DISABLED === "true") return undefined;
  const exporters = (env.OTEL_TRACES_EXPORTER || "otlp").split(",").map((name) => name.trim());
  if (!exporters.includes("otlp")) return undefined;
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": env.OTEL_SERVICE_NAME || serviceName }),
    sampler: samplerFromEnvironment(env),
    spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url }), ...batchFromEnvironment(env) })],
  });
  return { tracer: provider.getTracer("protomesh"), shutdown: () => provider.shutdown() };
}

/** The batch span processor's settings the OTEL_BSP_* variables give (OpenTelemetry's environment specification). */
export function batchFromEnvironment(env: NodeJS.ProcessEnv): {
  scheduledDelayMillis?: number;
  exportTimeoutMillis?: number;
  maxQueueSize?: number;
  maxExportBatchSize?: number;
} {
  const integer = (name: string, minimum: number): number | undefined => {
    const text = env[name];
    if (text === undefined || text === "") return undefined;
    const value = Number(text);
    if (!Number.isInteger(value) || value < minimum) {
      throw new Error(`${name}: must be an integer of at least ${minimum}, got ${JSON.stringify(text)}`);
    }
    return value;
  };
  const settings = {
    scheduledDelayMillis: integer("OTEL_BSP_SCHEDULE_DELAY", 0),
    exportTimeoutMillis: integer("OTEL_BSP_EXPORT_TIMEOUT", 0),
    maxQueueSize: integer("OTEL_BSP_MAX_QUEUE_SIZE", 1),
    maxExportBatchSize: integer("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1),
  };
  return Object.fromEntries(Object.entries(settings).filter(([, value]) => value !== undefined));
}

/** The sampler OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG name (OpenTelemetry's environment specification). */
export function samplerFromEnvironment(env: NodeJS.ProcessEnv): Sampler {
  const name = env.OTEL_TRACES_SAMPLER || "parentbased_always_on";
  const ratio = () => {
    const text = env.OTEL_TRACES_SAMPLER_ARG;
    const value = text === undefined || text === "" ? 1 : Number(text);
    if (!Number.isFinite(value) || value < 0 || value > 1) {
      throw new Error(`OTEL_TRACES_SAMPLER_ARG: must be a ratio from 0 to 1, got ${JSON.stringify(text)}`);
    }
    return value;
  };
  switch (name) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return new TraceIdRatioBasedSampler(ratio());
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio()) });
    default:
      throw new Error(
        `OTEL_TRACES_SAMPLER: must be always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio, got ${JSON.stringify(name)}`,
      );
  }
}

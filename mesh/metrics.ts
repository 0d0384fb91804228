import { status } from "@grpc/grpc-js";
import { Counter, Gauge, Histogram, collectDefaultMetrics, register as defaultRegistry } from "prom-client";
import type { BalancerMetrics } from "./balancer-endpoint-list";
import type { Registry } from "prom-client";
import type { MethodPath } from "./method-path";
import type { CallRecord, CallSink, CallStart, CallType } from "./observer";

/**
 * Prometheus metrics of a protomesh process (prom-client). The per-call ones carry
 * go-grpc-prometheus' names, labels and help texts, so that the dashboards and alerts written for
 * grpc-go services read protomesh's unchanged:
 *
 * - grpc_server_started_total, grpc_server_handled_total (with grpc_code),
 *   grpc_server_msg_received_total, grpc_server_msg_sent_total, grpc_server_handling_seconds;
 * - the same five with grpc_client_ for the calls a process makes;
 * - labels grpc_type (unary, client_stream, server_stream, bidi_stream), grpc_service (the
 *   fully-qualified service), grpc_method, and grpc_code as grpc-go spells codes (OK, Canceled,
 *   DeadlineExceeded, ...); the histograms have Prometheus' default buckets, as go-grpc-prometheus.
 *
 * The mesh's own are named protomesh_*: shed calls and calls in flight here; the control plane
 * adds its endpoints per state and its xDS responses, NACKs and streams (controlplane/metrics.ts).
 * Node's own (event-loop delay, heap, GC, CPU: prom-client's default metrics) come with the
 * first metrics of a registry.
 *
 * Everything goes to one registry per process, prom-client's global one unless a registry is
 * given, so that one scrape of the admin port (admin.ts) sees every server and client in it, and
 * an application already exposing prom-client's registry gets the mesh's metrics with its own.
 */

/** gRPC status codes as grpc-go's `codes.Code.String()` spells them: the grpc_code label values. */
export const GRPC_CODE_NAMES: readonly string[] = [
  "OK",
  "Canceled",
  "Unknown",
  "InvalidArgument",
  "DeadlineExceeded",
  "NotFound",
  "AlreadyExists",
  "PermissionDenied",
  "ResourceExhausted",
  "FailedPrecondition",
  "Aborted",
  "OutOfRange",
  "Unimplemented",
  "Internal",
  "Unavailable",
  "DataLoss",
  "Unauthenticated",
];

/** Buckets of the handling-time histograms: Prometheus' DefBuckets, go-grpc-prometheus' default. */
export const HANDLING_SECONDS_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const CALL_LABELS = ["grpc_type", "grpc_service", "grpc_method"] as const;
const HANDLED_LABELS = [...CALL_LABELS, "grpc_code"] as const;

/** The grpc_code label of a status code (`Code(n)` for one outside the 17, as grpc-go prints it). */
export function grpcCodeName(code: status): string {
  return GRPC_CODE_NAMES[code] ?? `Code(${code})`;
}

/** One side's five go-grpc-prometheus metrics. */
interface SideMetrics {
  started: Counter<(typeof CALL_LABELS)[number]>;
  handled: Counter<(typeof HANDLED_LABELS)[number]>;
  received: Counter<(typeof CALL_LABELS)[number]>;
  sent: Counter<(typeof CALL_LABELS)[number]>;
  handling: Histogram<(typeof CALL_LABELS)[number]>;
}

/** The metrics of one registry, made once (prom-client refuses a name registered twice). */
export interface MeshMetrics {
  readonly registry: Registry;
  readonly server: SideMetrics;
  readonly client: SideMetrics;
  readonly shed: Counter<"grpc_service" | "grpc_method">;
  readonly retries: Counter<(typeof CALL_LABELS)[number]>;
  readonly picks: Counter<"service" | "policy" | "endpoint">;
  readonly ejections: Counter<"service" | "policy" | "endpoint">;
}

const byRegistry = new WeakMap<Registry, MeshMetrics>();

/** The mesh's metrics in `registry` (default: prom-client's global one), made on first use. */
export function meshMetrics(registry: Registry = defaultRegistry): MeshMetrics {
  let metrics = byRegistry.get(registry);
  if (metrics === undefined) {
    metrics = makeMetrics(registry);
    byRegistry.set(registry, metrics);
  }
  return metrics;
}

function makeMetrics(registry: Registry): MeshMetrics {
  const registers = [registry];
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Counter<L>({ name, help, labelNames, registers });
  const side = (name: "server" | "client", help: Record<keyof SideMetrics, string>): SideMetrics => ({
    started: counter(`grpc_${name}_started_total`, help.started, CALL_LABELS),
    handled: counter(`grpc_${name}_handled_total`, help.handled, HANDLED_LABELS),
    received: counter(`grpc_${name}_msg_received_total`, help.received, CALL_LABELS),
    sent: counter(`grpc_${name}_msg_sent_total`, help.sent, CALL_LABELS),
    handling: new Histogram({
      name: `grpc_${name}_handling_seconds`,
      help: help.handling,
      labelNames: CALL_LABELS,
      buckets: [...HANDLING_SECONDS_BUCKETS],
      registers,
    }),
  });
  // Node's own: the event loop's delay (nodejs_eventloop_lag_*), heap, GC, CPU, file descriptors.
  if (registry.getSingleMetric("nodejs_eventloop_lag_seconds") === undefined) {
    collectDefaultMetrics({ register: registry });
    // Gauges that prom-client names like counters (promtool's lint refuses a gauge's _total); the
    // same figures stay, by type, in nodejs_active_handles, _requests and _resources.
    for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) {
      registry.removeSingleMetric(name);
    }
  }
  return {
    registry,
    server: side("server", {
      started: "Total number of RPCs started on the server.",
      handled: "Total number of RPCs completed on the server, regardless of success or failure.",
      received: "Total number of RPC stream messages received on the server.",
      sent: "Total number of gRPC stream messages sent by the server.",
      handling: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
    }),
    client: side("client", {
      started: "Total number of RPCs started on the client.",
      handled: "Total number of RPCs completed by the client, regardless of success or failure.",
      received: "Total number of RPC stream messages received by the client.",
      sent: "Total number of gRPC stream messages sent by the client.",
      handling: "Histogram of response latency (seconds) of the gRPC until it is finished by the application.",
    }),
    shed: counter(
      "protomesh_server_shed_total",
      "Calls the server's load shedder refused with RESOURCE_EXHAUSTED before their handler ran.",
      ["grpc_service", "grpc_method"],
    ),
    retries: counter(
      "protomesh_client_retries_total",
      "Attempts grpc-js made beyond each call's first (gRFC A6 retries, or hedged attempts where the method hedges), counted as the call ends.",
      CALL_LABELS,
    ),
    picks: counter(
      "protomesh_client_picks_total",
      "Calls that protomesh's load-balancing policies (p2c_ewma, least_request) picked onto each endpoint, per mesh service and policy.",
      ["service", "policy", "endpoint"],
    ),
    ejections: counter(
      "protomesh_client_ejections_total",
      "Times outlier detection ejected an endpoint from a client's rotation, seen by protomesh's load-balancing policies (p2c_ewma, least_request), per mesh service and policy.",
      ["service", "policy", "endpoint"],
    ),
  };
}

/** The metrics a kit server or client counts into, from its `metrics` and `adminAddress` options. */
export function metricsOf(option: boolean | Registry | undefined, adminAddress?: string): MeshMetrics | undefined {
  if (option === false) return undefined;
  if (option === true) return meshMetrics();
  if (option !== undefined) return meshMetrics(option);
  return adminAddress !== undefined ? meshMetrics() : undefined;
}

/**
 * How a client's balancers count into `metrics` for `service` (balancer-endpoint-list.ts
 * BALANCER_METRICS_OPTION): a label child per policy and endpoint, bound when a picker or a
 * subchannel is made, not per pick.
 */
export function balancerMetrics(metrics: MeshMetrics, service: string): BalancerMetrics {
  return {
    picks: (policy, endpoint) => metrics.picks.labels(service, policy, endpoint),
    ejections: (policy, endpoint) => metrics.ejections.labels(service, policy, endpoint),
  };
}

/** A method's label children, bound once (prom-client hashes the labels of an unbound call each time). */
interface MethodMetrics {
  started: { inc(): void };
  received: { inc(): void };
  sent: { inc(): void };
  handling: { observe(value: number): void };
  handled: Array<{ inc(): void } | undefined>;
  shed: { inc(): void } | undefined;
  retries: { inc(value: number): void } | undefined;
}

/** Methods whose bound children are kept, per side (a process serves and calls a fixed set). */
const MAX_BOUND_METHODS = 1_024;

/**
 * The call sink that counts calls into `metrics`: started, handled by code, messages each way,
 * handling time, shed calls, a client's retried attempts. Give it to a server and to clients (`metrics` options of
 * createServer and createClient); it tells the two sides apart by the record.
 */
export function metricsSink(metrics: MeshMetrics = meshMetrics()): CallSink {
  const bound = { server: new Map<string, MethodMetrics>(), client: new Map<string, MethodMetrics>() };
  const methodMetrics = (call: CallStart): MethodMetrics => {
    const key = `${call.type} ${call.method.path}`;
    const cache = bound[call.side];
    let found = cache.get(key);
    if (found === undefined) {
      found = bind(metrics, call.side, call.type, call.method);
      if (cache.size < MAX_BOUND_METHODS) cache.set(key, found);
    }
    return found;
  };
  const side = (call: CallStart) => (call.side === "server" ? metrics.server : metrics.client);
  return {
    callStarted(call: CallStart): void {
      const method = methodMetrics(call);
      method.started.inc();
      // A unary call's one request (server) or response-to-be (client: its request goes out now).
      if (call.type === "unary") (call.side === "server" ? method.received : method.sent).inc();
    },
    messageReceived(call: CallStart): void {
      methodMetrics(call).received.inc();
    },
    messageSent(call: CallStart): void {
      methodMetrics(call).sent.inc();
    },
    callEnded(call: CallRecord): void {
      const method = methodMetrics(call);
      let handled = method.handled[call.code];
      if (handled === undefined) {
        handled = side(call).handled.labels(call.type, call.method.service, call.method.method, grpcCodeName(call.code));
        method.handled[call.code] = handled;
      }
      handled.inc();
      // A unary call's one response, when it ended OK (server: sent; client: received), as go-grpc-prometheus counts it.
      if (call.type === "unary" && call.code === status.OK) (call.side === "server" ? method.sent : method.received).inc();
      method.handling.observe(call.durationMs / 1000);
      if (call.isShed) method.shed?.inc();
      if (call.attempts !== undefined && call.attempts > 1) method.retries?.inc(call.attempts - 1);
    },
    countsAttempts: true,
  };
}

function bind(metrics: MeshMetrics, sideName: "server" | "client", type: CallType, method: MethodPath): MethodMetrics {
  const side = sideName === "server" ? metrics.server : metrics.client;
  const labels = [type, method.service, method.method] as const;
  return {
    started: side.started.labels(...labels),
    received: side.received.labels(...labels),
    sent: side.sent.labels(...labels),
    handling: side.handling.labels(...labels),
    handled: [],
    shed: sideName === "server" ? metrics.shed.labels(method.service, method.method) : undefined,
    retries: sideName === "client" ? metrics.retries.labels(...labels) : undefined,
  };
}

/** Sets a scraped gauge's values at a scrape (see {@link scrapedGauge}). */
export type GaugeReader<L extends string> = (gauge: Gauge<L>) => void;

const scraped = new WeakMap<Registry, Map<string, Set<GaugeReader<string>>>>();

/**
 * Adds `read` to the gauge `name` of `registry`, made on first use: at each scrape the gauge is
 * emptied and every reader sets its values (calls in flight of each server of the process,
 * endpoints per state), so nothing is kept up to date between scrapes. Returns the function that
 * removes the reader (the server or control plane stopped).
 */
export function scrapedGauge<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: GaugeReader<L>,
): () => void {
  let byName = scraped.get(registry);
  if (byName === undefined) scraped.set(registry, (byName = new Map()));
  let readers = byName.get(name);
  if (readers === undefined) {
    const all = new Set<GaugeReader<string>>();
    readers = all;
    byName.set(name, all);
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const reader of all) reader(this as unknown as Gauge<string>);
      },
    });
  }
  const reader = read as unknown as GaugeReader<string>;
  readers.add(reader);
  return () => readers.delete(reader);
}

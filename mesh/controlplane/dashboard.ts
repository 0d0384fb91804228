import * as http from "node:http";
import { status } from "@grpc/grpc-js";
import { HealthState } from "../../generated/ts/protomesh/registry/v1/registry";
import type { AdminRoutes } from "../admin";
import { isServerFailure } from "../errors";
import type { Logger } from "../logger";
import { GRPC_CODE_NAMES } from "../metrics";
import { ADMIN_PORT_METADATA } from "../registry-lease";
import { MESH_SERVICES } from "../method-path";
import { DASHBOARD_HTML } from "./dashboard-page";
import type { ActiveFault, FaultStore } from "./faults";
import type { Registry, RegistryEntry } from "./registry";

/** How often the endpoints' admin ports are scraped while a page is open. */
export const SCRAPE_INTERVAL_MS = 1_000;
/** How long one scrape may take before the endpoint's figures count as unknown. */
const SCRAPE_TIMEOUT_MS = 800;
/** Changes closer together than this go to the pages as one event. */
const PUSH_COALESCE_MS = 25;

/** One endpoint as the page shows it. */
export interface DashboardEndpoint {
  id: string;
  zone: string;
  health: string;
  healthDetail: string;
  isStatic: boolean;
  /** Calls per second it served over the last scrape interval; null when its metrics are unknown. */
  rps: number | null;
}

/** One service as the page shows it. */
export interface DashboardService {
  name: string;
  lbPolicy: string;
  faults: Array<{ method: string; delay: string | null; abort: string | null }>;
  endpoints: DashboardEndpoint[];
  /** Calls per second over its endpoints that report metrics; null when none does. */
  rps: number | null;
  /** Share of those calls that failed on the server's side (errors.ts isServerFailure), 0 to 1. */
  errorRate: number | null;
  /** 99th percentile of their handling time (ms), from the grpc_server_handling_seconds buckets. */
  p99Ms: number | null;
}

/** What the page renders: the whole mesh, sent on every change. */
export interface DashboardSnapshot {
  at: number;
  services: DashboardService[];
}

/** What the dashboard reads of the control plane. */
export interface DashboardSource {
  registry: Registry;
  faults: FaultStore;
  lbPolicyOf(service: string): string;
  logger: Logger;
}

/** The cumulative figures of one scrape of an endpoint: its application calls, by outcome and time. */
interface EndpointFigures {
  at: number;
  calls: number;
  failures: number;
  /** grpc_server_handling_seconds buckets summed over its application methods: upper bound (s) → count. */
  buckets: Map<number, number>;
}

/** One figure per interval, from two scrapes: rates and the p99 of what happened between them. */
interface IntervalFigures {
  rps: number;
  errorRate: number;
  /** Calls between the two scrapes, by bucket (the difference of the cumulative counts). */
  buckets: Map<number, number>;
}

/**
 * The live mesh dashboard the control plane serves on its admin port: `/` (the page), `/events`
 * (server-sent events: a snapshot at once and on every change) and `/api/mesh` (the snapshot as
 * JSON). Services and endpoints with health and zone come from the registry as they change; the
 * LB policy from the mesh config; the faults in force from the fault store; RPS, error rate and p99
 * per service from the processes' own metrics, scraped every second from the admin port each
 * endpoint registered (`admin_port` metadata) while a page is open.
 */
export class Dashboard {
  private readonly clients = new Set<http.ServerResponse>();
  private readonly last = new Map<string, EndpointFigures>();
  private readonly intervals = new Map<string, IntervalFigures>();
  private readonly stops: (() => void)[] = [];
  private scrapeTimer: NodeJS.Timeout | undefined;
  private pushTimer: NodeJS.Timeout | undefined;
  private isClosed = false;

  constructor(private readonly source: DashboardSource) {
    this.stops.push(source.registry.onChange(() => this.schedulePush()));
    this.stops.push(source.faults.onChange(() => this.schedulePush()));
  }

  /** The admin port's routes of the dashboard. */
  get routes(): AdminRoutes {
    return {
      "/": (_request, response) => {
        response.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" }).end(DASHBOARD_HTML);
      },
      "/api/mesh": (_request, response) => {
        response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(this.snapshot()));
      },
      "/events": (request, response) => this.subscribe(request, response),
    };
  }

  /** The mesh now. */
  snapshot(): DashboardSnapshot {
    const { registry, faults } = this.source;
    const names = new Set([...registry.serviceNames(), ...faults.list().map((fault) => fault.service)]);
    const services = [...names].sort().map((name): DashboardService => {
      const entries = registry.entries(name);
      const figures = entries.map((entry) => this.intervals.get(entry.id)).filter((figure) => figure !== undefined);
      const rps = figures.length === 0 ? null : round(figures.reduce((sum, figure) => sum + figure.rps, 0), 1);
      const failures = figures.reduce((sum, figure) => sum + figure.errorRate * figure.rps, 0);
      const buckets = new Map<number, number>();
      for (const figure of figures) for (const [bound, count] of figure.buckets) buckets.set(bound, (buckets.get(bound) ?? 0) + count);
      return {
        name,
        lbPolicy: this.source.lbPolicyOf(name),
        faults: faults.list(name).map(describeFault),
        endpoints: entries.map((entry) => this.endpointOf(entry)),
        rps,
        errorRate: rps === null || rps === 0 ? (rps === null ? null : 0) : round(failures / rps, 4),
        p99Ms: quantileMs(buckets, 0.99),
      };
    });
    return { at: Date.now(), services };
  }

  /** Ends every page's event stream and stops scraping. */
  close(): void {
    this.isClosed = true;
    for (const stop of this.stops) stop();
    clearTimeout(this.scrapeTimer);
    clearTimeout(this.pushTimer);
    for (const client of this.clients) client.end();
    this.clients.clear();
  }

  private endpointOf(entry: RegistryEntry): DashboardEndpoint {
    return {
      id: entry.id,
      zone: entry.endpoint.zone,
      health: HealthState[entry.health]?.replace(/^HEALTH_STATE_/, "") ?? String(entry.health),
      healthDetail: entry.healthDetail,
      isStatic: entry.leaseId === undefined,
      rps: this.intervals.has(entry.id) ? round(this.intervals.get(entry.id)!.rps, 1) : null,
    };
  }

  private subscribe(request: http.IncomingMessage, response: http.ServerResponse): void {
    if (this.isClosed) {
      response.writeHead(503).end();
      return;
    }
    response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" });
    this.clients.add(response);
    this.send(response);
    request.on("close", () => {
      this.clients.delete(response);
      if (this.clients.size === 0) {
        clearTimeout(this.scrapeTimer);
        this.scrapeTimer = undefined;
      }
    });
    if (this.scrapeTimer === undefined) this.scheduleScrape(0);
  }

  private send(client: http.ServerResponse, data = JSON.stringify(this.snapshot())): void {
    client.write(`data: ${data}\n\n`);
  }

  private schedulePush(): void {
    if (this.isClosed || this.clients.size === 0 || this.pushTimer !== undefined) return;
    this.pushTimer = setTimeout(() => {
      this.pushTimer = undefined;
      const data = JSON.stringify(this.snapshot());
      for (const client of this.clients) this.send(client, data);
    }, PUSH_COALESCE_MS);
  }

  private scheduleScrape(delayMs: number): void {
    this.scrapeTimer = setTimeout(() => {
      void this.scrapeAll().finally(() => {
        if (!this.isClosed && this.clients.size > 0) this.scheduleScrape(SCRAPE_INTERVAL_MS);
      });
    }, delayMs);
  }

  /** Scrapes every endpoint that registered an admin port, then pushes the new figures. */
  private async scrapeAll(): Promise<void> {
    const { registry } = this.source;
    const entries = registry.serviceNames().flatMap((service) => registry.entries(service));
    const live = new Set<string>();
    await Promise.all(
      entries.map(async (entry) => {
        const port = Number(entry.endpoint.metadata[ADMIN_PORT_METADATA]);
        if (!Number.isInteger(port) || port <= 0 || port > 65_535) return;
        live.add(entry.id);
        const text = await fetchText(entry.endpoint.address, port).catch(() => undefined);
        const now = text === undefined ? undefined : figuresOf(text);
        const before = this.last.get(entry.id);
        if (now === undefined) {
          this.last.delete(entry.id);
          this.intervals.delete(entry.id);
          return;
        }
        this.last.set(entry.id, now);
        if (before !== undefined && now.at > before.at && now.calls >= before.calls) {
          this.intervals.set(entry.id, between(before, now));
        }
      }),
    );
    for (const id of [...this.last.keys()]) if (!live.has(id)) this.last.delete(id);
    for (const id of [...this.intervals.keys()]) if (!live.has(id)) this.intervals.delete(id);
    this.schedulePush();
  }
}

/** The page's words for a fault: "delay 200 ms to 50%", "abort UNAVAILABLE to 10%". */
function describeFault(fault: ActiveFault): { method: string; delay: string | null; abort: string | null } {
  return {
    method: fault.method || "every method",
    delay: fault.delay ? `${fault.delay.delayMs} ms to ${fault.delay.percent}%` : null,
    abort: fault.abort ? `${status[fault.abort.code] ?? fault.abort.code} to ${fault.abort.percent}%` : null,
  };
}

/** GET http://host:port/metrics, bounded by SCRAPE_TIMEOUT_MS. */
function fetchText(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host, port, path: "/metrics", timeout: SCRAPE_TIMEOUT_MS }, (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        reject(new Error(`HTTP ${response.statusCode}`));
        return;
      }
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve(body));
      response.on("error", reject);
    });
    request.on("timeout", () => request.destroy(new Error("scrape timed out")));
    request.on("error", reject);
  });
}

const SAMPLE = /^(grpc_server_handled_total|grpc_server_handling_seconds_bucket)\{([^}]*)\} (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
const SERVER_FAILURE_NAMES = new Set(GRPC_CODE_NAMES.filter((_, code) => isServerFailure(code as status)));

/** An endpoint's application calls (mesh services apart: health, reflection, ORCA) from its exposition. */
export function figuresOf(text: string, at = Date.now()): EndpointFigures {
  const figures: EndpointFigures = { at, calls: 0, failures: 0, buckets: new Map() };
  for (const line of text.split("\n")) {
    const match = SAMPLE.exec(line);
    if (!match) continue;
    const labels = new Map([...match[2].matchAll(LABEL)].map((label) => [label[1], label[2]]));
    if (MESH_SERVICES.has(labels.get("grpc_service") ?? "")) continue;
    const value = Number(match[3]);
    if (!Number.isFinite(value)) continue;
    if (match[1] === "grpc_server_handled_total") {
      figures.calls += value;
      if (SERVER_FAILURE_NAMES.has(labels.get("grpc_code") ?? "")) figures.failures += value;
    } else {
      const le = labels.get("le");
      const bound = le === "+Inf" ? Infinity : Number(le);
      if (!Number.isNaN(bound)) figures.buckets.set(bound, (figures.buckets.get(bound) ?? 0) + value);
    }
  }
  return figures;
}

function between(before: EndpointFigures, now: EndpointFigures): IntervalFigures {
  const seconds = (now.at - before.at) / 1000;
  const calls = now.calls - before.calls;
  const buckets = new Map<number, number>();
  for (const [bound, count] of now.buckets) buckets.set(bound, Math.max(0, count - (before.buckets.get(bound) ?? 0)));
  return { rps: calls / seconds, errorRate: calls === 0 ? 0 : (now.failures - before.failures) / calls, buckets };
}

/**
 * The `q` quantile (ms) of cumulative histogram buckets, as Prometheus' histogram_quantile works
 * it out: linear within the bucket it falls in; the highest finite bound when it falls in +Inf.
 */
export function quantileMs(buckets: ReadonlyMap<number, number>, q: number): number | null {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Infinity) ?? 0;
  if (bounds.length === 0 || total === 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const bound of bounds) {
    const count = buckets.get(bound)!;
    if (count >= rank) {
      if (bound === Infinity) return round(lower * 1000, 1);
      const inBucket = count - below;
      const share = inBucket === 0 ? 0 : (rank - below) / inBucket;
      return round((lower + (bound - lower) * share) * 1000, 1);
    }
    lower = bound;
    below = count;
  }
  return round(lower * 1000, 1);
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

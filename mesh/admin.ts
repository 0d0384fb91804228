import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { register as defaultRegistry } from "prom-client";
import type { Registry } from "prom-client";
import type { Logger } from "./logger";
import { meshMetrics } from "./metrics";

/** Options of {@link startAdminServer}. */
export interface AdminServerOptions {
  /** "host:port" to listen on; port 0 picks a free one. */
  address: string;
  /** The registry scraped at /metrics (default: prom-client's global one, where the kit's metrics go). */
  registry?: Registry;
  logger?: Logger;
  /** More GET pages by path (the control plane's dashboard), beside /metrics. */
  routes?: AdminRoutes;
}

/** Handlers of GET requests by path. */
export type AdminRoutes = Readonly<Record<string, (request: http.IncomingMessage, response: http.ServerResponse) => void>>;

/** A process's admin HTTP port. */
export interface AdminServer {
  /** The bound port. */
  readonly port: number;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

/**
 * The admin HTTP port of a protomesh process: `GET /metrics`, the Prometheus text exposition of
 * its registry (what Prometheus scrapes), and the `routes` given; anything else is 404, and a method other than GET or
 * HEAD 405. Plain HTTP on its own port, apart from the gRPC port, as Prometheus and Kubernetes
 * expect; bind it to loopback unless the scraper runs elsewhere.
 */
export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const registry = options.registry ?? defaultRegistry;
  meshMetrics(registry); // the mesh's metrics and Node's exist from the first scrape on
  const routes = options.routes ?? {};
  const served = ["/metrics", ...Object.keys(routes)].join(", ");
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://admin");
    const route = Object.hasOwn(routes, url.pathname) ? routes[url.pathname] : undefined;
    if (url.pathname !== "/metrics" && route === undefined) {
      response.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end(`not found: the admin port serves ${served}\n`);
      return;
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("method not allowed\n");
      return;
    }
    if (route !== undefined) {
      route(request, response);
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { "content-type": registry.contentType }).end(request.method === "HEAD" ? undefined : text),
      (error: unknown) => {
        options.logger?.error({ err: error }, "metrics scrape failed");
        response.writeHead(500, { "content-type": "text/plain; charset=utf-8" }).end("metrics could not be collected\n");
      },
    );
  });
  const { host, port } = splitAddress(options.address);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  options.logger?.info({ address: options.address, port: bound }, "admin port listening (/metrics)");
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** "host:port" or "[v6]:port" into its parts; the error names the setting's shape. */
function splitAddress(address: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address);
  const port = match ? Number(match[3]) : NaN;
  if (!match || !Number.isInteger(port) || port > 65_535) throw new Error(`admin address: expected host:port, got "${address}"`);
  return { host: match[1] ?? (match[2] || "0.0.0.0"), port };
}

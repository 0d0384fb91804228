import * as path from "node:path";
import { tlsFlags } from "./bench-tls";
import type { TlsFiles } from "./bench-tls";
import { NodeChild, SERVER_CORE } from "./pinned-process";
import type { ProcessSample } from "./process-probe";
import type { BenchContext } from "./scenario";
import type { ServerKind } from "./server-process";
import { BENCH_DIST_DIR } from "./tools";

/**
 * What a benchmark server reports about itself: ProcessProbe figures, B6's held streams, and the
 * calls protomesh's load shedder refused since the mark (RESOURCE_EXHAUSTED, which h2load counts as
 * answered: HTTP 200 with the status in the trailers; 0 for the other kinds, which do not shed).
 */
export type ServerSample = ProcessSample & { heldStreams: number; shedCalls: number };

/**
 * A benchmark server process (server-process.ts) pinned to the server core, as the scenarios use it:
 * its address, and the process figures over a window (`mark` then `sample`).
 */
export class BenchServer {
  private constructor(
    readonly kind: ServerKind,
    readonly port: number,
    private readonly child: NodeChild,
  ) {}

  /**
   * Starts a server of `kind`; its log (stdout, level info) goes to context.logDir or /dev/null.
   * The -tls kinds need `tls`, the server side of the bench TLS (bench-tls.ts).
   */
  static async start(kind: ServerKind, context: BenchContext, tls?: TlsFiles): Promise<BenchServer> {
    if (isTlsServer(kind) && tls === undefined) throw new Error(`bench: a ${kind} server needs the bench TLS files`);
    const { child, port } = await NodeChild.start({
      script: path.join(BENCH_DIST_DIR, "server-process.js"),
      args: ["--kind", kind, ...(isTlsServer(kind) && tls ? tlsFlags(tls) : [])],
      core: SERVER_CORE,
      nodeArgs: ["--expose-gc"],
      logFile: context.logDir ? path.join(context.logDir, `server-${kind}-${Date.now()}.log`) : undefined,
    });
    return new BenchServer(kind, port, child);
  }

  /** host:port, for gRPC clients. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /**
   * The http:// URL of a gRPC method path, for h2load. Not for the -tls kinds: h2load presents no
   * client certificate (nghttp2/nghttp2#1479), so it reaches them through a TLS relay (tls-relay.ts).
   */
  url(methodPath: string): string {
    if (isTlsServer(this.kind)) throw new Error(`bench: h2load reaches a ${this.kind} server through a TLS relay (tls-relay.ts)`);
    return `http://${this.address}${methodPath}`;
  }

  /** Starts a measurement window in the server process. */
  mark(): Promise<void> {
    return this.child.request("mark");
  }

  /** The server's figures since the last mark. */
  sample(): Promise<ServerSample> {
    return this.child.request("sample");
  }

  /** Collects garbage (twice) in the server, then samples: for memory figures (B6). */
  collectGarbage(): Promise<ServerSample> {
    return this.child.request("gc", undefined, 30_000);
  }

  /** Stops the server process. */
  stop(): Promise<void> {
    return this.child.stop();
  }
}

/** Whether a server of `kind` speaks mTLS only. */
export function isTlsServer(kind: ServerKind): boolean {
  return kind === "plain-tls" || kind === "mesh-tls";
}

/**
 * Starts one server per kind, runs `body`, and stops them all whatever happens; the -tls kinds
 * get `tls`, the server side of the bench TLS.
 */
export async function withServers<K extends ServerKind, T>(
  kinds: readonly K[],
  context: BenchContext,
  body: (servers: Record<K, BenchServer>) => Promise<T>,
  tls?: TlsFiles,
): Promise<T> {
  const started: BenchServer[] = [];
  try {
    const servers = {} as Record<K, BenchServer>;
    for (const kind of kinds) {
      const server = await BenchServer.start(kind, context, tls);
      started.push(server);
      servers[kind] = server;
    }
    return await body(servers);
  } finally {
    await Promise.all(started.map((server) => server.stop()));
  }
}

/**
 * `measure` bound to each server of `servers`, in their order (that of `withServers`' kinds): the
 * runs of one round for `runRounds`.
 */
export function eachServer<K extends ServerKind, T>(
  servers: Record<K, BenchServer>,
  measure: (server: BenchServer) => () => Promise<T>,
): Record<K, () => Promise<T>> {
  const runs = {} as Record<K, () => Promise<T>>;
  for (const kind of Object.keys(servers) as K[]) runs[kind] = measure(servers[kind]);
  return runs;
}

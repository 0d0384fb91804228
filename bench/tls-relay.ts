import * as path from "node:path";
import type { BenchServer } from "./bench-server";
import { isTlsServer } from "./bench-server";
import { tlsFlags } from "./bench-tls";
import type { TlsFiles } from "./bench-tls";
import { LOAD_CORE, NodeChild } from "./pinned-process";
import type { BenchContext } from "./scenario";
import type { RelayRoute } from "./tls-relay-process";
import { BENCH_DIST_DIR } from "./tools";
import type { LoadTarget } from "./unary-load";

/**
 * B1T's TLS relay (tls-relay-process.ts) as the harness drives it: one Node process pinned to the
 * load core beside h2load, presenting the bench client's certificate to the mTLS servers and relaying
 * plain TCP to the others, so that every server of B1T is loaded through the same hop.
 */
export class TlsRelay {
  private constructor(private readonly child: NodeChild) {}

  /** Starts the relay with the client side of the bench TLS. */
  static async start(client: TlsFiles, context: BenchContext): Promise<TlsRelay> {
    const { child } = await NodeChild.start({
      script: path.join(BENCH_DIST_DIR, "tls-relay-process.js"),
      args: tlsFlags(client),
      core: LOAD_CORE,
      logFile: context.logDir ? path.join(context.logDir, `tls-relay-${Date.now()}.log`) : undefined,
    });
    return new TlsRelay(child);
  }

  /** A relay port for `server` (mTLS for the -tls kinds, plain TCP otherwise), as h2load's target. */
  async open(server: BenchServer): Promise<LoadTarget> {
    const route: RelayRoute = { port: server.port, isTls: isTlsServer(server.kind) };
    const port = await this.child.request<number>("open", route);
    return { url: (methodPath: string) => `http://127.0.0.1:${port}${methodPath}` };
  }

  /** Stops the relay (and every connection through it). */
  stop(): Promise<void> {
    return this.child.stop();
  }
}

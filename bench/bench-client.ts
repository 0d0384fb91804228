import * as path from "node:path";
import { tlsFlags } from "./bench-tls";
import type { TlsFiles } from "./bench-tls";
import type { ClientKind, ClientLoad, ClientResult } from "./client-process";
import { LOAD_CORE, NodeChild } from "./pinned-process";
import type { BenchContext } from "./scenario";
import { BENCH_DIST_DIR } from "./tools";

/** A Node load client process (client-process.ts) pinned to the load core, as B2 drives it. */
export class BenchClient {
  private constructor(
    readonly kind: ClientKind,
    private readonly child: NodeChild,
  ) {}

  /**
   * Starts a client of `kind` calling `target`; the mesh client balances with `policy` when given.
   * The -tls kinds need `tls`, the client side of the bench TLS (bench-tls.ts).
   */
  static async start(
    kind: ClientKind,
    target: string,
    policy: string | undefined,
    context: BenchContext,
    tls?: TlsFiles,
  ): Promise<BenchClient> {
    const { child } = await NodeChild.start({
      script: path.join(BENCH_DIST_DIR, "client-process.js"),
      args: ["--kind", kind, "--target", target, ...(policy ? ["--policy", policy] : []), ...(tls ? tlsFlags(tls) : [])],
      core: LOAD_CORE,
      logFile: context.logDir ? path.join(context.logDir, `client-${kind}-${Date.now()}.log`) : undefined,
    });
    return new BenchClient(kind, child);
  }

  /** Runs one closed-loop load and returns what the client measured; throws if any call failed. */
  async run(load: ClientLoad): Promise<ClientResult> {
    const result = await this.child.request<ClientResult>("run", load, load.warmUpMs + load.durationMs + 30_000);
    if (result.errors > 0 || result.calls === 0) {
      throw new Error(`${this.kind} client: ${result.errors} of ${result.calls} calls failed`);
    }
    return result;
  }

  /** Closes the client's channel and stops the process. */
  stop(): Promise<void> {
    return this.child.stop();
  }
}

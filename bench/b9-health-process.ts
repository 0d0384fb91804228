import { Server, ServerCredentials } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { serveControl } from "./control-channel";

/**
 * Entry point of B9's endpoint host: one plain grpc-js server with grpc.health.v1 only
 * (grpc-health-check), SERVING for "", bound to 0.0.0.0 on a free port. B9 lists many endpoints
 * 127.0.x.y:<port> on it: every loopback address reaches the same socket, so the control plane
 * probes thousands of distinct endpoints (a Watch and a heartbeat Check each, as in production)
 * with one process behind them. No access log: the endpoints are not under test.
 * IPC ops: stop.
 */
async function main(): Promise<void> {
  const server = new Server();
  new HealthImplementation({ "": "SERVING" }).addToServer(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("0.0.0.0:0", ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  serveControl({ stop: () => setImmediate(() => process.exit(0)) }, { port });
}

main().catch((error: unknown) => {
  process.stderr.write(`b9 health process failed: ${String(error)}\n`);
  process.exit(1);
});

import {
  clientOptionsFrom,
  createLogger,
  createServer,
  drainOnSignals,
  listenAddress,
  routeGrpcLogs,
  serverOptionsFrom,
  tracingFromEnvironment,
} from "../../mesh";
import type { MeshSettings } from "../../mesh/settings";
import { portFromEnv } from "../env-port";
import { GatewayGuard } from "./auth";
import { Backends } from "./backends";
import { GATEWAY_HTTP_DEFAULT_PORT, loadGatewayConfig } from "./config";
import { loadGatewayMethods } from "./methods";
import { createGateway } from "./server";

/** The gateway's kit server (health, reflection, its registration in the mesh) unless PORT says otherwise. */
export const GATEWAY_DEFAULT_PORT = 50055;
/** The variable that moves the gateway's HTTP port off the config's. */
export const GATEWAY_HTTP_PORT_ENV = "GATEWAY_HTTP_PORT";

/**
 * `protomesh gateway [config]`: the HTTP/JSON and gRPC-Web front door. It is one more kit server: a
 * gRPC server with health and reflection that registers as "gateway" (SERVING once its HTTP side
 * listens), beside the HTTP server on the config's port. It calls the services by name through the
 * control plane, so it learns no endpoint address. SIGTERM drains both sides.
 */
export async function runGateway(settings: MeshSettings, configPath: string, env: NodeJS.ProcessEnv): Promise<void> {
  const config = loadGatewayConfig(configPath);
  // Port 0 is any free one; the launcher never passes it, as it prints the address.
  const httpPort = portFromEnv(env, GATEWAY_HTTP_PORT_ENV, config.httpPort ?? GATEWAY_HTTP_DEFAULT_PORT, 0);
  const logger = createLogger({ name: "gateway", level: settings.logLevel });
  routeGrpcLogs(logger);
  const { methods } = loadGatewayMethods();
  // Traces when the standard OTEL_* variables point at a collector (none otherwise).
  const tracing = tracingFromEnvironment(env, "gateway");
  const backends = new Backends({ ...clientOptionsFrom(settings), logger, targets: config.backends, tracer: tracing?.tracer });
  const guard = new GatewayGuard(config);
  const gateway = createGateway({ methods, backends, logger, guard, corsOrigins: config.corsOrigins });
  const boundHttpPort = await gateway.listen(httpPort, settings.host);
  logger.info({ httpPort: boundHttpPort, routes: methods.filter((method) => method.rules.length > 0).length }, "gateway listening");
  const server = createServer({
    name: "gateway",
    logger,
    ...serverOptionsFrom(settings, "gateway"),
  });
  await server.listen(listenAddress(settings, GATEWAY_DEFAULT_PORT));
  drainOnSignals(async () => {
    await server.drain();
    await gateway.close();
    backends.close();
    await tracing?.shutdown();
  }, logger);
}

import { createLogger, exitAfterFlush } from "../logger";
import { listenAddress } from "../listen-address";
import { drainOnSignals } from "../shutdown";
import { ControlPlane, CONTROL_PLANE_DEFAULT_PORT } from "./control-plane";

/** Environment variable naming the mesh config file (YAML) the control plane loads. */
export const MESH_CONFIG_ENV = "PROTOMESH_MESH_CONFIG";

/**
 * `protomesh control-plane`: runs the control plane on HOST:PORT (default 127.0.0.1:50050) with
 * the mesh config named by the first argument or PROTOMESH_MESH_CONFIG. SIGHUP reloads the config
 * (an invalid one is refused and logged; the one in force stays); SIGTERM / SIGINT stop.
 */
export async function runControlPlane(argv: string[] = process.argv.slice(2)): Promise<void> {
  const logger = createLogger({ name: "control-plane" });
  const configPath = argv[0] ?? process.env[MESH_CONFIG_ENV];
  const controlPlane = new ControlPlane({ logger, configPath });
  try {
    await controlPlane.listen(listenAddress(CONTROL_PLANE_DEFAULT_PORT));
  } catch (error) {
    // Probing of static endpoints has already started: stop it, or the process never exits.
    await controlPlane.stop();
    throw error;
  }
  process.on("SIGHUP", () => {
    try {
      controlPlane.reloadConfig();
    } catch {
      // refused and logged by reloadConfig; the config in force stays
    }
  });
  drainOnSignals(() => controlPlane.stop(), logger);
}

if (require.main === module) {
  runControlPlane().catch((error: unknown) => {
    const logger = createLogger({ name: "control-plane" });
    logger.fatal({ err: error }, "control plane failed to start");
    exitAfterFlush(logger, 1);
  });
}

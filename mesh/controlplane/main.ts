import { createLogger } from "../logger";
import { listenAddress } from "../listen-address";
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
  await controlPlane.listen(listenAddress(CONTROL_PLANE_DEFAULT_PORT));
  process.on("SIGHUP", () => {
    try {
      controlPlane.reloadConfig();
    } catch {
      // refused and logged by reloadConfig; the config in force stays
    }
  });
  let isStopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (isStopping) process.exit(130);
    isStopping = true;
    logger.info({ signal }, "shutdown requested");
    controlPlane.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, "stop failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (require.main === module) {
  runControlPlane().catch((error: unknown) => {
    createLogger({ name: "control-plane" }).fatal({ err: error }, "control plane failed to start");
    process.exit(1);
  });
}

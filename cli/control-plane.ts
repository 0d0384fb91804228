import { ControlPlane, CONTROL_PLANE_DEFAULT_PORT } from "../mesh/controlplane/control-plane";
import { createLogger } from "../mesh/logger";
import { listenAddress } from "../mesh/settings";
import type { MeshSettings } from "../mesh/settings";
import { drainOnSignals } from "../mesh/shutdown";

/**
 * `protomesh control-plane [config.yaml]`: runs the control plane on the settings' HOST:PORT
 * (default 127.0.0.1:50050) with the mesh config named by `configPath` (the argument, else
 * PROTOMESH_MESH_CONFIG). SIGHUP reloads the config (an invalid one is refused and logged; the one
 * in force stays); SIGTERM / SIGINT stop it and exit. Resolves once it listens. With the
 * PROTOMESH_TLS_* files it is STRICT mTLS (PROTOMESH_CA_KEY_FILE: it signs renewals;
 * PROTOMESH_XDS_SOCKET: plaintext ADS for grpc-js-xds on a unix socket).
 */
export async function runControlPlane(settings: MeshSettings, configPath: string | undefined): Promise<void> {
  const logger = createLogger({ name: "control-plane", level: settings.logLevel });
  const controlPlane = new ControlPlane({
    logger,
    configPath,
    adminAddress: settings.adminAddress,
    tls: settings.tls,
    caKeyFile: settings.caKeyFile,
    xdsSocket: settings.xdsSocket,
  });
  if (settings.tls === undefined) {
    logger.warn("PLAINTEXT: the control plane runs without mTLS; any local process may register any endpoint, inject faults and read the mesh");
  }
  try {
    await controlPlane.listen(listenAddress(settings, CONTROL_PLANE_DEFAULT_PORT));
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

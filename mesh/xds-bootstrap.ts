import * as os from "node:os";

/** Environment variable naming the control plane ("host:port"); set, services join the mesh. */
export const CONTROL_PLANE_ENV = "PROTOMESH_CONTROL_PLANE";
/** Environment variable naming this process's zone (xDS locality). */
export const ZONE_ENV = "PROTOMESH_ZONE";

/**
 * grpc-js-xds reads a bootstrap for each channel from this channel option (else from the
 * GRPC_XDS_BOOTSTRAP(_CONFIG) environment variables, once per process). It is the only way to give
 * a channel its own control plane, which is what lets one process, e.g. a test, use several.
 */
export const XDS_BOOTSTRAP_CHANNEL_OPTION = "grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config";

/** The control plane address from `explicit`, else PROTOMESH_CONTROL_PLANE; undefined when neither. */
export function controlPlaneAddress(explicit?: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const address = explicit ?? env[CONTROL_PLANE_ENV];
  return address === undefined || address === "" ? undefined : address;
}

/**
 * The xDS bootstrap (gRFC A27) of a client of the protomesh control plane at `controlPlane`:
 * one insecure xDS server, a node id unique to this process, and the process's zone.
 */
export function xdsBootstrap(controlPlane: string, options: { nodeId?: string; zone?: string } = {}): string {
  return JSON.stringify({
    xds_servers: [{ server_uri: controlPlane, channel_creds: [{ type: "insecure" }], server_features: [] }],
    node: {
      id: options.nodeId ?? `protomesh~${os.hostname()}~${process.pid}`,
      locality: { zone: options.zone ?? process.env[ZONE_ENV] ?? "" },
    },
  });
}

let isRegistered = false;

/**
 * Registers grpc-js-xds' `xds:` resolver and its balancers with grpc-js, once. Loading grpc-js-xds
 * takes most of a second (it parses the envoy protos), so it is loaded here, on first use.
 */
export function registerXds(): void {
  if (isRegistered) return;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const xds = require("@grpc/grpc-js-xds") as typeof import("@grpc/grpc-js-xds");
  xds.register();
  isRegistered = true;
}

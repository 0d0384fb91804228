import * as os from "node:os";

/**
 * grpc-js-xds reads a bootstrap for each channel from this channel option (else from the
 * GRPC_XDS_BOOTSTRAP(_CONFIG) environment variables, once per process). It is the only way to give
 * a channel its own control plane, which is what lets one process, e.g. a test, use several.
 */
export const XDS_BOOTSTRAP_CHANNEL_OPTION = "grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config";

/**
 * The xDS bootstrap (gRFC A27) of a client of the protomesh control plane at `controlPlane`:
 * one insecure xDS server, a node id unique to this process, and the process's zone ("" unless given).
 */
export function xdsBootstrap(controlPlane: string, options: { nodeId?: string; zone?: string } = {}): string {
  return JSON.stringify({
    xds_servers: [{ server_uri: controlPlane, channel_creds: [{ type: "insecure" }], server_features: [] }],
    node: {
      id: options.nodeId ?? `protomesh~${os.hostname()}~${process.pid}`,
      locality: { zone: options.zone ?? "" },
    },
  });
}

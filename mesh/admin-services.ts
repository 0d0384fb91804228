import * as path from "node:path";
import { addAdminServicesToServer } from "@grpc/grpc-js";
import type { Server } from "@grpc/grpc-js";
import { isXdsRegistered } from "./register";

/** grpc.channelz.v1: the channels, subchannels, servers and sockets of the process (gRFC A14). */
export const CHANNELZ_SERVICE_NAME = "grpc.channelz.v1.Channelz";
/** envoy.service.status.v3 CSDS: the xDS client's resources as it holds them (gRFC A40). */
export const CSDS_SERVICE_NAME = "envoy.service.status.v3.ClientStatusDiscoveryService";

/**
 * Adds grpc-js' admin services to `server` and returns their names: channelz (grpc-js' own;
 * `grpc.enable_channelz` is on by default) and, in a process whose xDS client is loaded (a kit
 * client dialled a service by name before the server was made), grpc-js-xds' CSDS, which
 * grpc-js-xds registers with `experimental.registerAdminService` as it loads. They are what
 * grpcdebug reads of a process's channels and xDS config. Reflection does not describe them (the
 * descriptors grpc-js and grpc-js-xds build come from proto-loader, which grpcurl's resolver
 * refuses); grpcurl calls them with the proto files those packages ship ({@link adminProtoImportPaths}).
 */
export function addAdminServices(server: Server): string[] {
  addAdminServicesToServer(server);
  return isXdsRegistered() ? [CHANNELZ_SERVICE_NAME, CSDS_SERVICE_NAME] : [CHANNELZ_SERVICE_NAME];
}

/**
 * The directories holding channelz.proto (grpc-js' proto/) and envoy/service/status/v3/csds.proto
 * with its imports (grpc-js-xds' deps/), as grpcurl's `-import-path` flags take them.
 */
export function adminProtoImportPaths(): string[] {
  const grpcJs = path.resolve(path.dirname(require.resolve("@grpc/grpc-js")), "..", "..", "proto");
  return [grpcJs, ...xdsProtoIncludeDirs()];
}

/**
 * The envoy, xds, udpa and validate protos that @grpc/grpc-js-xds ships in its package (deps/),
 * read from there rather than copied into this repository: csds.proto's imports here, and the
 * control plane's xDS resources (controlplane/xds-protos.ts).
 */
export function xdsProtoIncludeDirs(): string[] {
  const deps = path.resolve(path.dirname(require.resolve("@grpc/grpc-js-xds")), "..", "..", "deps");
  return ["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((dir) => path.join(deps, dir));
}

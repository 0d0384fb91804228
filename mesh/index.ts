/** protomesh: the service kit for proxyless gRPC meshes on Node.js. Importing it has no side effects. */
export { MeshError, invalidArgument, isServerFailure, isServiceError, INTERNAL_DETAILS } from "./errors";
export { createLogger, DEFAULT_LOG_LEVEL } from "./logger";
export type { Logger } from "./logger";
export { createServer, MeshServer, DEFAULT_DRAIN_GRACE_MS } from "./server";
export type { MeshServerOptions } from "./server";
export { DEFAULT_SERVER_LIMITS } from "./server-limits";
export type { ServerLimits } from "./server-limits";
export { createClient } from "./client";
export type { MeshClientOptions, ClientConstructor } from "./client";
export { DEFAULT_DEADLINE_MS, deadlinePolicy, resolveDeadline, timeoutFor } from "./deadlines";
export { unary, serverStream } from "./handler";
export { drainOnSignals } from "./shutdown";
export { routeGrpcLogs } from "./grpc-log";
export { REQUEST_ID_KEY } from "./request-id";
export { HealthReporter, OVERALL_HEALTH } from "./health";

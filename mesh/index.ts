/**
 * protomesh: the service kit for proxyless gRPC meshes on Node.js, and what services import of it.
 * Importing it has no side effects.
 */
export { MeshError, invalidArgument, isServerFailure, isServiceError, INTERNAL_DETAILS } from "./errors";
export { createLogger, exitAfterFlush, DEFAULT_LOG_LEVEL } from "./logger";
export type { Logger } from "./logger";
export { clientOptionsFrom, loadSettings, listenAddress, serverOptionsFrom, SETTINGS_ENV } from "./settings";
export type { MeshSettings } from "./settings";
export { createServer, MeshServer, DEFAULT_DRAIN_GRACE_MS } from "./server";
export type { MeshServerOptions } from "./server";
export { DEFAULT_SERVER_LIMITS } from "./server-limits";
export { DEFAULT_ADAPTIVE_LIMIT, DEFAULT_RETRY_PUSHBACK_MS } from "./load-shedder";
export type { AdaptiveLimitOptions, LoadSheddingOptions } from "./load-shedder";
export type { ServerLimits } from "./server-limits";
export { createClient, meshTarget } from "./client";
export type { MeshClientOptions, ClientConstructor } from "./client";
export { DEFAULT_DEADLINE_MS, DEFAULT_DEADLINE_MARGIN_MS, deadlinePolicy, resolveDeadline, timeoutFor } from "./deadlines";
export { deadlineMs, detached } from "./call-context";
export { unary, serverStream } from "./handler";
export { drainOnSignals } from "./shutdown";
export { routeGrpcLogs } from "./grpc-log";
export { REQUEST_ID_KEY } from "./request-id";
export { HealthReporter, OVERALL_HEALTH } from "./health";
export { parsePage, nextPageToken, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from "./pagination";
export type { PageRequest } from "./pagination";
export type { CallSink, CallStart, CallRecord, CallType } from "./observer";
export { register } from "./register";
export { registerBalancerPolicy, registeredBalancerPolicies } from "./balancer";
export type { BalancerPolicy } from "./balancer";
export type { ServiceConfigJson } from "./balancer-client-health";
export { systemClock } from "./clock";
export type { Clock, Cancel } from "./clock";
export { meshMetrics, metricsSink, GRPC_CODE_NAMES, HANDLING_SECONDS_BUCKETS } from "./metrics";
export type { MeshMetrics } from "./metrics";
export { startAdminServer } from "./admin";
export type { AdminServer, AdminServerOptions } from "./admin";
export { tracingFromEnvironment } from "./tracing";
export type { ProcessTracing } from "./tracing";
export { createMeshCa, issueWorkloadCertificate, spiffeIdOf, spiffeIdFor, DEFAULT_WORKLOAD_TTL_MS, DEFAULT_CA_TTL_MS } from "./identity";
export type { MeshCa, MeshCaOptions, WorkloadCertificate, WorkloadCertificateOptions } from "./identity";
export { peerIdentity } from "./tls";
export type { MeshTlsOptions, CallWithAuthContext } from "./tls";
export { DEFAULT_CERTIFICATE_REFRESH_MS } from "./tls-certificate-files";
export { authorize, Authorizer, loadAuthorizationPolicy, parseAuthorizationPolicy } from "./authorization";
export type { AuthorizationAction, AuthorizationDecision, AuthorizationPolicy, AuthorizationRule, MethodAuthorization } from "./authorization";

// Package protomesh is the Go kit of protomesh: a grpc-go server and client that join a protomesh
// mesh the way the TypeScript kit (mesh/server.ts, mesh/client.ts) does, with the same settings,
// log lines, metadata and deadline rules, so that Go services sit beside TypeScript and Python ones.
//
// A server ([NewServer]) serves grpc.health.v1 and server reflection, logs one line per call,
// carries x-request-id, registers with the control plane and keeps its lease, and drains on
// SIGTERM ([Server.ServeUntilSignal]). A client ([Dial]) dials a mesh service by name over xDS
// through a bootstrap made here, gives every call a deadline and logs one line per call.
//
// With an admin address ([WithAdminAddress], PROTOMESH_ADMIN_ADDRESS) a server counts its calls in
// go-grpc-prometheus' metrics, named as the TypeScript kit's (mesh/metrics.ts), and serves them
// with the Go runtime's at GET /metrics on an admin HTTP port; [DialMetrics] counts a client's. Its
// gRPC port then serves grpc-go's admin services too, channelz and CSDS ([WithoutAdminServices]).
//
// With the standard OTEL_* variables set ([TracingFromEnvironment]), [WithTracing] and [DialTracing]
// make one OpenTelemetry span per call on each side by otelgrpc's stats handlers, named and
// attributed as the TypeScript kit's (mesh/tracing.ts), the W3C traceparent in the call's metadata;
// health, reflection and the kit's own calls to the control plane get none, and a drain flushes them.
//
// With TLS files ([WithTLS], PROTOMESH_TLS_*) a server's port is STRICT mTLS with SPIFFE workload
// certificates and [DialTLS] checks the server's SPIFFE ID (mesh/tls.ts); [WithAuthorization] then
// decides every call of the application's services by its caller's SPIFFE ID, before the handler,
// with the rules and the words of mesh/authorization.ts ([ParseAuthorizationPolicy]). With a
// control plane too, everything the kit says to it is mTLS: the registry lease and the renewal of
// the server's certificate at half its validity through protomesh.certificate.v1.CertificateService
// require its SPIFFE ID ([ControlPlaneService]); the xDS stream (gRFC A65 "tls" channel
// credentials in the bootstrap, [XDSBootstrap]) checks its certificate against the host dialled.
// A health address ([WithHealthAddress], PROTOMESH_HEALTH_ADDRESS) opens a plaintext port serving
// grpc.health.v1 alone, with the same statuses, for probes that cannot present a mesh certificate.
//
// Environment variables are read once, by [LoadSettings] (and [TracingFromEnvironment]), at the
// program's edge; everything else takes plain options.
package protomesh

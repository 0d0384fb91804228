package protomesh_test

import (
	"context"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	interopv1 "github.com/protomesh/protomesh/generated/go/protomesh/interop/v1"
	"github.com/protomesh/protomesh/mesh/go/protomesh"
	"github.com/protomesh/protomesh/mesh/go/protomesh/protomeshtest"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// Traces (tracing.go): real kit servers and clients on 127.0.0.1, their spans exported by the real
// OTLP/HTTP exporter, configured by the OTEL_* variables alone, to an OTLP receiver in the test
// (protomeshtest.OTLPReceiver). Each test flushes by draining its servers, the path a program
// takes on SIGTERM, so that what it reads is all there is.

// tracingEnvironment sets the variables TracingFromEnvironment and the exporter read to env, the
// rest unset.
func tracingEnvironment(t *testing.T, env map[string]string) {
	for _, name := range []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER",
		"OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_RESOURCE_ATTRIBUTES",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
	} {
		t.Setenv(name, env[name])
	}
}

// tracingTo returns the tracing of a process whose OTEL_EXPORTER_OTLP_ENDPOINT is the receiver's,
// plus env; shut down at cleanup.
func tracingTo(t *testing.T, receiver *protomeshtest.OTLPReceiver, serviceName string, env map[string]string) *protomesh.Tracing {
	t.Helper()
	withEndpoint := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.URL}
	maps.Copy(withEndpoint, env)
	tracingEnvironment(t, withEndpoint)
	tracing, err := protomesh.TracingFromEnvironment(serviceName)
	if err != nil || tracing == nil {
		t.Fatalf("TracingFromEnvironment with an endpoint: %v, %v; want tracing", tracing, err)
	}
	t.Cleanup(func() { _ = tracing.Shutdown(context.Background()) })
	return tracing
}

func dialTraced(t *testing.T, target string, tracing *protomesh.Tracing, options ...protomesh.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := protomesh.Dial(target, append([]protomesh.DialOption{protomesh.DialTracing(tracing), protomesh.DialLogger(protomesh.NewLogger(io.Discard, "", "info"))}, options...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// findSpan returns the one span of kind named name whose parent is parentID ("" for a root).
func findSpan(t *testing.T, spans []protomeshtest.Span, kind tracepb.Span_SpanKind, name, parentID string) protomeshtest.Span {
	t.Helper()
	var found []protomeshtest.Span
	for _, span := range spans {
		if span.Kind == kind && span.Name == name && span.ParentID == parentID {
			found = append(found, span)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %v spans %s with parent %q, want 1", len(found), kind, name, parentID)
	}
	return found[0]
}

const holdMethod = interopService + "/Hold"

func TestTracingFollowsACallThroughTwoServersAsParentAndChildSpans(t *testing.T) {
	receiver := protomeshtest.StartOTLPReceiver(t)
	tracing := tracingTo(t, receiver, "kit-trace", nil)
	back := startServer(t, "kit-trace-back", protomesh.WithTracing(tracing))
	front := startServer(t, "kit-trace-front", protomesh.WithTracing(tracing))
	front.service.next = dialTraced(t, back.addr, tracing)
	client := interopv1.NewInteropServiceClient(dialTraced(t, front.addr, tracing))
	if _, err := client.Hold(callCtx(t), &interopv1.HoldRequest{RelayTo: []string{"back"}}); err != nil {
		t.Fatal(err)
	}
	front.server.Drain()
	back.server.Drain()
	spans := receiver.Spans()
	if len(spans) != 4 {
		t.Fatalf("%d spans, want 4: a client and a server span for each of the two calls", len(spans))
	}
	// The test's call, the front server's handling of it, the call that handler makes with its ctx
	// and the back server's handling of that: each the child of the one before.
	outer := findSpan(t, spans, tracepb.Span_SPAN_KIND_CLIENT, holdMethod, "")
	frontCall := findSpan(t, spans, tracepb.Span_SPAN_KIND_SERVER, holdMethod, outer.SpanID)
	inner := findSpan(t, spans, tracepb.Span_SPAN_KIND_CLIENT, holdMethod, frontCall.SpanID)
	backCall := findSpan(t, spans, tracepb.Span_SPAN_KIND_SERVER, holdMethod, inner.SpanID)
	for _, span := range []protomeshtest.Span{outer, frontCall, inner, backCall} {
		if span.TraceID != outer.TraceID {
			t.Errorf("%v: trace %s, want the client's %s", span, span.TraceID, outer.TraceID)
		}
		if span.Service != "kit-trace" {
			t.Errorf("%v: service.name %q, want the kit's service name kit-trace", span, span.Service)
		}
		for key, want := range map[string]any{
			"rpc.system": "grpc", "rpc.service": interopService, "rpc.method": "Hold", "rpc.grpc.status_code": int64(codes.OK),
			"rpc.system.name": "grpc", "rpc.response.status_code": "OK",
		} {
			if got := span.Attributes[key]; got != want {
				t.Errorf("%v: %s %v, want %v", span, key, got, want)
			}
		}
	}
}

func TestTracingRecordsTheStatusCodeAndTheServiceNameOfOTELServiceName(t *testing.T) {
	receiver := protomeshtest.StartOTLPReceiver(t)
	tracing := tracingTo(t, receiver, "kit-trace", map[string]string{"OTEL_SERVICE_NAME": "shop-answers"})
	server := protomesh.NewServer("kit-trace-status", protomesh.WithTracing(tracing), protomesh.WithLogger(protomesh.NewLogger(io.Discard, "", "info")))
	interopv1.RegisterInteropServiceServer(server, answeringService{})
	client := interopv1.NewInteropServiceClient(dialTraced(t, listenOnLoopback(t, server), tracing))
	if _, err := client.Echo(callCtx(t), &interopv1.EchoRequest{Payload: &interopv1.Payload{Text: "missing"}}); status.Code(err) != codes.NotFound {
		t.Fatalf("Echo(missing): %v, want NOT_FOUND", err)
	}
	server.Drain()
	spans := receiver.Spans()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want a client and a server span", len(spans))
	}
	for _, span := range spans {
		if span.Name != interopService+"/Echo" || span.Service != "shop-answers" {
			t.Errorf("%v: want %s/Echo of service.name shop-answers (OTEL_SERVICE_NAME)", span, interopService)
		}
		if span.Attributes["rpc.grpc.status_code"] != int64(codes.NotFound) || span.Attributes["rpc.response.status_code"] != "NOT_FOUND" {
			t.Errorf("%v: want rpc.grpc.status_code 5 and rpc.response.status_code NOT_FOUND", span)
		}
	}
}

func TestTracingMakesNoSpanForHealthChecksOrReflection(t *testing.T) {
	receiver := protomeshtest.StartOTLPReceiver(t)
	tracing := tracingTo(t, receiver, "kit-trace", nil)
	s := startServer(t, "kit-trace-quiet", protomesh.WithTracing(tracing))
	conn := dialTraced(t, s.addr, tracing)
	ctx := callCtx(t)
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	// A call that is traced, so that the export is seen to work.
	if _, err := interopv1.NewInteropServiceClient(conn).Echo(ctx, &interopv1.EchoRequest{}); err != nil {
		t.Fatal(err)
	}
	s.server.Drain()
	spans := receiver.Spans()
	for _, span := range spans {
		if span.Name != interopService+"/Echo" {
			t.Errorf("a span %v, want none but Echo's", span)
		}
	}
	if len(spans) != 2 {
		t.Errorf("%d spans, want Echo's client and server span", len(spans))
	}
}

func TestTracingMakesNoSpanForTheKitsCallsToTheControlPlane(t *testing.T) {
	cp := protomeshtest.StartControlPlane(t, testMesh)
	receiver := protomeshtest.StartOTLPReceiver(t)
	tracing := tracingTo(t, receiver, "kit-trace", nil)
	s := startServer(t, "kit-trace-cp", protomesh.WithControlPlane(cp.Addr), protomesh.WithTracing(tracing))
	// HEALTHY: registered, renewed and probed by the control plane's health checks.
	protomeshtest.Eventually(t, 5*time.Second, "registered and HEALTHY", func() bool {
		return cp.Endpoints(t, "kit-trace-cp")[s.addr] == "HEALTH_STATE_HEALTHY"
	})
	client := interopv1.NewInteropServiceClient(dialTraced(t, "kit-trace-cp", tracing, protomesh.DialControlPlane(cp.Addr)))
	protomeshtest.Eventually(t, 8*time.Second, "a call answered over xDS", func() bool {
		_, err := client.Echo(context.Background(), &interopv1.EchoRequest{})
		return err == nil
	})
	// The drain deregisters too.
	s.server.Drain()
	spans := receiver.Spans()
	for _, span := range spans {
		if span.Name != interopService+"/Echo" {
			t.Errorf("a span %v, want none but Echo's (no lease, ADS or health check)", span)
		}
	}
	if !slices.ContainsFunc(spans, func(span protomeshtest.Span) bool { return span.Kind == tracepb.Span_SPAN_KIND_SERVER }) {
		t.Errorf("no server span of Echo among %d spans", len(spans))
	}
}

// traceContextService answers Echo and reports whether its call came with a traceparent and
// whether its handler's ctx holds a span context.
type traceContextService struct {
	interopv1.UnimplementedInteropServiceServer
	seen chan [2]bool
}

func (s traceContextService) Echo(ctx context.Context, _ *interopv1.EchoRequest) (*interopv1.EchoResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.seen <- [2]bool{len(md.Get("traceparent")) > 0, trace.SpanContextFromContext(ctx).IsValid()}
	return &interopv1.EchoResponse{}, nil
}

func TestTracingFromEnvironmentIsOffWithoutAnOTLPEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		isOn bool
	}{
		{"no endpoint", map[string]string{}, false},
		{"an empty endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, false},
		{"disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, false},
		{"exporter none", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		{"a base endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{"a traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true},
		{"otlp among exporters", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "console, otlp"}, true},
		{"SDK enabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "false"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tracingEnvironment(t, tc.env)
			tracing, err := protomesh.TracingFromEnvironment("kit-trace")
			if err != nil {
				t.Fatal(err)
			}
			if isOn := tracing != nil; isOn != tc.isOn {
				t.Fatalf("tracing %v, want on: %v", tracing, tc.isOn)
			}
			if err := tracing.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
	// Off, the options install nothing: the client sends no traceparent, and the server reads none
	// from a caller that sends one.
	tracingEnvironment(t, nil)
	off, err := protomesh.TracingFromEnvironment("kit-trace")
	if err != nil || off != nil {
		t.Fatalf("TracingFromEnvironment without an endpoint: %v, %v; want nil, nil", off, err)
	}
	service := traceContextService{seen: make(chan [2]bool, 1)}
	server := protomesh.NewServer("kit-trace-off", protomesh.WithTracing(off), protomesh.WithLogger(protomesh.NewLogger(io.Discard, "", "info")))
	interopv1.RegisterInteropServiceServer(server, service)
	addr := listenOnLoopback(t, server)
	on := tracingTo(t, protomeshtest.StartOTLPReceiver(t), "kit-trace", nil)
	for _, tc := range []struct {
		client               *protomesh.Tracing
		wantTraceparent      bool
		clientTracingOnOrOff string
	}{{off, false, "off"}, {on, true, "on"}} {
		if _, err := interopv1.NewInteropServiceClient(dialTraced(t, addr, tc.client)).Echo(callCtx(t), &interopv1.EchoRequest{}); err != nil {
			t.Fatal(err)
		}
		seen := <-service.seen
		if seen[0] != tc.wantTraceparent || seen[1] {
			t.Errorf("client tracing %s: traceparent sent %v, span context in the handler %v; want %v, false",
				tc.clientTracingOnOrOff, seen[0], seen[1], tc.wantTraceparent)
		}
	}
}

func TestTracingFromEnvironmentRefusesAnUnknownSamplerNamingTheVariable(t *testing.T) {
	for _, tc := range []struct {
		sampler, arg string
		wantErr      string // "" for none
	}{
		{"", "", ""},
		{"always_on", "", ""},
		{"always_off", "", ""},
		{"parentbased_always_off", "", ""},
		{"traceidratio", "0.25", ""},
		{"parentbased_traceidratio", "", ""},
		{"sometimes", "", `OTEL_TRACES_SAMPLER: must be always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio, got "sometimes"`},
		{"jaeger_remote", "", "OTEL_TRACES_SAMPLER: "},
		{"traceidratio", "1.5", `OTEL_TRACES_SAMPLER_ARG: must be a ratio from 0 to 1, got "1.5"`},
		{"parentbased_traceidratio", "half", `OTEL_TRACES_SAMPLER_ARG: must be a ratio from 0 to 1, got "half"`},
		{"traceidratio", "NaN", "OTEL_TRACES_SAMPLER_ARG: "},
	} {
		t.Run(tc.sampler+"/"+tc.arg, func(t *testing.T) {
			tracingEnvironment(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_SAMPLER": tc.sampler, "OTEL_TRACES_SAMPLER_ARG": tc.arg})
			tracing, err := protomesh.TracingFromEnvironment("kit-trace")
			if tc.wantErr == "" {
				if err != nil || tracing == nil {
					t.Fatalf("%v, %v; want tracing", tracing, err)
				}
				_ = tracing.Shutdown(context.Background())
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) || tracing != nil {
				t.Fatalf("%v, %v; want no tracing and an error starting %q", tracing, err, tc.wantErr)
			}
		})
	}
}

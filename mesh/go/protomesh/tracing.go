package protomesh

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// The OpenTelemetry variables the kit reads itself (OpenTelemetry's environment variable
// specification); the OTLP exporter reads OTEL_EXPORTER_OTLP_* and the batch span processor
// OTEL_BSP_* on their own.
const (
	envOTLPEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envOTLPTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envSDKDisabled        = "OTEL_SDK_DISABLED"
	envTracesExporter     = "OTEL_TRACES_EXPORTER"
	envServiceName        = "OTEL_SERVICE_NAME"
	envTracesSampler      = "OTEL_TRACES_SAMPLER"
	envTracesSamplerArg   = "OTEL_TRACES_SAMPLER_ARG"
)

// Tracing is a process's OpenTelemetry traces, as the TypeScript kit makes them (mesh/tracing.ts):
// with [WithTracing] a server makes one SERVER span per inbound call, with [DialTracing] a client one
// CLIENT span per outbound call, both by otelgrpc's stats handlers, named `package.Service/Method`,
// the W3C traceparent carried in the call's metadata; so a call's server span is the child of its
// client span, and a call made with a handler's ctx the child of the handler's server span. The
// mesh's own services (health, reflection, ORCA load reports) get no span, nor do the kit's calls
// to the control plane (its lease has a channel of its own). A nil *Tracing is tracing off: the
// options then install nothing, and its methods do nothing.
type Tracing struct {
	provider *sdktrace.TracerProvider
	server   stats.Handler
	client   stats.Handler
}

// TracingFromEnvironment is the process's tracing as the standard OpenTelemetry variables of the
// process's environment configure it, or nil when they ask for none: spans go in batches
// (OTEL_BSP_*) to an OTLP/HTTP collector (protobuf) at OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else at
// OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces (the exporter reads OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT
// and the rest itself), unless OTEL_SDK_DISABLED is "true" or OTEL_TRACES_EXPORTER names no "otlp".
// OTEL_SERVICE_NAME names the service (default serviceName); OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG choose the sampler (default parentbased_always_on). Read once, at the
// program's edge, beside [LoadSettings]; a value it does not know is refused, naming the variable.
// The program calls [Tracing.Shutdown] once its servers have drained.
func TracingFromEnvironment(serviceName string) (*Tracing, error) {
	value := func(name string) string { return strings.TrimSpace(os.Getenv(name)) }
	if value(envOTLPTracesEndpoint) == "" && value(envOTLPEndpoint) == "" {
		return nil, nil
	}
	if strings.EqualFold(value(envSDKDisabled), "true") {
		return nil, nil
	}
	exporters := value(envTracesExporter)
	if exporters == "" {
		exporters = "otlp"
	}
	if !slices.ContainsFunc(strings.Split(exporters, ","), func(name string) bool { return strings.TrimSpace(name) == "otlp" }) {
		return nil, nil
	}
	sampler, err := samplerFromEnvironment()
	if err != nil {
		return nil, err
	}
	name := value(envServiceName)
	if name == "" {
		name = serviceName
	}
	// Merged into the SDK's default resource, which also reads OTEL_RESOURCE_ATTRIBUTES.
	serviceResource, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", name)))
	if err != nil {
		return nil, fmt.Errorf("protomesh: the trace resource: %w", err)
	}
	exporter, err := otlptracehttp.New(context.Background())
	if err != nil {
		return nil, fmt.Errorf("protomesh: the OTLP trace exporter: %w", err)
	}
	provider := sdktrace.NewTracerProvider(
		sdktrace.WithResource(serviceResource),
		sdktrace.WithSampler(sampler),
		sdktrace.WithBatcher(exporter),
	)
	traced := filters.None(meshServiceFilters()...)
	options := []otelgrpc.Option{
		otelgrpc.WithTracerProvider(provider),
		// W3C trace context only, as the other kits send and read it; nothing is set globally.
		otelgrpc.WithPropagators(propagation.TraceContext{}),
		otelgrpc.WithFilter(traced),
		// Traces only: the calls are counted in Prometheus' metrics (metrics.go).
		otelgrpc.WithMeterProvider(noop.NewMeterProvider()),
	}
	return &Tracing{
		provider: provider,
		server:   meshSpanAttributes{Handler: otelgrpc.NewServerHandler(options...), isTraced: traced},
		client:   meshSpanAttributes{Handler: otelgrpc.NewClientHandler(options...), isTraced: traced},
	}, nil
}

// Shutdown exports the spans still buffered, within ctx, and stops the exporter; call it after
// the process's servers have drained (their drain flushes the spans of their calls already).
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// flush exports the spans ended so far, within ctx: a drained server's, before its program exits.
func (t *Tracing) flush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.ForceFlush(ctx)
}

func meshServiceFilters() []otelgrpc.Filter {
	found := make([]otelgrpc.Filter, 0, len(meshServices))
	for _, service := range meshServices {
		found = append(found, filters.ServiceName(service))
	}
	return found
}

// meshSpanAttributes adds to otelgrpc's spans the RPC attributes of the other kits' spans, so that
// one query finds a call in every language of the mesh: otelgrpc v0.72 follows OpenTelemetry's RPC
// conventions v1.43 (rpc.system.name, rpc.method "package.Service/Method", rpc.response.status_code
// "NOT_FOUND"), mesh/tracing.ts the earlier ones (rpc.system "grpc", rpc.service, rpc.method
// "Method", rpc.grpc.status_code 5). A span carries both, rpc.method being the kits'.
type meshSpanAttributes struct {
	stats.Handler
	isTraced otelgrpc.Filter
}

type callSpanKey struct{}

// TagRPC is called by grpc-go as a call starts; otelgrpc starts the call's span in it.
func (h meshSpanAttributes) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	ctx = h.Handler.TagRPC(ctx, info)
	if !h.isTraced(info) {
		return ctx
	}
	span := trace.SpanFromContext(ctx)
	service, method := splitMethod(info.FullMethodName)
	span.SetAttributes(attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", service), attribute.String("rpc.method", method))
	return context.WithValue(ctx, callSpanKey{}, span)
}

// HandleRPC is called by grpc-go on each event of a call; otelgrpc ends the call's span on its End.
func (h meshSpanAttributes) HandleRPC(ctx context.Context, event stats.RPCStats) {
	if end, ok := event.(*stats.End); ok {
		if span, ok := ctx.Value(callSpanKey{}).(trace.Span); ok {
			span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(status.Code(end.Error))))
		}
	}
	h.Handler.HandleRPC(ctx, event)
}

// samplerFromEnvironment is the sampler OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG name, as
// OpenTelemetry's environment variable specification defines them (mesh/tracing.ts
// samplerFromEnvironment). The Go SDK reads them too, but samples with its default when it does
// not know a value: refused here instead, naming the variable, as in the other kits.
func samplerFromEnvironment() (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(os.Getenv(envTracesSampler)))
	if name == "" {
		name = "parentbased_always_on"
	}
	ratio := func() (sdktrace.Sampler, error) {
		text := strings.TrimSpace(os.Getenv(envTracesSamplerArg))
		if text == "" {
			return sdktrace.TraceIDRatioBased(1), nil
		}
		value, err := strconv.ParseFloat(text, 64)
		if err != nil || !(value >= 0 && value <= 1) {
			return nil, fmt.Errorf("%s: must be a ratio from 0 to 1, got %q", envTracesSamplerArg, text)
		}
		return sdktrace.TraceIDRatioBased(value), nil
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return ratio()
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		root, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(root), nil
	}
	return nil, fmt.Errorf("%s: must be always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio, got %q",
		envTracesSampler, os.Getenv(envTracesSampler))
}

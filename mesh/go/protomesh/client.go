package protomesh

import (
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// DialOption configures [Dial].
type DialOption func(*dialOptions)

type dialOptions struct {
	logger         *slog.Logger
	controlPlane   string
	zone           string
	fallbackTarget string
	deadlines      deadlinePolicy
	isMetered      bool
	tracing        *Tracing
	tls            *TLSFiles
	tlsService     string
	grpcOptions    []grpc.DialOption
}

// DialSettings applies a program's settings: its control plane and zone, and its TLS files when
// they are set ([DialTLS], the server's service taken from the target).
func DialSettings(s Settings) DialOption {
	return func(o *dialOptions) {
		o.controlPlane, o.zone = s.ControlPlane, s.Zone
		if s.TLS != nil {
			files := *s.TLS
			o.tls = &files
		}
	}
}

// DialTLS makes the connection mTLS (tls.go): it presents files.CertFile and accepts only a server
// whose certificate chains to the CA in files.CAFile and names the SPIFFE ID of serverService,
// spiffe://<trust-domain>/service/<serverService>; host names are not checked. serverService ""
// is the target when the target is a mesh service name ("catalog", "xds:///catalog"), else any
// workload of the trust domain. The files are read again every files.RefreshInterval, as
// [WithTLS]'s. With a control plane, the xDS stream to it is mTLS too, with the same files
// (XDSBootstrap).
func DialTLS(files TLSFiles, serverService string) DialOption {
	return func(o *dialOptions) { o.tls, o.tlsService = &files, serverService }
}

// DialControlPlane dials mesh service names over xDS through the control plane at addr ("host:port").
func DialControlPlane(addr string) DialOption { return func(o *dialOptions) { o.controlPlane = addr } }

// DialZone sets the zone (xDS locality) the bootstrap names.
func DialZone(zone string) DialOption { return func(o *dialOptions) { o.zone = zone } }

// DialFallback sets what a mesh service name dials when no control plane is configured
// ("127.0.0.1:50051"), so that one line of code works in the mesh and outside it.
func DialFallback(target string) DialOption {
	return func(o *dialOptions) { o.fallbackTarget = target }
}

// DialLogger sets the logger of the client's call lines (default: info to stdout).
func DialLogger(logger *slog.Logger) DialOption { return func(o *dialOptions) { o.logger = logger } }

// DialDefaultDeadline sets the deadline of calls that name none (default DefaultDeadline).
func DialDefaultDeadline(timeout time.Duration) DialOption {
	return func(o *dialOptions) { o.deadlines.defaultTimeout = timeout }
}

// DialMethodDeadline sets the deadline of one method's calls that name none, keyed by method name
// ("GetProduct") or full path ("/shop.catalog.v1.CatalogService/GetProduct").
func DialMethodDeadline(method string, timeout time.Duration) DialOption {
	return func(o *dialOptions) { o.deadlines.methods[method] = timeout }
}

// DialDeadlineMargin sets what a call made inside a handler leaves of the inbound budget (default DefaultDeadlineMargin).
func DialDeadlineMargin(margin time.Duration) DialOption {
	return func(o *dialOptions) { o.deadlines.margin = margin }
}

// DialMetrics counts the connection's calls in the process's Prometheus metrics (go-grpc-prometheus'
// grpc_client_*, metrics.go), which the admin port of a server in the process serves
// ([WithAdminAddress]). A program turns it on when it has an admin address, as the TypeScript
// services do.
func DialMetrics() DialOption { return func(o *dialOptions) { o.isMetered = true } }

// DialTracing makes one OpenTelemetry span per outbound call (tracing.go), the child of the span of
// the inbound call whose ctx it is made with, and sends its traceparent. nil (tracing off) installs nothing.
func DialTracing(tracing *Tracing) DialOption { return func(o *dialOptions) { o.tracing = tracing } }

// DialGRPCOptions adds grpc-go dial options; protomesh's interceptors run first (outermost).
func DialGRPCOptions(options ...grpc.DialOption) DialOption {
	return func(o *dialOptions) { o.grpcOptions = append(o.grpcOptions, options...) }
}

// A mesh service name, as mesh/names.ts: a DNS label (RFC 1123) starting with a letter.
var serviceNamePattern = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Dial returns a client connection whose every call has a deadline and is logged when it ends, and
// carries x-request-id (a call made inside a handler: the inbound call's; its budget less the margin
// and its cancellation, too). target is a grpc-go target ("127.0.0.1:50051", "dns:///catalog:50051",
// "xds:///catalog") or a mesh service name ("catalog"), dialled as xds:///catalog through a bootstrap
// made here with a control plane (or the process's own GRPC_XDS_BOOTSTRAP(_CONFIG), when it names
// that control plane and zone: then the channel's xDS config is in CSDS, xds_bootstrap.go), or as the
// fallback target without one. An xds: target without a
// control plane uses grpc-go's own bootstrap (GRPC_XDS_BOOTSTRAP), as for any xDS server.
func Dial(target string, options ...DialOption) (*grpc.ClientConn, error) {
	o := dialOptions{deadlines: deadlinePolicy{defaultTimeout: DefaultDeadline, margin: DefaultDeadlineMargin, methods: map[string]time.Duration{}}}
	for _, option := range options {
		option(&o)
	}
	if o.deadlines.defaultTimeout <= 0 {
		return nil, fmt.Errorf("protomesh.Dial: the default deadline must be > 0, got %s", o.deadlines.defaultTimeout)
	}
	channelTarget, err := meshTarget(target, o.controlPlane, o.fallbackTarget)
	if err != nil {
		return nil, err
	}
	if o.logger == nil {
		o.logger = NewLogger(os.Stdout, "", "info")
	}
	observer := &clientObserver{logger: o.logger.With("target", channelTarget, "component", "client"), deadlines: o.deadlines}
	transport := insecure.NewCredentials()
	if o.tls != nil {
		service := o.tlsService
		if name := strings.TrimPrefix(target, "xds:///"); service == "" && serviceNamePattern.MatchString(name) {
			service = name
		}
		if service != "" && !serviceNamePattern.MatchString(service) {
			return nil, fmt.Errorf("protomesh.DialTLS: the server's service must be a mesh service name (a DNS label such as \"catalog\"), got %q", service)
		}
		source, err := newTLSSource(*o.tls, o.logger)
		if err == nil {
			err = source.load()
		}
		if err != nil {
			return nil, fmt.Errorf("protomesh.Dial: %w", err)
		}
		transport = clientTLSCredentials(source, service)
	}
	grpcOptions := []grpc.DialOption{
		grpc.WithTransportCredentials(transport),
		grpc.WithChainUnaryInterceptor(observer.unary),
		grpc.WithChainStreamInterceptor(observer.stream),
	}
	if o.isMetered {
		// After the observer, which changes no status: the codes counted are those the caller gets.
		metrics := meshMetrics().client
		grpcOptions = append(grpcOptions,
			grpc.WithChainUnaryInterceptor(metrics.UnaryClientInterceptor()),
			grpc.WithChainStreamInterceptor(metrics.StreamClientInterceptor()),
		)
	}
	if o.tracing != nil {
		grpcOptions = append(grpcOptions, grpc.WithStatsHandler(o.tracing.client))
	}
	if o.controlPlane != "" && isXDSTarget(channelTarget) {
		builder, err := xdsResolverFor(o.controlPlane, o.zone, o.tls)
		if err != nil {
			return nil, err
		}
		if builder != nil {
			grpcOptions = append(grpcOptions, grpc.WithResolvers(builder))
		}
	}
	return grpc.NewClient(channelTarget, append(grpcOptions, o.grpcOptions...)...)
}

// meshTarget is the one rule for what a target dials: a bare service name is xds:///<name> with a
// control plane, the fallback without one; anything else is a grpc-go target and is kept.
func meshTarget(target, controlPlane, fallback string) (string, error) {
	if !serviceNamePattern.MatchString(target) {
		return target, nil
	}
	if controlPlane != "" {
		return "xds:///" + target, nil
	}
	if fallback != "" {
		return fallback, nil
	}
	return "", fmt.Errorf("protomesh.Dial: %q is a mesh service name, which needs a control plane (%s) or a fallback target", target, EnvControlPlane)
}

func isXDSTarget(target string) bool { return len(target) >= 4 && target[:4] == "xds:" }

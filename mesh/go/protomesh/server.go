package protomesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// DefaultDrainGrace is how long a drain lets in-flight calls finish before it cancels them
// (mesh/server.ts DEFAULT_DRAIN_GRACE_MS; Kubernetes' default is 30 s).
const DefaultDrainGrace = 10 * time.Second

const healthWatchMethod = "/grpc.health.v1.Health/Watch"

// ServerOption configures a [Server].
type ServerOption func(*serverOptions)

type serverOptions struct {
	logger        *slog.Logger
	controlPlane  string
	meshService   string
	zone          string
	advertiseHost string
	leaseTTL      time.Duration
	drainGrace    time.Duration
	random        func() float64
	adminAddress  string
	healthAddress string
	tracing       *Tracing
	tls           *TLSFiles
	isRenewalOff  bool
	authorization *AuthorizationPolicy
	meshConfig    string
	grpcOptions   []grpc.ServerOption

	// isAdminServicesOff leaves grpc-go's admin services off a server with an admin address.
	isAdminServicesOff bool
}

// WithSettings applies a program's settings: its control plane, zone and advertised host, its
// TLS files when they are set ([WithTLS]), its mesh config file ([WithMeshConfig]) and its plaintext
// health port ([WithHealthAddress]).
func WithSettings(s Settings) ServerOption {
	return func(o *serverOptions) {
		o.controlPlane, o.zone, o.advertiseHost, o.meshConfig = s.ControlPlane, s.Zone, s.AdvertiseHost, s.MeshConfig
		o.healthAddress = s.HealthAddress
		if s.TLS != nil {
			files := *s.TLS
			o.tls = &files
		}
	}
}

// WithTLS makes the gRPC port STRICT mTLS (tls.go): only a client whose certificate chains to the CA
// in files.CAFile completes the handshake; the server presents files.CertFile. The files are read
// again every files.RefreshInterval, so that replaced files serve new handshakes without a restart;
// a read that fails keeps the last good pair. Handlers learn the caller with [PeerIdentity]. With a
// control plane too, the server registers over mTLS with the same certificate, requiring the
// control plane's SPIFFE ID ([ControlPlaneService]), and renews the certificate through it once
// half its validity has passed (certificate_renewal.go), unless [WithoutCertificateRenewal].
func WithTLS(files TLSFiles) ServerOption {
	return func(o *serverOptions) { o.tls = &files }
}

// WithoutCertificateRenewal leaves the certificate files of a server with TLS and a control plane
// as they are, for a program whose certificates something else renews.
func WithoutCertificateRenewal() ServerOption {
	return func(o *serverOptions) { o.isRenewalOff = true }
}

// WithAuthorization enforces policy on every call of the server's application services
// (authorization.go): in an interceptor right inside the call observer, before the handler and
// the interceptors of WithGRPCServerOptions, a deny rule that matches wins, no allow rule that
// matches is PERMISSION_DENIED, no peer identity is UNAUTHENTICATED; health, reflection and ORCA
// are never refused. A caller given as a service name matches in the trust domain of the TLS
// files (their TrustDomain, or their CA's). Needs [WithTLS]: without mTLS no caller has an
// identity, and Listen refuses it. nil is no policy.
func WithAuthorization(policy *AuthorizationPolicy) ServerOption {
	return func(o *serverOptions) { o.authorization = policy }
}

// WithMeshConfig names the mesh config file (PROTOMESH_MESH_CONFIG): with TLS and no
// WithAuthorization, Listen reads the server's policy from it, services.<mesh service>.authorization
// ([LoadAuthorizationPolicy]); none there is no policy, and a bad block an error of Listen naming the field.
func WithMeshConfig(file string) ServerOption {
	return func(o *serverOptions) { o.meshConfig = file }
}

// WithLogger sets the logger of the server's own lines and call lines (default: info to stdout).
func WithLogger(logger *slog.Logger) ServerOption {
	return func(o *serverOptions) { o.logger = logger }
}

// WithControlPlane makes the server register with the control plane at addr ("host:port") and keep its lease.
func WithControlPlane(addr string) ServerOption {
	return func(o *serverOptions) { o.controlPlane = addr }
}

// WithMeshService sets the mesh service name to register under (what clients dial); default the server's name.
func WithMeshService(name string) ServerOption {
	return func(o *serverOptions) { o.meshService = name }
}

// WithZone sets the zone (xDS locality) to register in.
func WithZone(zone string) ServerOption { return func(o *serverOptions) { o.zone = zone } }

// WithAdvertiseHost sets the address to register when it differs from the bound host.
func WithAdvertiseHost(host string) ServerOption {
	return func(o *serverOptions) { o.advertiseHost = host }
}

// WithLeaseTTL sets the lease TTL to ask for; 0 takes the control plane's default.
func WithLeaseTTL(ttl time.Duration) ServerOption { return func(o *serverOptions) { o.leaseTTL = ttl } }

// WithDrainGrace sets how long a drain lets in-flight calls finish (default DefaultDrainGrace).
func WithDrainGrace(grace time.Duration) ServerOption {
	return func(o *serverOptions) { o.drainGrace = grace }
}

// WithRandom sets the randomness of the retry jitter, in [0, 1) (tests pin it): the lease's and,
// with TLS and a control plane, the certificate renewal's, which call it from their own goroutines.
func WithRandom(random func() float64) ServerOption {
	return func(o *serverOptions) { o.random = random }
}

// WithAdminAddress turns on the server's Prometheus metrics (go-grpc-prometheus' grpc_server_*,
// metrics.go) and opens the process's admin HTTP port at address ("host:port"; port 0 picks a free
// one) when the server listens, closed when it has drained: GET /metrics serves every metric of the
// process. It also serves grpc-go's admin services on the server's gRPC port, channelz and CSDS
// (admin_services.go), unless [WithoutAdminServices]. "" is none (Settings.AdminAddress unset).
// [WithSettings] leaves it out: the admin port is the process's, one per program, not one per server.
func WithAdminAddress(address string) ServerOption {
	return func(o *serverOptions) { o.adminAddress = address }
}

// WithoutAdminServices leaves channelz and CSDS off the gRPC port of a server with an admin address
// (the TypeScript kit's adminServices: false), for a port that callers outside the operators reach.
func WithoutAdminServices() ServerOption {
	return func(o *serverOptions) { o.isAdminServicesOff = true }
}

// WithTracing makes one OpenTelemetry span per inbound call, the child of its caller's (tracing.go),
// and makes a drain flush the spans before it returns. nil (tracing off) installs nothing.
func WithTracing(tracing *Tracing) ServerOption {
	return func(o *serverOptions) { o.tracing = tracing }
}

// WithGRPCServerOptions adds grpc-go server options; protomesh's interceptors run first (outermost).
func WithGRPCServerOptions(options ...grpc.ServerOption) ServerOption {
	return func(o *serverOptions) { o.grpcOptions = append(o.grpcOptions, options...) }
}

// Server is a grpc-go server with what every protomesh service needs: grpc.health.v1, server
// reflection, one log line per call, x-request-id, handlers that never leak a panic or an internal
// error, registration with the control plane and a drain. Register services on it (it is a
// grpc.ServiceRegistrar), then [Server.Listen].
type Server struct {
	name      string
	options   serverOptions
	grpc      *grpc.Server
	health    *health.Server
	logger    *slog.Logger // the server's own lines
	root      *slog.Logger
	longLived longLivedCalls
	services  []string

	mu         sync.Mutex
	listener   net.Listener
	admin      *adminServer
	healthPort *healthPort
	lease      *lease
	renewer    *certificateRenewer
	serveErr   chan error
	onDraining []func()
	drainOnce  sync.Once
	drained    chan struct{}

	// adminServices are the names of the admin services registered by Listen; adminCleanup
	// releases what they hold, once the gRPC server has stopped.
	adminServices []string
	adminCleanup  func()

	// tls is the source of the port's certificate with WithTLS; tlsErr what was wrong with its files.
	tls    *tlsSource
	tlsErr error
	// authorizer decides calls under WithAuthorization's policy or the mesh config's
	// (authorizationOf); set by Listen, before it serves; nil without a policy.
	authorizer *Authorizer
}

// NewServer creates a protomesh server named name (its name in logs, and the mesh service it
// registers as unless WithMeshService says otherwise).
func NewServer(name string, options ...ServerOption) *Server {
	o := serverOptions{drainGrace: DefaultDrainGrace}
	for _, option := range options {
		option(&o)
	}
	if o.logger == nil {
		o.logger = NewLogger(os.Stdout, name, "info")
	}
	if o.meshService == "" {
		o.meshService = name
	}
	root := o.logger.With("server", name)
	s := &Server{
		name:     name,
		options:  o,
		health:   health.NewServer(),
		root:     root,
		logger:   root.With("component", "server"),
		drained:  make(chan struct{}),
		serveErr: make(chan error, 1),
	}
	unary := []grpc.UnaryServerInterceptor{s.unaryObserver}
	stream := []grpc.StreamServerInterceptor{s.streamObserver}
	if o.mayAuthorize() {
		unary = append(unary, s.unaryAuthorization)
		stream = append(stream, s.streamAuthorization)
	}
	if o.adminAddress != "" {
		// Outside the observer, so that a call is counted with the code its caller gets, as in the
		// TypeScript kit: after the guard has made a panic or a raw error INTERNAL and a drain has
		// ended a health Watch UNAVAILABLE (go-grpc-prometheus counts what its handler returns, and
		// a panic through it would be started but never handled).
		metrics := meshMetrics().server
		unary = slices.Insert(unary, 0, metrics.UnaryServerInterceptor())
		stream = slices.Insert(stream, 0, metrics.StreamServerInterceptor())
	}
	grpcOptions := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}
	if o.tracing != nil {
		// A stats handler, which grpc-go runs before the interceptors: the handler's ctx holds the span.
		grpcOptions = append(grpcOptions, grpc.StatsHandler(o.tracing.server))
	}
	if o.tls != nil {
		// Listen returns tlsErr: NewServer has no error to return.
		if s.tls, s.tlsErr = newTLSSource(*o.tls, s.logger); s.tlsErr == nil {
			grpcOptions = append(grpcOptions, grpc.Creds(serverTLSCredentials(s.tls)))
		}
	}
	grpcOptions = append(grpcOptions, o.grpcOptions...)
	s.grpc = grpc.NewServer(grpcOptions...)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	return s
}

// RegisterService registers an application service, as grpc.Server does, and reports its health
// under its full name (NOT_SERVING until Listen).
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.grpc.RegisterService(desc, impl)
	s.services = append(s.services, desc.ServiceName)
	s.health.SetServingStatus(desc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
}

// GRPCServer is the underlying grpc-go server.
func (s *Server) GRPCServer() *grpc.Server { return s.grpc }

// Name is the server's name.
func (s *Server) Name() string { return s.name }

// Logger is the root logger the server logs with (with its "server" field), for handlers' own lines.
func (s *Server) Logger() *slog.Logger { return s.root }

// OnDraining calls listener once a drain has begun (health NOT_SERVING, no new calls), before it
// waits for calls in flight: the moment to end the server's own long-lived streams (watches),
// whose callers then reconnect elsewhere.
func (s *Server) OnDraining(listener func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onDraining = append(s.onDraining, listener)
}

// Listen binds address ("127.0.0.1:0" picks a free port), then with WithHealthAddress the plaintext
// health port, and with WithAdminAddress the admin port and the admin services, serves in the
// background, reports SERVING and, with a control plane, registers and keeps the lease (over mTLS
// with WithTLS, renewing the certificate too). It returns the bound address.
func (s *Server) Listen(address string) (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener != nil {
		return nil, fmt.Errorf("%s: already listening", s.name)
	}
	if s.options.tls != nil {
		if s.tlsErr != nil {
			return nil, fmt.Errorf("%s: %w", s.name, s.tlsErr)
		}
		if err := s.tls.load(); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	policy, err := s.authorizationOf()
	if err != nil {
		return nil, err
	}
	if policy != nil {
		if s.tls == nil {
			return nil, fmt.Errorf("%s: authorization needs TLS: without mTLS no caller has an identity to authorize", s.name)
		}
		s.authorizer = NewAuthorizer(policy, s.tls.trustDomain())
	}
	listener, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", s.name, address, err)
	}
	if s.options.healthAddress != "" {
		port, err := listenHealthPort(s.options.healthAddress, s.health, s.serveErr)
		if err != nil {
			_ = listener.Close()
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		s.healthPort = port
	}
	// closeHealthPort undoes the health port when a later step fails.
	closeHealthPort := func() {
		if s.healthPort != nil {
			s.healthPort.stop()
			s.healthPort = nil
		}
	}
	if s.options.adminAddress != "" {
		admin, err := listenAdmin(s.options.adminAddress, s.logger)
		if err != nil {
			_ = listener.Close()
			closeHealthPort()
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		s.admin = admin
		if !s.options.isAdminServicesOff {
			// Here rather than in NewServer, so that the error is a value (grpc-go takes
			// registrations until Serve).
			names, cleanup, err := registerAdminServices(s.grpc)
			if err != nil {
				_ = listener.Close()
				closeHealthPort()
				admin.close()
				s.admin = nil
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			s.adminServices, s.adminCleanup = names, cleanup
		}
	}
	s.listener = listener
	go func() {
		// Not blocking: the health port may have sent its error first, and ServeUntilSignal takes
		// only one; a blocked send would keep this goroutine past the drain.
		err := s.grpc.Serve(listener)
		select {
		case s.serveErr <- err:
		default:
		}
	}()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	for _, service := range s.services {
		s.health.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	}
	bound := listener.Addr()
	fields := []any{"address", address, "port", bound.(*net.TCPAddr).Port, "services", s.services, "isTLS", s.tls != nil}
	if s.healthPort != nil {
		fields = append(fields, "healthPort", s.healthPort.addr().(*net.TCPAddr).Port)
	}
	s.logger.Info("listening", fields...)
	if s.options.controlPlane != "" {
		healthService := ""
		if len(s.services) > 0 {
			healthService = s.services[0]
		}
		endpoint := leaseEndpoint(s.options.meshService, bound, s.options.zone, s.options.advertiseHost, healthService)
		if s.admin != nil {
			// The control plane's dashboard scrapes it on the registered address (mesh/registry-lease.ts ADMIN_PORT_METADATA).
			if tcp, ok := s.admin.addr().(*net.TCPAddr); ok {
				endpoint.Metadata[AdminPortMetadata] = strconv.Itoa(tcp.Port)
			}
		}
		transport := insecure.NewCredentials()
		if s.tls != nil {
			transport = clientTLSCredentials(s.tls, ControlPlaneService)
		}
		l, err := newLease(s.options.controlPlane, transport, endpoint, s.options.leaseTTL, s.Logger(), s.options.random)
		if err != nil {
			return nil, err
		}
		if s.tls != nil && !s.options.isRenewalOff {
			renewer, err := newCertificateRenewer(s.options.controlPlane, s.tls, s.Logger(), s.options.random)
			if err != nil {
				_ = l.conn.Close()
				return nil, err
			}
			s.renewer = renewer
			renewer.start()
		}
		s.lease = l
		l.start()
	}
	return bound, nil
}

// Addr is the bound address; nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener == nil {
		return nil
	}
	return s.listener.Addr()
}

// AdminAddr is the bound address of the admin HTTP port (GET /metrics); nil without
// WithAdminAddress or before Listen.
func (s *Server) AdminAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		return nil
	}
	return s.admin.addr()
}

// AdminServices are the names of the admin services on the server's gRPC port ([ChannelzServiceName],
// and [CSDSServiceName] when grpc-go's xDS package registered it); nil without WithAdminAddress,
// with WithoutAdminServices, or before Listen.
func (s *Server) AdminServices() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.adminServices)
}

// IsRegistered reports whether the control plane holds this server's lease, as far as it knows.
func (s *Server) IsRegistered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lease != nil && s.lease.isRegistered()
}

// healthFlushDelay is how long a drain lets health Watch streams send NOT_SERVING before ending them.
const healthFlushDelay = 50 * time.Millisecond

// Drain deregisters from the control plane, reports NOT_SERVING (on the plaintext health port too),
// refuses new calls, ends the long-lived streams (health Watch; OnDraining listeners end the rest),
// lets calls in flight finish within the grace period, then stops, cancelling what is left, closes
// the health port, releases the admin services, closes the admin port (which is scraped until
// then) and, with WithTracing, exports the spans ended so far, within another grace period.
// Idempotent: later calls wait for the first.
func (s *Server) Drain() {
	s.drainOnce.Do(func() {
		defer close(s.drained)
		startedAt := time.Now()
		grace := s.options.drainGrace
		s.logger.Info("draining", "graceMs", grace.Milliseconds())
		s.mu.Lock()
		l, renewer, listeners, admin, adminCleanup, healthPort := s.lease, s.renewer, s.onDraining, s.admin, s.adminCleanup, s.healthPort
		s.mu.Unlock()
		if renewer != nil {
			renewer.stop()
		}
		// Leave the mesh first, so that clients stop picking this server before it refuses calls.
		if l != nil {
			l.stop()
		}
		s.health.Shutdown()
		// grpc-go's Watch picks at random between sending NOT_SERVING and ending when both are
		// ready: give the update a moment to go out before the streams are ended.
		time.Sleep(healthFlushDelay)
		stopped := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(stopped)
		}()
		s.longLived.endAll()
		for _, listener := range listeners {
			listener()
		}
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-stopped:
		case <-timer.C:
			s.logger.Warn("grace period over; cancelling calls in flight")
			s.grpc.Stop()
			<-stopped
		}
		// Probes of the plaintext health port have seen NOT_SERVING since the drain began.
		if healthPort != nil {
			healthPort.stop()
		}
		if adminCleanup != nil {
			adminCleanup()
		}
		if admin != nil {
			admin.close()
		}
		if s.options.tracing != nil {
			s.flushSpans(grace)
		}
		s.logger.Info("stopped", "durationMs", time.Since(startedAt).Milliseconds())
	})
	<-s.drained
}

// flushSpans exports the spans of the server's calls, so that a program that exits once it has
// drained loses none; a collector that does not answer is given grace, then left.
func (s *Server) flushSpans(grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := s.options.tracing.flush(ctx); err != nil {
		s.logger.Warn("exporting the spans failed", "err", err.Error())
	}
}

// ServeUntilSignal waits for SIGTERM or SIGINT (or ctx's end), then drains. It returns the error
// that stopped serving early, if any; nil after a drain.
func (s *Server) ServeUntilSignal(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	select {
	case <-ctx.Done():
		s.logger.Info("shutdown requested")
		s.Drain()
		return nil
	case err := <-s.serveErr:
		if errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return err
	}
}

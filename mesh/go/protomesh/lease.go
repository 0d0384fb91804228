package protomesh

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	registryv1 "github.com/protomesh/protomesh/generated/go/protomesh/registry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// Registry lease tunables (mesh/registry-lease.ts).
const (
	// RegistryCallTimeout bounds every registry call: the control plane answers from memory.
	RegistryCallTimeout = 2 * time.Second
	// keepAliveFraction: keep-alives go every third of the TTL, so two may be lost before it expires
	// (as etcd clients do).
	keepAliveFraction = 3
	// registerRetryMax is the longest wait between registrations before any lease was granted: a
	// third of the control plane's default 10 s lease, so that a replica is back within the control
	// plane's warm-up (one lease TTL) after it restarts.
	registerRetryMax = 3 * time.Second
)

// lease is one endpoint's membership in the mesh: it registers, keeps the lease alive every third
// of its TTL, registers again on NOT_FOUND (a control plane restart or an expiry) and deregisters on
// stop. Failures are retried with jittered backoff, never returned: a service keeps serving while
// the control plane is away. It logs one line per change of state, not one per attempt.
type lease struct {
	conn     *grpc.ClientConn
	client   registryv1.RegistryServiceClient
	endpoint *registryv1.Endpoint
	ttl      time.Duration
	logger   *slog.Logger
	random   func() float64

	stopOnce sync.Once
	stopped  chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	leaseID  string
}

// newLease makes the lease of endpoint at controlPlane, reached with transport: plaintext, or mTLS
// requiring the control plane's SPIFFE ID (clientTLSCredentials with ControlPlaneService).
func newLease(controlPlane string, transport credentials.TransportCredentials, endpoint *registryv1.Endpoint, ttl time.Duration, logger *slog.Logger, random func() float64) (*lease, error) {
	retryMax := registerRetryMax
	if ttl > 0 {
		retryMax = ttl / keepAliveFraction
	}
	// The channel's own reconnect backoff is bounded as the lease's retries are (grpc-go grows it to
	// 120 s), so a replica reaches a restarted control plane within a keep-alive interval.
	conn, err := grpc.NewClient(controlPlane,
		grpc.WithTransportCredentials(transport),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: min(time.Second, retryMax), Multiplier: 1.6, Jitter: 0.2, MaxDelay: retryMax},
			MinConnectTimeout: RegistryCallTimeout,
		}))
	if err != nil {
		return nil, err
	}
	if random == nil {
		random = rand.Float64
	}
	return &lease{
		conn:     conn,
		client:   registryv1.NewRegistryServiceClient(conn),
		endpoint: endpoint,
		ttl:      ttl,
		logger:   logger.With("component", "registry-lease", "controlPlane", controlPlane, "service", endpoint.GetService()),
		random:   random,
		stopped:  make(chan struct{}),
		done:     make(chan struct{}),
	}, nil
}

// start registers once (whether or not that works) and keeps the lease from then on, in the background.
func (l *lease) start() {
	retryMax := registerRetryMax
	if l.ttl > 0 {
		retryMax = l.ttl / keepAliveFraction
	}
	retry := ConnectionBackoff(retryMax, l.random)
	wait, registered := l.register(retry, 0)
	failures := 1
	if registered {
		failures = 0
		retry = ConnectionBackoff(wait, l.random)
	}
	go l.run(retry, wait, registered, failures)
}

func (l *lease) run(retry *Backoff, wait time.Duration, registered bool, failures int) {
	defer close(l.done)
	for {
		select {
		case <-l.stopped:
			return
		case <-time.After(wait):
		}
		if !registered {
			wait, registered = l.register(retry, failures)
			if registered {
				failures = 0
				retry = ConnectionBackoff(wait, l.random)
			} else {
				failures++
			}
			continue
		}
		ttl, err := l.keepAlive()
		switch {
		case err == nil:
			if failures > 0 {
				l.logger.Info("keep-alive restored", "failedAttempts", failures)
				failures = 0
				retry.Reset()
			}
			wait = ttl / keepAliveFraction
			retry = ConnectionBackoff(wait, l.random)
		case status.Code(err) == codes.NotFound:
			l.logger.Warn("lease lost (the control plane restarted or let it expire); registering again")
			l.setLeaseID("")
			failures = 0
			wait, registered = 0, false
		default:
			failures++
			wait = retry.Next()
			l.logRetry(failures, err, wait, "keep-alive failed; retrying with backoff")
		}
	}
}

// register makes one attempt; it returns the wait before the next step and whether it registered.
func (l *lease) register(retry *Backoff, failures int) (time.Duration, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), RegistryCallTimeout)
	defer cancel()
	response, err := l.client.Register(ctx, &registryv1.RegisterRequest{Endpoint: l.endpoint, LeaseTtlMs: uint32(l.ttl.Milliseconds())})
	if err != nil {
		wait := retry.Next()
		l.logRetry(failures+1, err, wait, "registration failed; retrying with backoff")
		return wait, false
	}
	l.setLeaseID(response.GetLeaseId())
	granted := time.Duration(response.GetLeaseTtlMs()) * time.Millisecond
	attrs := []any{"endpoint", net.JoinHostPort(l.endpoint.GetAddress(), strconv.Itoa(int(l.endpoint.GetPort()))), "leaseTtlMs", response.GetLeaseTtlMs()}
	if failures > 0 {
		attrs = append(attrs, "failedAttempts", failures)
	}
	l.logger.Info("registered", attrs...)
	return granted / keepAliveFraction, true
}

func (l *lease) keepAlive() (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), RegistryCallTimeout)
	defer cancel()
	response, err := l.client.KeepAlive(ctx, &registryv1.KeepAliveRequest{LeaseId: l.leaseIDNow()})
	if err != nil {
		return 0, err
	}
	return time.Duration(response.GetLeaseTtlMs()) * time.Millisecond, nil
}

// logRetry logs the first failure of a run at warn, the rest at debug.
func (l *lease) logRetry(failures int, err error, wait time.Duration, msg string) {
	st := status.Convert(err)
	attrs := []any{"code", CodeName(st.Code()), "details", st.Message(), "retryInMs", wait.Milliseconds(), "failuresInARow", failures}
	if failures == 1 {
		l.logger.Warn(msg, attrs...)
	} else {
		l.logger.Debug(msg, attrs...)
	}
}

// stop ends the keep-alives and deregisters (bounded by RegistryCallTimeout), then closes the channel.
func (l *lease) stop() {
	l.stopOnce.Do(func() {
		close(l.stopped)
		<-l.done
		if leaseID := l.leaseIDNow(); leaseID != "" {
			ctx, cancel := context.WithTimeout(context.Background(), RegistryCallTimeout)
			_, err := l.client.Deregister(ctx, &registryv1.DeregisterRequest{LeaseId: leaseID})
			cancel()
			if err != nil {
				st := status.Convert(err)
				l.logger.Warn("deregistration failed; the lease will expire", "code", CodeName(st.Code()), "details", st.Message())
			} else {
				l.logger.Info("deregistered")
			}
			l.setLeaseID("")
		}
		_ = l.conn.Close()
	})
}

func (l *lease) setLeaseID(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leaseID = id
}

func (l *lease) leaseIDNow() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leaseID
}

// isRegistered reports whether the control plane holds a lease for this endpoint, as far as this process knows.
func (l *lease) isRegistered() bool { return l.leaseIDNow() != "" }

// AdminPortMetadata is the endpoint metadata key of a server's admin HTTP port, on its registered
// address: the control plane's dashboard scrapes its metrics there.
const AdminPortMetadata = "admin_port"

// leaseEndpoint is the endpoint a server bound to listenAddr registers: advertiseHost, else the bound
// host, else 127.0.0.1 for a wildcard bind (mesh/registry-lease.ts leaseForServer).
func leaseEndpoint(service string, bound net.Addr, zone, advertiseHost, healthService string) *registryv1.Endpoint {
	host, portText, _ := net.SplitHostPort(bound.String())
	port, _ := strconv.Atoi(portText)
	ip := net.ParseIP(host)
	address := advertiseHost
	if address == "" {
		address = host
		if ip == nil || ip.IsUnspecified() {
			address = "127.0.0.1"
		}
	}
	return &registryv1.Endpoint{
		Service:           service,
		Address:           address,
		Port:              uint32(port),
		Zone:              zone,
		Weight:            1,
		Metadata:          map[string]string{"pid": strconv.Itoa(os.Getpid())},
		HealthServiceName: healthService,
	}
}

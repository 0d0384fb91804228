package protomesh_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protomesh/protomesh/mesh/go/protomesh"
	"github.com/protomesh/protomesh/mesh/go/protomesh/protomeshtest"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

const interopServiceName = "protomesh.interop.v1.InteropService"

// grpc-health-probe's exit codes (README "Exit codes"; test/tools/health-probe.test.ts PROBE_EXIT).
const (
	probeServing   = 0
	probeUnhealthy = 4
)

// healthPortServer is a kit server of identityService on mTLS with a plaintext health port, and a
// hold on its drain: once a drain has begun it waits, NOT_SERVING, until release.
type healthPortServer struct {
	server     *protomesh.Server
	service    *identityService
	addr       string // the mTLS gRPC port
	healthAddr string // the plaintext health port
	release    func()
}

func startHealthPortServer(t *testing.T) *healthPortServer {
	t.Helper()
	ca := newTestCA(t, testTrustDomain)
	files := ca.issue(t, "catalog", "catalog", time.Now(), time.Hour)
	server := protomesh.NewServer("catalog", protomesh.WithTLS(files), protomesh.WithHealthAddress("127.0.0.1:0"),
		protomesh.WithLogger(protomesh.NewLogger(io.Discard, "catalog", "info")), protomesh.WithDrainGrace(time.Second))
	held := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(held) }) }
	// OnDraining listeners run after NOT_SERVING and before the drain waits and stops the ports.
	server.OnDraining(func() { <-held })
	service, addr := serveIdentity(t, server)
	// Registered after serveIdentity's Drain, so that it runs first and a failed test never hangs.
	t.Cleanup(release)
	if server.HealthAddr() == nil {
		t.Fatal("HealthAddr is nil after Listen with WithHealthAddress")
	}
	return &healthPortServer{server: server, service: service, addr: addr, healthAddr: server.HealthAddr().String(), release: release}
}

// check makes one plaintext Check of service on the health port.
func (s *healthPortServer) check(t *testing.T, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), tlsCallDeadline)
	defer cancel()
	response, err := healthpb.NewHealthClient(plainConn(t, s.healthAddr)).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	return response.GetStatus(), err
}

// drain begins the server's drain in the background; the returned channel closes when it is done.
func (s *healthPortServer) drain() <-chan struct{} {
	drained := make(chan struct{})
	go func() {
		s.server.Drain()
		close(drained)
	}()
	return drained
}

func TestHealthAddressOfATLSServerAnswersPlaintextChecksAndNothingElse(t *testing.T) {
	s := startHealthPortServer(t)
	for _, service := range []string{"", interopServiceName} {
		if got, err := s.check(t, service); err != nil || got != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("plaintext Check(%q) on the health port: %v %v, want SERVING", service, got, err)
		}
	}
	if _, err, _ := echo(plainConn(t, s.healthAddr)); status.Code(err) != codes.Unimplemented {
		t.Fatalf("Echo on the health port: %v, want UNIMPLEMENTED (the application's methods are not there)", err)
	}
	// The health port opens nothing on the gRPC port: it is still mTLS only.
	assertFailsFast(t, plainConn(t, s.addr))
	if got := s.service.calls.Load(); got != 0 {
		t.Fatalf("handler calls %d, want 0", got)
	}
}

func TestHealthAddressReportsNotServingOnceTheServerDrainsAndClosesWithIt(t *testing.T) {
	s := startHealthPortServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), tlsCallDeadline)
	defer cancel()
	watch, err := healthpb.NewHealthClient(plainConn(t, s.healthAddr)).Watch(ctx, &healthpb.HealthCheckRequest{Service: interopServiceName})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch on the health port: %v %v, want SERVING", first, err)
	}
	drained := s.drain()
	if update, err := watch.Recv(); err != nil || update.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch on the health port once the drain began: %v %v, want NOT_SERVING", update, err)
	}
	// The drain is held: the health port is still open, and every Check there says NOT_SERVING.
	for _, service := range []string{"", interopServiceName} {
		if got, err := s.check(t, service); err != nil || got != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("Check(%q) on the health port while draining: %v %v, want NOT_SERVING", service, got, err)
		}
	}
	s.release()
	select {
	case <-drained:
	case <-time.After(tlsCallDeadline):
		t.Fatalf("the drain did not end within %s", tlsCallDeadline)
	}
	if _, err := watch.Recv(); err == nil {
		t.Fatal("the health port's Watch stream is still open after the drain")
	}
	if got, err := s.check(t, ""); status.Code(err) != codes.Unavailable {
		t.Fatalf("Check on the health port after the drain: %v %v, want UNAVAILABLE (the port closed)", got, err)
	}
}

// The probe as a Kubernetes pod or a load balancer runs it: no TLS flags, the health address alone.
func TestHealthAddressAnswersGrpcHealthProbeWithoutTLSFlags(t *testing.T) {
	probe := protomeshtest.RequireTool(t, "grpc-health-probe")
	s := startHealthPortServer(t)
	run := func(service string) (int, string) {
		t.Helper()
		args := []string{"-addr", s.healthAddr, "-connect-timeout", "2s", "-rpc-timeout", "2s"}
		if service != "" {
			args = append(args, "-service", service)
		}
		out, err := exec.Command(probe, args...).CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		if exit != nil {
			return exit.ExitCode(), string(out)
		}
		return probeServing, string(out)
	}
	for _, service := range []string{"", interopServiceName} {
		if code, out := run(service); code != probeServing {
			t.Fatalf("grpc-health-probe -service %q: exit %d, want %d (SERVING)\n%s", service, code, probeServing, out)
		}
	}
	drained := s.drain()
	protomeshtest.Eventually(t, tlsCallDeadline, "the drain's NOT_SERVING on the health port", func() bool {
		got, err := s.check(t, "")
		return err == nil && got == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if code, out := run(interopServiceName); code != probeUnhealthy {
		t.Fatalf("grpc-health-probe while draining: exit %d, want %d (NOT_SERVING)\n%s", code, probeUnhealthy, out)
	}
	s.release()
	<-drained
}

func TestListenRefusesATakenHealthAddressAndFreesItsPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	server := protomesh.NewServer("catalog", protomesh.WithHealthAddress(taken.Addr().String()),
		protomesh.WithLogger(protomesh.NewLogger(io.Discard, "catalog", "info")))
	defer server.Drain()
	address := "127.0.0.1:" + strconv.Itoa(protomeshtest.FreePort(t))
	if _, err := server.Listen(address); err == nil || !strings.Contains(err.Error(), "health port: listen on "+taken.Addr().String()) {
		t.Fatalf("Listen with a taken health address: %v, want an error naming it", err)
	}
	free, err := net.Listen("tcp", address)
	if err != nil {
		t.Fatalf("the gRPC port %s is still bound after the failed Listen: %v", address, err)
	}
	_ = free.Close()
}

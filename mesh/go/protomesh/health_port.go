package protomesh

import (
	"errors"
	"fmt"
	"net"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// WithHealthAddress opens a plaintext port at address ("host:port"; port 0 picks a free one) when
// the server listens, serving grpc.health.v1 alone with the server's own statuses, for probes that
// cannot present a mesh certificate (a Kubernetes gRPC probe, a load balancer) when the gRPC port is
// mTLS (mesh/server.ts healthAddress). Nothing but health answers there, every other method is
// UNIMPLEMENTED, so mTLS still guards the application's methods. It reports NOT_SERVING from the
// moment a drain begins and closes once the server has stopped. "" is none (Settings.HealthAddress
// unset); [WithSettings] sets it from PROTOMESH_HEALTH_ADDRESS.
func WithHealthAddress(address string) ServerOption {
	return func(o *serverOptions) { o.healthAddress = address }
}

// healthPort is the plaintext health port: a grpc.Server of its own, without the kit's
// interceptors (a probe every few seconds is not worth a call line), serving the health.Server of
// the gRPC port, so that both answer with the same statuses and a drain's NOT_SERVING reaches both.
type healthPort struct {
	grpc     *grpc.Server
	listener net.Listener
}

// listenHealthPort binds address and serves statuses there in the background; a Serve that fails
// later is sent to serveErr (what [Server.ServeUntilSignal] returns) unless an error is there already.
func listenHealthPort(address string, statuses healthpb.HealthServer, serveErr chan<- error) (*healthPort, error) {
	listener, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("health port: listen on %s: %w", address, err)
	}
	server := grpc.NewServer()
	healthpb.RegisterHealthServer(server, statuses)
	go func() {
		// nil after Stop; ErrServerStopped when Stop came first (Serve then closes the listener).
		if err := server.Serve(listener); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			select {
			case serveErr <- fmt.Errorf("health port: %w", err):
			default:
			}
		}
	}()
	return &healthPort{grpc: server, listener: listener}, nil
}

func (p *healthPort) addr() net.Addr { return p.listener.Addr() }

// stop closes the port at once: its only long-lived calls are health Watch streams, which have
// seen NOT_SERVING since the drain began and would hold a GracefulStop open.
func (p *healthPort) stop() { p.grpc.Stop() }

// HealthAddr is the bound address of the plaintext health port; nil without WithHealthAddress or
// before Listen.
func (s *Server) HealthAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.healthPort == nil {
		return nil
	}
	return s.healthPort.addr()
}

package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	interopv1 "github.com/protomesh/protomesh/generated/go/protomesh/interop/v1"
	"github.com/protomesh/protomesh/mesh/go/protomesh"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func serve() error {
	settings, err := protomesh.LoadSettings(nil)
	if err != nil {
		return err
	}
	name := os.Getenv("INTEROP_SERVICE")
	if name == "" {
		name = "interop-" + language
	}
	logger := protomesh.NewLogger(os.Stdout, name, settings.LogLevel)
	server := protomesh.NewServer(name, protomesh.WithSettings(settings), protomesh.WithLogger(logger))
	service := &interopService{settings: settings, logger: server.Logger().With("component", "interop"), conns: map[string]*grpc.ClientConn{}}
	interopv1.RegisterInteropServiceServer(server, service)
	addr, err := server.Listen(settings.ListenAddress(0))
	if err != nil {
		return err
	}
	service.endpoint = endpointOf(addr, settings)
	defer service.close()
	return server.ServeUntilSignal(context.Background())
}

// endpointOf is "<host>:<port>" as the kit registers it.
func endpointOf(addr net.Addr, settings protomesh.Settings) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if settings.AdvertiseHost != "" {
		host = settings.AdvertiseHost
	} else if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

type interopService struct {
	interopv1.UnimplementedInteropServiceServer
	settings protomesh.Settings
	logger   *slog.Logger
	endpoint string

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func (s *interopService) Echo(ctx context.Context, req *interopv1.EchoRequest) (*interopv1.EchoResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	keys := make([]string, 0, len(md))
	for key := range md {
		if strings.HasPrefix(key, "x-interop-") {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	var entries []*interopv1.MetadataEntry
	trailer := metadata.MD{}
	for _, key := range keys {
		for _, value := range md[key] {
			entry := &interopv1.MetadataEntry{Key: key}
			if strings.HasSuffix(key, "-bin") {
				entry.Binary = []byte(value)
			} else {
				entry.Text = value
			}
			entries = append(entries, entry)
			trailer.Append(key, value)
		}
	}
	_ = grpc.SetTrailer(ctx, trailer)
	return &interopv1.EchoResponse{Payload: req.GetPayload(), Metadata: entries, Language: language, Endpoint: s.endpoint}, nil
}

func (s *interopService) Hold(ctx context.Context, req *interopv1.HoldRequest) (*interopv1.HoldResponse, error) {
	hop := &interopv1.Hop{Language: language, Endpoint: s.endpoint, RemainingMs: -1, RequestId: protomesh.RequestIDFrom(ctx)}
	if deadline, ok := ctx.Deadline(); ok {
		hop.RemainingMs = time.Until(deadline).Milliseconds()
	}
	if len(req.GetRelayTo()) > 0 {
		next := req.GetRelayTo()[0]
		conn, err := s.conn(next)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "%s: %v", next, err)
		}
		// No deadline of its own: the kit hands on this call's budget, less its margin.
		response, err := interopv1.NewInteropServiceClient(conn).Hold(ctx, &interopv1.HoldRequest{HoldMs: req.GetHoldMs(), RelayTo: req.GetRelayTo()[1:]})
		if err != nil {
			st := status.Convert(err)
			return nil, status.Error(st.Code(), next+": "+st.Message())
		}
		return &interopv1.HoldResponse{Hops: append([]*interopv1.Hop{hop}, response.GetHops()...)}, nil
	}
	startedAt := time.Now()
	timer := time.NewTimer(time.Duration(req.GetHoldMs()) * time.Millisecond)
	defer timer.Stop()
	reason := "done"
	select {
	case <-timer.C:
	case <-ctx.Done():
		reason = "cancelled"
		if ctx.Err() == context.DeadlineExceeded {
			reason = "deadline"
		}
	}
	s.logger.Info("hold ended", "heldMs", time.Since(startedAt).Milliseconds(), "reason", reason)
	if reason != "done" {
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return &interopv1.HoldResponse{Hops: []*interopv1.Hop{hop}}, nil
}

// conn returns the one channel to a mesh service, dialled by name through the kit.
func (s *interopService) conn(name string) (*grpc.ClientConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if conn, ok := s.conns[name]; ok {
		return conn, nil
	}
	conn, err := protomesh.Dial(name, protomesh.DialSettings(s.settings), protomesh.DialLogger(s.logger))
	if err != nil {
		return nil, err
	}
	s.conns[name] = conn
	return conn, nil
}

func (s *interopService) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, conn := range s.conns {
		_ = conn.Close()
	}
}

package protomesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// internalDetails are the details a caller sees when a handler fails unexpectedly; the cause goes
// to the log only (mesh/errors.ts INTERNAL_DETAILS).
const internalDetails = "internal error"

// meshServices are the services every protomesh server hosts for the mesh's own use (health,
// reflection, ORCA load reports), as the TypeScript kit's MESH_SERVICES: the control plane's probes
// call them every second on every endpoint, so their calls log at debug, unless they fail, and get
// no trace span (tracing.go).
var meshServices = []string{
	"grpc.health.v1.Health",
	"grpc.reflection.v1.ServerReflection",
	"grpc.reflection.v1alpha.ServerReflection",
	"xds.service.orca.v3.OpenRcaService",
}

// unaryObserver is the server's call observer for unary calls (mesh/observer-server.ts): it takes
// the call's x-request-id (or makes one), sets it on the metadata the handler sees, echoes it in
// the response headers, opens the call's context for its outbound calls, guards the handler and
// logs one line when the call ends.
func (s *Server) unaryObserver(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	startedAt := time.Now()
	ctx, requestID := s.openCall(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDKey, requestID))
	resp, err := s.guard(ctx, info.FullMethod, func() (any, error) { return handler(ctx, req) })
	s.logCall(ctx, info.FullMethod, requestID, startedAt, err)
	return resp, err
}

// streamObserver is unaryObserver for streaming calls. Health Watch streams are long-lived: a
// drain ends them, so that their callers look elsewhere instead of holding the server open.
func (s *Server) streamObserver(srv any, stream grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	startedAt := time.Now()
	ctx, requestID := s.openCall(stream.Context())
	_ = stream.SetHeader(metadata.Pairs(RequestIDKey, requestID))
	var endedByDrain func() bool
	if info.FullMethod == healthWatchMethod {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		endedByDrain = s.longLived.add(cancel)
	}
	_, err := s.guard(ctx, info.FullMethod, func() (any, error) {
		return nil, handler(srv, &observedStream{ServerStream: stream, ctx: ctx})
	})
	if endedByDrain != nil && endedByDrain() {
		err = status.Error(codes.Unavailable, "server is shutting down")
	}
	s.logCall(ctx, info.FullMethod, requestID, startedAt, err)
	return err
}

func (s *Server) openCall(ctx context.Context) (context.Context, string) {
	md, _ := metadata.FromIncomingContext(ctx)
	requestID := requestIDFrom(md)
	md = md.Copy()
	md.Set(RequestIDKey, requestID)
	ctx = metadata.NewIncomingContext(ctx, md)
	deadline, _ := ctx.Deadline()
	return withInboundCall(ctx, &inboundCall{requestID: requestID, deadline: deadline}), requestID
}

// guard runs a handler so that nothing but a chosen status reaches the caller: a panic or an error
// that is not a gRPC status becomes INTERNAL "internal error", its cause logged
// (mesh/handler-guard.ts); the context's own end keeps its code (CANCELLED, DEADLINE_EXCEEDED).
func (s *Server) guard(ctx context.Context, method string, run func() (any, error)) (resp any, err error) {
	defer func() {
		if recovered := recover(); recovered != nil {
			s.logger.Error("handler panicked", "method", method, "err", fmt.Sprint(recovered))
			resp, err = nil, status.Error(codes.Internal, internalDetails)
		}
	}()
	resp, err = run()
	if err == nil {
		return resp, nil
	}
	if _, ok := status.FromError(err); ok {
		return resp, err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return resp, status.FromContextError(err).Err()
	}
	s.logger.Error("handler failed", "method", method, "err", err.Error())
	return nil, status.Error(codes.Internal, internalDetails)
}

// logCall writes the call's one line: service, method, code, durationMs, peer, requestId
// (mesh/sink-log.ts); server failures at warn with the details, health and reflection at debug.
func (s *Server) logCall(ctx context.Context, fullMethod, requestID string, startedAt time.Time, err error) {
	st := status.Convert(err)
	service, method := splitMethod(fullMethod)
	level := slog.LevelInfo
	if slices.Contains(meshServices, service) {
		level = slog.LevelDebug
	}
	attrs := callAttrs(service, method, st.Code(), startedAt, peerOf(ctx), requestID)
	msg := "call"
	if IsServerFailure(st.Code()) {
		level = max(level, slog.LevelWarn)
		msg = "call failed"
		attrs = append(attrs, slog.String("details", st.Message()))
	}
	s.logger.LogAttrs(context.Background(), level, msg, attrs...)
}

func callAttrs(service, method string, code codes.Code, startedAt time.Time, peer, requestID string) []slog.Attr {
	return []slog.Attr{
		slog.String("service", service),
		slog.String("method", method),
		slog.String("code", CodeName(code)),
		slog.Float64("durationMs", elapsedMs(startedAt)),
		slog.String("peer", peer),
		slog.String("requestId", requestID),
	}
}

// elapsedMs is the time since startedAt in ms with µs precision, as mesh/observer.ts elapsedMs.
func elapsedMs(startedAt time.Time) float64 {
	return float64(time.Since(startedAt).Microseconds()) / 1000
}

func peerOf(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// splitMethod splits "/pkg.Service/Method" into its service and method names.
func splitMethod(fullMethod string) (service, method string) {
	trimmed := strings.TrimPrefix(fullMethod, "/")
	if i := strings.LastIndex(trimmed, "/"); i >= 0 {
		return trimmed[:i], trimmed[i+1:]
	}
	return "", trimmed
}

type observedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *observedStream) Context() context.Context { return s.ctx }

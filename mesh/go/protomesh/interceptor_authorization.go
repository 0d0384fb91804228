package protomesh

import (
	"context"

	"google.golang.org/grpc"
)

// The server's authorization interceptors enforce its policy ([WithAuthorization]) before the
// handler and the interceptors after them (mesh/interceptor-authorization.ts): a refused call is
// answered PERMISSION_DENIED or UNAUTHENTICATED and its handler never runs. They sit right inside
// the call observer, which logs and counts the refusal like any call. Calls of the mesh's own
// services pass through.

func (s *Server) unaryAuthorization(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := s.authorize(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) streamAuthorization(srv any, stream grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := s.authorize(stream.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, stream)
}

// authorize decides a call by its caller's SPIFFE ID. The authorizer is set by Listen before it
// serves; nil when the server has no policy (none given, or none for it in the mesh config).
func (s *Server) authorize(ctx context.Context, fullMethod string) error {
	if s.authorizer == nil {
		return nil
	}
	id, _ := PeerIdentity(ctx)
	return s.authorizer.Authorize(fullMethod, id)
}

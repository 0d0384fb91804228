package protomesh

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// clientObserver is the client's interceptor (mesh/observer-client.ts with mesh/deadlines.ts): it
// gives the call its deadline, sends it with an x-request-id (the caller's; else, inside a
// handler, the inbound call's; else a new one) and logs one line when its status arrives.
type clientObserver struct {
	logger    *slog.Logger
	deadlines deadlinePolicy
}

func (c *clientObserver) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	startedAt := time.Now()
	ctx, cancel := c.deadlines.withDeadline(ctx, method)
	defer cancel()
	ctx, requestID := outboundRequestID(ctx)
	var answered peer.Peer
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Peer(&answered))...)
	c.log(method, requestID, startedAt, &answered, err)
	return err
}

func (c *clientObserver) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	startedAt := time.Now()
	ctx, cancel := c.deadlines.withDeadline(ctx, method)
	ctx, requestID := outboundRequestID(ctx)
	answered := &peer.Peer{}
	stream, err := streamer(ctx, desc, cc, method, append(opts, grpc.Peer(answered))...)
	if err != nil {
		cancel()
		c.log(method, requestID, startedAt, answered, err)
		return nil, err
	}
	return &observedClientStream{ClientStream: stream, end: func(err error) {
		cancel()
		c.log(method, requestID, startedAt, answered, err)
	}}, nil
}

func (c *clientObserver) log(fullMethod, requestID string, startedAt time.Time, answered *peer.Peer, err error) {
	st := status.Convert(err)
	service, method := splitMethod(fullMethod)
	peerAddr := ""
	if answered.Addr != nil {
		peerAddr = answered.Addr.String()
	}
	attrs := callAttrs(service, method, st.Code(), startedAt, peerAddr, requestID)
	if IsServerFailure(st.Code()) {
		c.logger.LogAttrs(context.Background(), slog.LevelWarn, "outbound call failed", append(attrs, slog.String("details", st.Message()))...)
		return
	}
	c.logger.LogAttrs(context.Background(), slog.LevelInfo, "outbound call", attrs...)
}

// outboundRequestID sets the call's x-request-id on its outgoing metadata and returns it.
func outboundRequestID(ctx context.Context) (context.Context, string) {
	md, _ := metadata.FromOutgoingContext(ctx)
	if values := md.Get(RequestIDKey); len(values) > 0 {
		if acceptableRequestID.MatchString(values[0]) {
			return ctx, values[0]
		}
		// The caller's own id is unusable (as a server would judge it): replaced, not passed on.
		md = md.Copy()
		md.Delete(RequestIDKey)
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	var requestID string
	if inbound := inboundCallFrom(ctx); inbound != nil {
		requestID = inbound.requestID
	} else {
		requestID = requestIDFrom(nil)
	}
	return metadata.AppendToOutgoingContext(ctx, RequestIDKey, requestID), requestID
}

// observedClientStream reports the stream's end once: its status from RecvMsg (io.EOF is OK).
type observedClientStream struct {
	grpc.ClientStream
	once sync.Once
	end  func(error)
}

func (s *observedClientStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		s.once.Do(func() {
			if errors.Is(err, io.EOF) {
				s.end(nil)
			} else {
				s.end(err)
			}
		})
	}
	return err
}

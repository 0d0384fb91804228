package protomesh

import (
	"context"
	"time"
)

// inboundCall is what a server's interceptor knows of the call being handled, carried in the
// handler's context so that the calls it makes inherit its request id and budget (mesh/call-context.ts).
type inboundCall struct {
	requestID string
	// deadline is the inbound call's own deadline; zero when it has none.
	deadline time.Time
}

type inboundCallKey struct{}

func withInboundCall(ctx context.Context, call *inboundCall) context.Context {
	return context.WithValue(ctx, inboundCallKey{}, call)
}

func inboundCallFrom(ctx context.Context) *inboundCall {
	call, _ := ctx.Value(inboundCallKey{}).(*inboundCall)
	return call
}

// RequestIDFrom returns the x-request-id of the inbound call ctx belongs to, "" outside one.
func RequestIDFrom(ctx context.Context) string {
	if call := inboundCallFrom(ctx); call != nil {
		return call.requestID
	}
	return ""
}

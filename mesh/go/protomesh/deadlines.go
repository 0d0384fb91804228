package protomesh

import (
	"context"
	"time"
)

// Deadline defaults (mesh/deadlines.ts).
const (
	// DefaultDeadline is an outbound call's deadline when neither the caller nor the method's
	// configuration names one.
	DefaultDeadline = 5 * time.Second
	// DefaultDeadlineMargin is what an outbound call made while handling an inbound call leaves
	// unused of that call's remaining budget: the time this hop needs to turn the downstream answer
	// into its own, so that a downstream call that uses its whole budget still leaves this hop time
	// to answer before its own caller gives up.
	DefaultDeadlineMargin = 10 * time.Millisecond
)

// deadlinePolicy gives every outbound call a deadline.
type deadlinePolicy struct {
	defaultTimeout time.Duration
	methods        map[string]time.Duration // by full path or method name
	margin         time.Duration
}

// withDeadline returns ctx bounded as mesh/deadlines.ts resolveDeadline does. Inside a handler
// (ctx from an inbound call): no later than the inbound deadline − margin, and a caller's shorter
// deadline wins; an inbound call without a deadline leaves the policy's timeout. Outside one: the
// caller's deadline, else now + the policy's timeout for the method. Cancelling the inbound call
// cancels the outbound one, since ctx descends from it.
func (p deadlinePolicy) withDeadline(ctx context.Context, fullMethod string) (context.Context, context.CancelFunc) {
	deadline, hasDeadline := ctx.Deadline()
	if inbound := inboundCallFrom(ctx); inbound != nil && !inbound.deadline.IsZero() {
		budget := inbound.deadline.Add(-p.margin)
		// The context's deadline is the inbound one unless the caller set a shorter one.
		if !hasDeadline || !deadline.Before(inbound.deadline) {
			return context.WithDeadline(ctx, budget)
		}
		return context.WithDeadline(ctx, minTime(deadline, budget))
	}
	if hasDeadline {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, p.timeoutFor(fullMethod))
}

func (p deadlinePolicy) timeoutFor(fullMethod string) time.Duration {
	if timeout, ok := p.methods[fullMethod]; ok {
		return timeout
	}
	if _, method := splitMethod(fullMethod); p.methods[method] > 0 {
		return p.methods[method]
	}
	return p.defaultTimeout
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

package protomesh

import (
	"context"
	"sync"
)

// longLivedCalls are the streams a drain ends instead of waiting for (health Watch): they never end
// on their own, and GracefulStop would otherwise wait the whole grace period for them.
type longLivedCalls struct {
	mu      sync.Mutex
	next    int
	cancels map[int]context.CancelFunc
	isEnded bool
}

// add tracks a call until the returned function is called, when the call is over; that function
// reports whether the drain ended the call.
func (l *longLivedCalls) add(cancel context.CancelFunc) (endedByDrain func() bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isEnded {
		cancel()
		return func() bool { return true }
	}
	if l.cancels == nil {
		l.cancels = make(map[int]context.CancelFunc)
	}
	id := l.next
	l.next++
	l.cancels[id] = cancel
	return func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.cancels, id)
		return l.isEnded
	}
}

// endAll cancels every tracked call, and every one added from now on.
func (l *longLivedCalls) endAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.isEnded = true
	for _, cancel := range l.cancels {
		cancel()
	}
}

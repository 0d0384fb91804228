package protomesh

import (
	"math"
	"time"
)

// Backoff is exponential backoff with jitter, as gRPC's connection backoff defines it
// (grpc/grpc doc/connection-backoff.md) and mesh/backoff.ts computes it: the first wait Initial,
// each next one Multiplier times longer up to Max, each randomised by ±Jitter, the first one too, so
// that replicas failing together (a control plane restarting under all of them) do not retry together.
type Backoff struct {
	Initial    time.Duration
	Multiplier float64
	Jitter     float64
	Max        time.Duration
	// Random returns a number in [0, 1); tests pin it.
	Random func() float64

	current time.Duration
}

// ConnectionBackoff returns gRPC's connection backoff (1 s, ×1.6, ±0.2) capped at max.
func ConnectionBackoff(max time.Duration, random func() float64) *Backoff {
	return &Backoff{Initial: min(time.Second, max), Multiplier: 1.6, Jitter: 0.2, Max: max, Random: random}
}

// Next returns the wait before the next attempt; the one after will be longer, up to Max.
func (b *Backoff) Next() time.Duration {
	if b.current == 0 {
		b.current = b.Initial
	}
	wait := float64(b.current) * (1 + b.Jitter*(2*b.Random()-1))
	b.current = time.Duration(math.Min(float64(b.current)*b.Multiplier, float64(b.Max)))
	return max(time.Millisecond, time.Duration(wait))
}

// Reset starts over from the first wait (after an attempt succeeded).
func (b *Backoff) Reset() { b.current = 0 }

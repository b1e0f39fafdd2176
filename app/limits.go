package app

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimiter is a token bucket per key.
type RateLimiter interface {
	// Allow takes a token from key's bucket. When none is left it reports
	// how long until one is.
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error)
}

// FailureCounter counts failures per key in a sliding window.
type FailureCounter interface {
	// Blocked reports whether key has reached the limit, and for how long.
	Blocked(ctx context.Context, key string) (blocked bool, retryAfter time.Duration, err error)
	// Fail records one failure.
	Fail(ctx context.Context, key string) error
	// Reset forgets key's failures (after a success).
	Reset(ctx context.Context, key string) error
}

// Unlimited is the limiter and counter of PAPO_LIMITS=off.
type Unlimited struct{}

func (Unlimited) Allow(context.Context, string) (bool, time.Duration, error) { return true, 0, nil }
func (Unlimited) Blocked(context.Context, string) (bool, time.Duration, error) {
	return false, 0, nil
}
func (Unlimited) Fail(context.Context, string) error  { return nil }
func (Unlimited) Reset(context.Context, string) error { return nil }

// MemoryRateLimiter keeps token buckets in this process.
type MemoryRateLimiter struct {
	every rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewMemoryRateLimiter allows perSecond on average with bursts of burst.
func NewMemoryRateLimiter(perSecond float64, burst int) *MemoryRateLimiter {
	if burst < 1 {
		burst = 1
	}
	return &MemoryRateLimiter{every: rate.Limit(perSecond), burst: burst, buckets: map[string]*bucket{}}
}

func (l *MemoryRateLimiter) Allow(_ context.Context, key string) (bool, time.Duration, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b := l.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.every, l.burst)}
		l.buckets[key] = b
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d, nil
	}
	return true, 0, nil
}

// sweep forgets buckets that have been full for a while, so the map does
// not grow with every user ever seen.
func (l *MemoryRateLimiter) sweep(now time.Time) {
	if now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	refill := time.Duration(float64(l.burst)/float64(l.every)*float64(time.Second)) + time.Minute
	for k, b := range l.buckets {
		if now.Sub(b.seen) > refill {
			delete(l.buckets, k)
		}
	}
}

// MemoryFailureCounter keeps failure windows in this process.
type MemoryFailureCounter struct {
	max    int
	window time.Duration

	mu       sync.Mutex
	failures map[string][]time.Time
	swept    time.Time
}

// NewMemoryFailureCounter blocks a key after max failures within window.
func NewMemoryFailureCounter(max int, window time.Duration) *MemoryFailureCounter {
	return &MemoryFailureCounter{max: max, window: window, failures: map[string][]time.Time{}}
}

func (c *MemoryFailureCounter) Blocked(_ context.Context, key string) (bool, time.Duration, error) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	recent := c.prune(key, now)
	if c.max <= 0 || len(recent) < c.max {
		return false, 0, nil
	}
	// Free again when the oldest failure that keeps it at the limit ages out.
	return true, recent[len(recent)-c.max].Add(c.window).Sub(now), nil
}

func (c *MemoryFailureCounter) Fail(_ context.Context, key string) error {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweep(now)
	c.failures[key] = append(c.prune(key, now), now)
	return nil
}

func (c *MemoryFailureCounter) Reset(_ context.Context, key string) error {
	c.mu.Lock()
	delete(c.failures, key)
	c.mu.Unlock()
	return nil
}

func (c *MemoryFailureCounter) prune(key string, now time.Time) []time.Time {
	ts := c.failures[key]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= c.window {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(c.failures, key)
		return nil
	}
	c.failures[key] = ts
	return ts
}

func (c *MemoryFailureCounter) sweep(now time.Time) {
	if now.Sub(c.swept) < time.Minute {
		return
	}
	c.swept = now
	for k := range c.failures {
		c.prune(k, now)
	}
}

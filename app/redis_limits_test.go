package app

import (
	"context"
	"testing"
	"time"
)

// TestRedisRateLimiterIsSharedAndFallsBack: two instances' limiters share
// one bucket, and while Redis is unreachable each counts on its own
// instead of failing the request.
func TestRedisRateLimiterIsSharedAndFallsBack(t *testing.T) {
	url := requireRedis(t)
	prefix := testPrefix(t, url)
	proxy, proxied := newFlakyProxy(t, url)
	log, logs := newTestLog(t)
	limiter := func() *RedisRateLimiter {
		rdb, err := newRedisClient(proxied, "papotest:", log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		return NewRedisRateLimiter(rdb, prefix, 1, 3, log)
	}
	a, b := limiter(), limiter()
	ctx := context.Background()
	allowed := 0
	for i := 0; i < 3; i++ {
		for _, l := range []*RedisRateLimiter{a, b} {
			ok, after, err := l.Allow(ctx, "messages:7")
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				allowed++
			} else if after <= 0 || after > 2*time.Second {
				t.Fatalf("retry after %v", after)
			}
		}
	}
	if allowed != 3 {
		t.Fatalf("two instances allowed %d of a shared burst of 3", allowed)
	}
	// Another key has its own bucket.
	if ok, _, _ := a.Allow(ctx, "messages:8"); !ok {
		t.Fatal("another user was limited")
	}

	proxy.cut()
	ok, _, err := a.Allow(ctx, "messages:9")
	if err != nil || !ok {
		t.Fatalf("with Redis down: %v, %v; want a local decision", ok, err)
	}
	if logs.count("redis unreachable") != 1 {
		t.Fatal("the outage was not logged once")
	}
	proxy.restore()
	eventually(t, 10*time.Second, "the limiter to use Redis again", func() bool {
		_, _, _ = a.Allow(ctx, "messages:10")
		return logs.count("redis reachable again") == 1
	})
}

func TestRedisFailureCounterSlidingWindow(t *testing.T) {
	url := requireRedis(t)
	prefix := testPrefix(t, url)
	log, _ := newTestLog(t)
	rdb, err := newRedisClient(url, "papotest:", log)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx := context.Background()
	c := NewRedisFailureCounter(rdb, prefix, 3, 400*time.Millisecond, log)
	other := NewRedisFailureCounter(rdb, prefix, 3, 400*time.Millisecond, log) // another instance
	for i := 0; i < 2; i++ {
		_ = c.Fail(ctx, "login:ana")
	}
	if blocked, _, _ := other.Blocked(ctx, "login:ana"); blocked {
		t.Fatal("blocked after 2 of 3")
	}
	_ = other.Fail(ctx, "login:ana")
	blocked, after, err := c.Blocked(ctx, "login:ana")
	if err != nil || !blocked || after <= 0 || after > 400*time.Millisecond {
		t.Fatalf("after 3 failures on two instances: %v %v %v", blocked, after, err)
	}
	eventually(t, 5*time.Second, "the window to pass", func() bool {
		b, _, _ := c.Blocked(ctx, "login:ana")
		return !b
	})
	_ = c.Fail(ctx, "login:ana")
	_ = c.Reset(ctx, "login:ana")
	if n, _ := rdb.Exists(ctx, prefix+"failures:login:ana").Result(); n != 0 {
		t.Fatal("reset left the key")
	}
}

// Requests that come together take their tokens in one script call, each
// answered as a call of its own would have been, in the order they came.
func TestRedisRateLimiterChecksABurstInOneCall(t *testing.T) {
	srv, rdb := privateRedisClient(t)
	log, _ := newTestLog(t)
	l := NewRedisRateLimiter(rdb, "papotest:", 1.0/3600, 3, log) // three, then one an hour
	ctx := context.Background()
	keys := []string{"ana", "ana", "bia", "ana", "ana", "bia"}
	want := []bool{true, true, true, true, false, true}
	type answer struct {
		ok    bool
		after time.Duration
		err   error
	}
	got := make([]answer, len(keys))
	calls := make([]func(), len(keys))
	for i, key := range keys {
		calls[i] = func() {
			ok, after, err := l.Allow(ctx, key)
			got[i] = answer{ok, after, err}
		}
	}

	// One, and perhaps a NOSCRIPT first.
	if n := callsForQueued(t, srv.url, &l.checks, calls); n > 2 {
		t.Errorf("%d requests took %d script calls", len(keys), n)
	}
	for i, a := range got {
		if a.err != nil || a.ok != want[i] {
			t.Fatalf("request %d (%s): allowed %v, %v; want %v", i, keys[i], a.ok, a.err, want[i])
		}
		if !a.ok && (a.after < 59*time.Minute || a.after > time.Hour) {
			t.Fatalf("request %d: retry after %v, want about an hour", i, a.after)
		}
	}
}

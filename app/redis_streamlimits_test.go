package app

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// TestRedisStreamCapsAreClusterWide: two instances share the caps; an
// instance keeps its slots by renewing them, and those of one that died
// lapse; while Redis is unreachable each instance counts on its own.
func TestRedisStreamCapsAreClusterWide(t *testing.T) {
	url := requireRedis(t)
	prefix := testPrefix(t, url)
	proxy, proxied := newFlakyProxy(t, url)
	log, logs := newTestLog(t)
	const ttl = 600 * time.Millisecond
	limits := Limits{Enabled: true, StreamsPerUser: 2, StreamsPerAddress: 3}
	instance := func(name string) *RedisStreamLimits {
		rdb, err := newRedisClient(proxied, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		s := newRedisStreamLimits(rdb, prefix, name, limits, ttl, log)
		t.Cleanup(s.Close)
		return s
	}
	a, b := instance("a"), instance("b")
	ctx := context.Background()
	take := func(s *RedisStreamLimits, user int64, addr string) func() {
		t.Helper()
		release, err := s.Acquire(ctx, user, addr)
		if err != nil {
			t.Fatalf("user %d from %s on %s: %v", user, addr, s.instance, err)
		}
		return release
	}
	refused := func(s *RedisStreamLimits, user int64, addr, why string) {
		t.Helper()
		release, err := s.Acquire(ctx, user, addr)
		if err == nil {
			release()
			t.Fatalf("user %d from %s on %s was let in: %s", user, addr, s.instance, why)
		}
		if e := AsError(err); e.Code != "too_many_streams" || e.RetryAfter <= 0 {
			t.Fatalf("refusal: %+v", e)
		}
	}

	// Per user, over both instances.
	take(a, 1, "10.0.0.1")
	onB := take(b, 1, "10.0.0.2")
	refused(a, 1, "10.0.0.3", "a third stream of a user capped at 2")
	onB()
	onB() // a second release is harmless
	take(a, 1, "10.0.0.3")

	// Per address, over both instances.
	take(a, 2, "192.0.2.9")
	take(b, 3, "192.0.2.9")
	take(a, 4, "192.0.2.9")
	refused(b, 5, "192.0.2.9", "a fourth stream from an address capped at 3")

	// Renewed slots outlive the TTL.
	time.Sleep(3 * ttl)
	refused(b, 1, "10.0.0.4", "user 1 still holds two streams")

	// An instance that stops renewing (as one killed would) loses its
	// slots within the TTL: user 1 held one on a, and a is now gone.
	a.Close()
	eventually(t, 5*ttl, "the dead instance's slots to lapse", func() bool {
		release, err := b.Acquire(ctx, 1, "10.0.0.5")
		if err != nil {
			return false
		}
		release()
		return true
	})

	// Redis unreachable: counted here, not refused, and logged once. On a
	// loaded machine a renewal can miss its deadline (a third of this short
	// TTL) and log an outage of its own, and its end: so b must be up when
	// the cut comes, and only what is logged from the cut on counts.
	eventually(t, 5*time.Second, "b to reach Redis before the cut", func() bool {
		_, err := b.down.o.down()
		return err == nil
	})
	downBefore, upBefore := logs.count("redis unreachable"), logs.count("redis reachable again")
	proxy.cut()
	r1 := take(b, 9, "198.51.100.1")
	take(b, 9, "198.51.100.1")
	refused(b, 9, "198.51.100.1", "the local count still caps while Redis is down")
	r1()
	if n := logs.count("redis unreachable") - downBefore; n != 1 {
		t.Fatalf("the outage was logged %d times, want once", n)
	}
	proxy.restore()
	eventually(t, 10*time.Second, "the caps to use Redis again", func() bool {
		release, err := b.Acquire(ctx, 10, "198.51.100.2")
		if err == nil {
			release()
		}
		return logs.count("redis reachable again")-upBefore == 1
	})
}

// Streams that open together take their slots in one script call, each
// answered as if it had asked alone, in the order they asked.
func TestRedisStreamSlotsOfAStormInOneCall(t *testing.T) {
	srv, rdb := privateRedisClient(t)
	log, _ := newTestLog(t)
	// Renewals far apart, so that the calls counted are the streams'.
	s := newRedisStreamLimits(rdb, "papotest:", "a", Limits{Enabled: true, StreamsPerUser: 2, StreamsPerAddress: 3}, time.Hour, log)
	t.Cleanup(s.Close)
	ctx := context.Background()
	asks := []struct {
		user  int64
		addr  string
		taken bool
	}{
		{1, "10.0.0.1", true},
		{1, "10.0.0.2", true},
		{1, "10.0.0.3", false}, // the user's third
		{2, "192.0.2.9", true},
		{3, "192.0.2.9", true},
		{4, "192.0.2.9", true},
		{5, "192.0.2.9", false}, // the address's fourth
		{6, "10.0.0.3", true},
	}
	got := make([]error, len(asks))
	calls := make([]func(), len(asks))
	for i, a := range asks {
		calls[i] = func() { _, got[i] = s.Acquire(ctx, a.user, a.addr) }
	}

	// One, and perhaps a NOSCRIPT first.
	if n := callsForQueued(t, srv.url, &s.slots, calls); n > 2 {
		t.Errorf("%d streams took %d script calls", len(asks), n)
	}
	for i, a := range asks {
		if taken := got[i] == nil; taken != a.taken {
			t.Errorf("stream %d (user %d from %s): taken %v, want %v (%v)", i, a.user, a.addr, taken, a.taken, got[i])
		}
	}
	s.mu.Lock()
	held := len(s.held)
	s.mu.Unlock()
	if held != 6 {
		t.Errorf("%d slots held, want 6", held)
	}
}

// TestRedisStreamSlotsOfClosingStreamsGoBackInOneCall: streams that close
// together (a proxy restart drops them all) give their slots back in one
// call, and a client that reconnects at once finds them free.
func TestRedisStreamSlotsOfClosingStreamsGoBackInOneCall(t *testing.T) {
	srv, rdb := privateRedisClient(t)
	log, _ := newTestLog(t)
	s := newRedisStreamLimits(rdb, "papotest:", "a", Limits{Enabled: true, StreamsPerUser: 3, StreamsPerAddress: 5}, time.Hour, log)
	t.Cleanup(s.Close)
	ctx := context.Background()
	streams := []struct {
		user int64
		addr string
	}{{1, "10.0.0.1"}, {1, "10.0.0.2"}, {1, "10.0.0.3"}, {2, "192.0.2.9"}, {3, "192.0.2.9"}, {4, "192.0.2.9"}}
	calls := make([]func(), len(streams))
	for i, st := range streams {
		release, err := s.Acquire(ctx, st.user, st.addr)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		calls[i] = release
	}
	if _, err := s.Acquire(ctx, 1, "10.0.0.4"); err == nil {
		t.Fatal("user 1 took a fourth stream with a cap of three")
	}

	// One, and perhaps a NOSCRIPT first.
	if n := callsForQueued(t, srv.url, &s.releases, calls); n > 2 {
		t.Errorf("%d closing streams took %d script calls", len(streams), n)
	}
	keys, err := rdb.Keys(ctx, "papotest:streams:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if n := rdb.ZCard(ctx, k).Val(); n != 0 {
			t.Errorf("%s holds %d slots after every stream closed", k, n)
		}
	}
	s.mu.Lock()
	held := len(s.held)
	s.mu.Unlock()
	if held != 0 {
		t.Errorf("%d slots still renewed after every stream closed", held)
	}
	for i := range 3 {
		if _, err := s.Acquire(ctx, 1, "10.0.0."+strconv.Itoa(i+1)); err != nil {
			t.Errorf("user 1 reconnecting, stream %d: %v", i, err)
		}
	}
}

package app

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
		rdb, err := newRedisClient(proxied, "papotest:", log)
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
	a.stopRenewal()
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
	if held := heldStreams(s); held != 6 {
		t.Errorf("%d streams held, want 6", held)
	}
}

// heldStreams is how many streams s counts as its own.
func heldStreams(s *RedisStreamLimits) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for f, c := range s.held {
		if strings.HasPrefix(f, "u:") {
			n += c
		}
	}
	return n
}

// redisCounts is the totals and each instance's record, field by field.
func redisCounts(t *testing.T, rdb redis.UniversalClient, prefix string) map[string]map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, prefix+"streams:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, k := range keys {
		if rdb.Type(ctx, k).Val() != "hash" {
			continue
		}
		out[strings.TrimPrefix(k, prefix+"streams:")] = rdb.HGetAll(ctx, k).Val()
	}
	return out
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
	for key, fields := range redisCounts(t, rdb, "papotest:") {
		if len(fields) != 0 {
			t.Errorf("%s still counts %v after every stream closed", key, fields)
		}
	}
	if held := heldStreams(s); held != 0 {
		t.Errorf("%d streams still held after every stream closed", held)
	}
	for i := range 3 {
		if _, err := s.Acquire(ctx, 1, "10.0.0."+strconv.Itoa(i+1)); err != nil {
			t.Errorf("user 1 reconnecting, stream %d: %v", i, err)
		}
	}
}

// Holding streams costs Redis a heartbeat per renewal, however many
// streams there are: a renewal of an instance holding 300 streams runs as
// many commands as one holding 3.
func TestRedisStreamRenewalCostsTheSameForAnyNumberOfStreams(t *testing.T) {
	srv, rdb := privateRedisClient(t)
	log, _ := newTestLog(t)
	ctx := context.Background()
	perRenewal := func(streams int) int {
		t.Helper()
		name := fmt.Sprintf("i%d", streams)
		s := newRedisStreamLimits(rdb, "papotest:", name, Limits{Enabled: true, StreamsPerUser: 1000, StreamsPerAddress: 1000}, time.Hour, log)
		t.Cleanup(s.Close)
		for i := range streams {
			if _, err := s.Acquire(ctx, int64(i%50), fmt.Sprintf("10.0.%d.%d", i/250, i%250)); err != nil {
				t.Fatal(err)
			}
		}
		anyButInfo := func(name string) bool { return name != "info" }
		before := commandCalls(t, srv.url, anyButInfo)
		for range 3 {
			if err := s.renew(false); err != nil {
				t.Fatal(err)
			}
		}
		return (commandCalls(t, srv.url, anyButInfo) - before) / 3
	}
	few, many := perRenewal(3), perRenewal(300)
	if many > few+2 || many > 12 {
		t.Fatalf("a renewal ran %d commands with 3 streams held and %d with 300: it grows with the streams", few, many)
	}
}

// When Redis loses its data, each instance's next renewal finds its
// heartbeat gone and writes back what it holds: the caps bind again, and
// nothing is counted twice.
func TestRedisStreamCountsComeBackAfterRedisLosesThem(t *testing.T) {
	_, rdb := privateRedisClient(t)
	log, _ := newTestLog(t)
	ctx := context.Background()
	limits := Limits{Enabled: true, StreamsPerUser: 2, StreamsPerAddress: 100}
	a := newRedisStreamLimits(rdb, "papotest:", "a", limits, time.Hour, log)
	b := newRedisStreamLimits(rdb, "papotest:", "b", limits, time.Hour, log)
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	if _, err := a.Acquire(ctx, 1, "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	releaseB, err := b.Acquire(ctx, 1, "10.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// b learns of it at its renewal (its tick, here asked for at once);
	// a at the next stream it counts in, which finds its heartbeat gone.
	if err := b.renew(false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Acquire(ctx, 2, "10.0.0.5"); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"u:1": "2", "u:2": "1", "a:10.0.0.1": "1", "a:10.0.0.2": "1", "a:10.0.0.5": "1"}
	eventually(t, 5*time.Second, "a to write its streams back", func() bool {
		return fmt.Sprint(redisCounts(t, rdb, "papotest:")["total"]) == fmt.Sprint(want)
	})
	if release, err := a.Acquire(ctx, 1, "10.0.0.3"); err == nil {
		release()
		t.Fatal("user 1 took a third stream once the counts were written back")
	}
	// A release of a stream counted before the loss and written back
	// since counts out once.
	releaseB()
	releaseB()
	want = map[string]string{"u:1": "1", "u:2": "1", "a:10.0.0.1": "1", "a:10.0.0.5": "1"}
	if got := redisCounts(t, rdb, "papotest:")["total"]; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("totals after a release: %v, want %v", got, want)
	}
}

// A stopping instance takes its streams out of the totals at once; a
// killed one's lapse with its heartbeat (TestRedisStreamCapsAreClusterWide).
func TestRedisStreamCountsOfAStoppedInstanceGoAtOnce(t *testing.T) {
	_, rdb := privateRedisClient(t)
	log, _ := newTestLog(t)
	ctx := context.Background()
	limits := Limits{Enabled: true, StreamsPerUser: 1, StreamsPerAddress: 100}
	a := newRedisStreamLimits(rdb, "papotest:", "a", limits, time.Hour, log)
	b := newRedisStreamLimits(rdb, "papotest:", "b", limits, time.Hour, log)
	t.Cleanup(b.Close)
	if _, err := a.Acquire(ctx, 7, "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(ctx, 7, "10.0.0.2"); err == nil {
		t.Fatal("user 7 took a second stream with a cap of one")
	}
	a.Close()
	if _, err := b.Acquire(ctx, 7, "10.0.0.2"); err != nil {
		t.Fatalf("user 7 after the instance holding its stream stopped: %v", err)
	}
	for key, fields := range redisCounts(t, rdb, "papotest:") {
		if strings.HasSuffix(key, ":a") && len(fields) > 0 {
			t.Fatalf("the stopped instance's record is still there: %s %v", key, fields)
		}
	}
}

package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// scriptCalls is how many scripts the Redis at url has run.
func scriptCalls(t *testing.T, url string) int {
	t.Helper()
	return commandCalls(t, url, func(name string) bool { return name == "eval" || name == "evalsha" })
}

// commandCalls is how many commands the Redis at url has run whose name
// counted says to count, those run by scripts included.
func commandCalls(t *testing.T, url string, counted func(name string) bool) int {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(info, "\n") {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd || !counted(name) {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(stats, "calls="), ",")
		c, err := strconv.Atoi(calls)
		if err != nil {
			t.Fatalf("commandstats: %q", line)
		}
		n += c
	}
	return n
}

// Streams that open while a decision is out are recorded together, in
// one script call, in the order they were counted: a storm of connects
// costs a round trip per batch, every user still joins once, and every
// stream learns who is online, itself included, from that same call.
func TestRedisPresenceRecordsAStormInOneCall(t *testing.T) {
	requireRedis(t)
	srv := startRedisServer(t)
	var changes changeLog
	// Beats and sweeps far apart, so that the script calls counted below
	// are the streams'.
	p := startPresence(t, presenceOpts{url: srv.url, prefix: "papotest:", grace: time.Hour, heartbeat: time.Hour, ttl: time.Hour}, "a", &changes)
	ctx := context.Background()
	queued := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.queued)
	}

	// A decision in flight: the changes queue behind it.
	p.decide.Lock()
	var wg sync.WaitGroup
	ana := UserRef{ID: 1, Name: "ana"}
	// ana reloads within the batch: counted in, out and in again.
	for i, change := range []func(){
		func() { _ = p.Connect(ctx, "general", ana) },
		func() { p.Disconnect(ctx, "general", ana) },
		func() { _ = p.Connect(ctx, "general", ana) },
	} {
		wg.Go(change)
		eventually(t, 5*time.Second, fmt.Sprintf("ana's change %d is queued", i+1), func() bool { return queued() == i+1 })
	}
	const users, streams = 50, 200
	lists := make([][]string, streams)
	for i := range streams {
		u := UserRef{ID: int64(10 + i%users), Name: fmt.Sprintf("user%02d", i%users)}
		wg.Go(func() {
			var err error
			if lists[i], err = p.ConnectOnline(ctx, "general", u); err != nil {
				t.Error(err)
			}
		})
	}
	eventually(t, 5*time.Second, "every change is queued", func() bool { return queued() == 3+streams })
	before := scriptCalls(t, srv.url)
	p.decide.Unlock()
	wg.Wait()

	// One call, and the script may be loaded first (a NOSCRIPT answer,
	// then EVAL): 203 changes one by one would have been 203 calls.
	if calls := scriptCalls(t, srv.url) - before; calls > 2 {
		t.Errorf("%d changes took %d script calls", 3+streams, calls)
	}
	want := []string{"ana"}
	for i := range users {
		want = append(want, fmt.Sprintf("user%02d", i))
	}
	if got := online(t, p, "general"); !equalNames(got, want) {
		t.Fatalf("online: %v", got)
	}
	// Each opening stream learnt who was online as its batch ended.
	for i, got := range lists {
		if !equalNames(got, want) {
			t.Fatalf("stream %d was told %v are online, want %v", i, got, want)
		}
	}
	for _, name := range want {
		if got := joinsLeaves(&changes, name); got != "+" {
			t.Errorf("%s's changes: %q, want one join", name, got)
		}
	}
	// ana's reload left no leave pending.
	n, err := p.client.ZCard(ctx, p.keys+"leaving").Result()
	if err != nil || n != 0 {
		t.Fatalf("leaves pending: %d, %v", n, err)
	}
}

// A stream whose change was still queued when Redis went away never
// reached it: if Redis comes back empty, that user is a join to announce,
// not someone Redis had online before the outage.
func TestRedisPresenceChangeQueuedAtAnOutageIsAJoin(t *testing.T) {
	requireRedis(t)
	srv := startRedisServer(t)
	o := rejoinOpts(srv.url)
	var changes changeLog
	p := startPresence(t, o, "a", &changes)
	ctx := context.Background()
	ana := UserRef{ID: 1, Name: "ana"}
	eve := UserRef{ID: 2, Name: "eve"}
	must(t, p.Connect(ctx, "general", ana))

	p.decide.Lock() // a call in flight: eve's stream queues behind it
	var wg sync.WaitGroup
	wg.Go(func() { _ = p.Connect(ctx, "general", eve) })
	eventually(t, 5*time.Second, "eve's change is queued", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.queued) == 1
	})
	// Redis goes away, and a call fails (a heartbeat, say) with eve
	// still queued.
	srv.stop()
	p.degrade(errors.New("redis went away"))
	p.decide.Unlock()
	wg.Wait()

	startRedisAgain(t, srv, p)
	eventually(t, 15*time.Second, "eve's join is announced", func() bool { return changes.count("eve", true) == 1 })
	time.Sleep(o.ttl + 3*testGrace)
	for name, want := range map[string]string{"ana": "+", "eve": "+"} {
		if got := joinsLeaves(&changes, name); got != want {
			t.Errorf("%s's changes: %q, want %q", name, got, want)
		}
	}
	if got := online(t, p, "general"); !equalNames(got, []string{"ana", "eve"}) {
		t.Fatalf("online after the outage: %v", got)
	}
}

package app

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// privateRedisClient starts a Redis of the test's own, and a client of it.
func privateRedisClient(t *testing.T) (*redisServer, redis.UniversalClient) {
	t.Helper()
	requireRedis(t)
	srv := startRedisServer(t)
	log, _ := newTestLog(t)
	rdb, err := newRedisClient(srv.url, "papotest:", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return srv, rdb
}

// callsForQueued runs each of calls in a goroutine of its own, queued on
// b in order while a call is in flight (b's lock held), and returns how
// many scripts the Redis at url ran for them all once the lock is let go.
func callsForQueued[R any](t *testing.T, url string, b *batcher[R], calls []func()) int {
	t.Helper()
	b.run.Lock()
	var wg sync.WaitGroup
	for i, call := range calls {
		wg.Go(call)
		eventually(t, 5*time.Second, fmt.Sprintf("request %d queues", i), func() bool { return b.pending() == i+1 })
	}
	before := scriptCalls(t, url)
	b.run.Unlock()
	wg.Wait()
	return scriptCalls(t, url) - before
}

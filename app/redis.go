package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Timeouts for every Redis call. They are short on purpose: Redis sits on
// the path of the writer (which publishes after answering POSTs) and of
// every stream that opens (presence), and when it is gone papo must notice
// at once and carry on without it rather than queue behind a dead socket.
const (
	redisDialTimeout = time.Second
	redisOpTimeout   = time.Second
)

// newRedisClient opens a client for url (redis:// or rediss://) tuned to
// fail fast: one dial attempt, short timeouts, and no automatic retries,
// since a retried presence script that had in fact run would count a
// stream twice. Callers retry at their own level.
func newRedisClient(url string, log *slog.Logger) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parsing the Redis URL: %w", err)
	}
	opt.DialTimeout = redisDialTimeout
	opt.DialerRetries = 1 // the default, 5 tries 100 ms apart, would stall every call while Redis is down
	opt.ReadTimeout = redisOpTimeout
	opt.WriteTimeout = redisOpTimeout
	opt.PoolTimeout = redisOpTimeout
	opt.MaxRetries = -1
	opt.ContextTimeoutEnabled = true
	// No cluster maintenance handshake: papo talks to a plain Redis.
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	quietRedisLogger(log)
	return redis.NewClient(opt), nil
}

var redisLoggerOnce sync.Once

// quietRedisLogger sends go-redis's own log lines (one per failed dial
// while Redis is down) to slog at debug level. The broker and presence log
// an outage and its end once each, which is what an operator needs.
func quietRedisLogger(log *slog.Logger) {
	redisLoggerOnce.Do(func() { redis.SetLogger(slogRedisLogger{log}) })
}

type slogRedisLogger struct{ log *slog.Logger }

func (l slogRedisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "go-redis: "+strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// isTimeout tells a read that simply waited long enough from a failure.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// redisAddr names the server of a client for log lines, never the password.
func redisAddr(c *redis.Client) string { return c.Options().Addr }

// outage tracks whether a Redis connection is down, so that an outage and
// its end are each logged once however many calls fail in between.
type outage struct {
	mu    sync.Mutex
	since time.Time // zero while up
	err   error     // the error that started the outage
}

// fail records err; it returns true for the first failure of an outage.
func (o *outage) fail(err error) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.since.IsZero() {
		return false
	}
	o.since, o.err = time.Now(), err
	return true
}

// recover ends the outage; it returns how long it lasted, and false when
// there was none.
func (o *outage) recover() (time.Duration, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return 0, false
	}
	d := time.Since(o.since)
	o.since, o.err = time.Time{}, nil
	return d, true
}

// down returns when the outage began and its first error; err is nil
// while up.
func (o *outage) down() (since time.Time, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.since, o.err
}

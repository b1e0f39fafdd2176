package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	neturl "net/url"
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

// clusterLayoutInterval is how old a Redis Cluster's slot layout may grow
// before a call reads it again.
const clusterLayoutInterval = time.Second

// newRedisClient opens a client for url (redis:// or rediss://) tuned to
// fail fast: one dial attempt, short timeouts, and no automatic retries,
// since a retried presence script that had in fact run would count a
// stream twice. Callers retry at their own level.
//
// A URL with ?master_name= names Sentinels (see newSentinelClient).
// When the server at url is a node of a Redis Cluster, the client follows
// the cluster from it. papo's scripts each touch many keys, which a
// cluster allows only within one hash slot: prefix must then hold a hash
// tag (such as {papo}:), which puts every key papo uses in one slot. A
// cluster thus gives papo failover, and lets it run where a managed Redis
// is a cluster, not more throughput. Nor does the client follow a MOVED
// redirect by sending the call again (go-redis would also resend after a
// lost connection, and a script that had run would count twice): after a
// resharding one call fails, and after a failover the calls fail until
// the layout is read again (clusterLayoutInterval); the callers handle
// both as an outage.
func newRedisClient(url, prefix string, log *slog.Logger) (redis.UniversalClient, error) {
	if sentinelURL(url) {
		return newSentinelClient(url, log)
	}
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
	// No maintenance handshake: papo follows no hitless upgrades.
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	quietRedisLogger(log)
	if !clusterNode(opt) {
		return redis.NewClient(opt), nil
	}
	if !hasHashTag(prefix) {
		return nil, fmt.Errorf("%s is a Redis Cluster node: PAPO_REDIS_PREFIX (%q) must hold a hash tag, such as {papo}:, "+
			"so that every key papo uses lands in one slot", opt.Addr, prefix)
	}
	if opt.DB != 0 {
		return nil, fmt.Errorf("%s is a Redis Cluster node, which has database 0 alone: REDIS_URL names database %d", opt.Addr, opt.DB)
	}
	return redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:         []string{opt.Addr},
		Username:      opt.Username,
		Password:      opt.Password,
		TLSConfig:     opt.TLSConfig,
		DialTimeout:   opt.DialTimeout,
		DialerRetries: opt.DialerRetries,
		ReadTimeout:   opt.ReadTimeout,
		WriteTimeout:  opt.WriteTimeout,
		PoolTimeout:   opt.PoolTimeout,
		MaxRetries:    -1,
		MaxRedirects:  -1,
		// The layout is read again this often, and at once after a
		// redirect: after a failover, calls that went to the dead master
		// go to the promoted replica within this time (the default, a
		// minute, would keep papo degraded that long).
		ClusterStateReloadInterval: clusterLayoutInterval,
		ContextTimeoutEnabled:      true,
		MaintNotificationsConfig:   opt.MaintNotificationsConfig,
	}), nil
}

// sentinelURL reports whether url names Redis Sentinels rather than a
// Redis: it says which master they watch (?master_name=).
func sentinelURL(raw string) bool {
	u, err := neturl.Parse(raw)
	return err == nil && u.Query().Has("master_name")
}

// newSentinelClient opens a client of the master that the Sentinels at
// url (its host, and each ?addr=) watch, named by ?master_name=; the URL's
// user and password are the Sentinels', ?password= the master's. After a
// failover the client asks the Sentinels for the new master, and drops
// its connections to the old one when they announce the switch: callers
// see the failover as a short outage. Tuned as newRedisClient's.
func newSentinelClient(url string, log *slog.Logger) (redis.UniversalClient, error) {
	opt, err := redis.ParseFailoverURL(url)
	if err != nil {
		return nil, fmt.Errorf("parsing the Redis Sentinel URL: %w", err)
	}
	if opt.MasterName == "" {
		return nil, errors.New("parsing the Redis Sentinel URL: master_name is empty")
	}
	opt.DialTimeout = redisDialTimeout
	opt.DialerRetries = 1
	opt.ReadTimeout = redisOpTimeout
	opt.WriteTimeout = redisOpTimeout
	opt.PoolTimeout = redisOpTimeout
	opt.MaxRetries = -1
	opt.ContextTimeoutEnabled = true
	quietRedisLogger(log)
	return &sentinelClient{Client: redis.NewFailoverClient(opt), name: fmt.Sprintf("sentinel %s via %s",
		opt.MasterName, strings.Join(opt.SentinelAddrs, ","))}, nil
}

// sentinelClient is a client of a master that Sentinels watch; name says
// so in log lines (its options name no address).
type sentinelClient struct {
	*redis.Client
	name string
}

// clusterNode reports whether c's server says it is a node of a Redis
// Cluster. A server that does not answer is taken for a plain one: papo
// needs Redis to start (presence registers at once), so an instance does
// not run long on a wrong guess.
func clusterNode(opt *redis.Options) bool {
	probe := *opt
	probe.DB = 0 // a cluster node refuses SELECT
	c := redis.NewClient(&probe)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), redisDialTimeout+redisOpTimeout)
	defer cancel()
	info, err := c.Info(ctx, "cluster").Result()
	return err == nil && strings.Contains(info, "cluster_enabled:1")
}

// hasHashTag reports whether every key that starts with prefix hashes by
// the same tag: Redis hashes a key by what lies between its first "{"
// and the "}" after it, when that is not empty.
func hasHashTag(prefix string) bool {
	open := strings.IndexByte(prefix, '{')
	if open < 0 {
		return false
	}
	end := strings.IndexByte(prefix[open+1:], '}')
	return end > 0
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
func redisAddr(c redis.UniversalClient) string {
	switch c := c.(type) {
	case *sentinelClient:
		return c.name
	case *redis.Client:
		return c.Options().Addr
	case *redis.ClusterClient:
		return "cluster " + strings.Join(c.Options().Addrs, ",")
	}
	return "redis"
}

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

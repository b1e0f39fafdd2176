package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster-wide limits. With REDIS_URL set, every instance counts against
// the same buckets, so a user gets the limit once, not once per instance.
// Time comes from Redis (TIME inside the scripts), so instances with
// skewed clocks still agree.
//
// When Redis does not answer, each limiter falls back to counting in this
// process: a Redis outage must not turn into a chat outage, and a limit
// counted per instance for a while is better than none.

// gcraScript is a token bucket in its GCRA form: one key holding the
// "theoretical arrival time" of the next request. It checks a batch of
// requests in order, as a call each would.
// KEYS: the bucket of each request; ARGV[1] emission interval (µs);
// ARGV[2] burst.
// Returns for each request: allowed (0/1), retry after (µs).
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local out = {}
for _, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local newtat = tat + interval
  local allowAt = newtat - burst * interval
  if allowAt > now then
    table.insert(out, 0)
    table.insert(out, allowAt - now)
  else
    redis.call('SET', key, newtat, 'PX', math.ceil((newtat - now) / 1000) + 1)
    table.insert(out, 1)
    table.insert(out, 0)
  end
end
return out
`)

// RedisRateLimiter is a token bucket per key, shared by every instance.
type RedisRateLimiter struct {
	rdb      redis.UniversalClient
	prefix   string
	interval int64 // µs per token
	burst    int
	fallback RateLimiter
	down     *outageLog
	// checks asks Redis about requests that come together in one call.
	checks batcher[*rateRequest]
}

// rateRequest is a request waiting for its token.
type rateRequest struct {
	key     string
	allowed bool
	retry   time.Duration
	err     error // Redis did not answer
}

// maxChecksPerCall bounds the requests one script call checks.
const maxChecksPerCall = 256

// NewRedisRateLimiter allows perSecond on average with bursts of burst.
func NewRedisRateLimiter(rdb redis.UniversalClient, prefix string, perSecond float64, burst int, log *slog.Logger) *RedisRateLimiter {
	if burst < 1 {
		burst = 1
	}
	l := &RedisRateLimiter{
		rdb: rdb, prefix: prefix + "limit:", burst: burst,
		interval: int64(1e6 / perSecond),
		fallback: NewMemoryRateLimiter(perSecond, burst),
		down:     &outageLog{log: log, what: "rate limits"},
	}
	l.checks = batcher[*rateRequest]{max: maxChecksPerCall, answer: l.check}
	return l
}

// Allow takes a token for key. Requests that come together (a busy
// room's posts) are checked in one script call (see batcher).
func (l *RedisRateLimiter) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	req := &rateRequest{key: l.prefix + key}
	l.checks.do(ctx, req)
	if req.err != nil {
		l.down.fail(req.err)
		return l.fallback.Allow(ctx, key)
	}
	l.down.ok()
	return req.allowed, req.retry, nil
}

// check asks Redis about a batch of requests in one call.
func (l *RedisRateLimiter) check(ctx context.Context, batch []*rateRequest) {
	keys := make([]string, len(batch))
	for i, r := range batch {
		keys[i] = r.key
	}
	ctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	defer cancel()
	res, err := gcraScript.Run(ctx, l.rdb, keys, l.interval, l.burst).Int64Slice()
	if err == nil && len(res) != 2*len(batch) {
		err = fmt.Errorf("checking rate limits: %d answers for %d requests", len(res)/2, len(batch))
	}
	for i, r := range batch {
		if r.err = err; err == nil {
			r.allowed = res[2*i] == 1
			r.retry = time.Duration(res[2*i+1]) * time.Microsecond
		}
	}
}

// failuresScript keeps failure times in a sorted set, scored in ms.
// KEYS[1] set; ARGV[1] window (ms); ARGV[2] max; ARGV[3] 1 to add a failure.
// Returns {count after pruning (and adding), ms until below max, or 0}.
var failuresScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], now, t[1] .. t[2] .. ':' .. math.random(1000000))
  redis.call('PEXPIRE', KEYS[1], window)
end
local n = redis.call('ZCARD', KEYS[1])
if max <= 0 or n < max then
  return {n, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], n - max, n - max, 'WITHSCORES')
return {n, tonumber(oldest[2]) + window - now}
`)

// RedisFailureCounter counts failures per key in a sliding window shared by
// every instance.
type RedisFailureCounter struct {
	rdb      redis.UniversalClient
	prefix   string
	max      int
	window   time.Duration
	fallback FailureCounter
	down     *outageLog
}

// NewRedisFailureCounter blocks a key after max failures within window.
func NewRedisFailureCounter(rdb redis.UniversalClient, prefix string, max int, window time.Duration, log *slog.Logger) *RedisFailureCounter {
	return &RedisFailureCounter{
		rdb: rdb, prefix: prefix + "failures:", max: max, window: window,
		fallback: NewMemoryFailureCounter(max, window),
		down:     &outageLog{log: log, what: "login failure counts"},
	}
}

func (c *RedisFailureCounter) run(ctx context.Context, key string, add bool) ([]int64, error) {
	flag := "0"
	if add {
		flag = "1"
	}
	return failuresScript.Run(ctx, c.rdb, []string{c.prefix + key}, c.window.Milliseconds(), c.max, flag).Int64Slice()
}

func (c *RedisFailureCounter) Blocked(ctx context.Context, key string) (bool, time.Duration, error) {
	res, err := c.run(ctx, key, false)
	if err != nil {
		c.down.fail(err)
		return c.fallback.Blocked(ctx, key)
	}
	c.down.ok()
	return res[1] > 0, time.Duration(res[1]) * time.Millisecond, nil
}

func (c *RedisFailureCounter) Fail(ctx context.Context, key string) error {
	_ = c.fallback.Fail(ctx, key) // kept too, so an outage starts from what we know
	if _, err := c.run(ctx, key, true); err != nil {
		c.down.fail(err)
	} else {
		c.down.ok()
	}
	return nil
}

func (c *RedisFailureCounter) Reset(ctx context.Context, key string) error {
	_ = c.fallback.Reset(ctx, key)
	if err := c.rdb.Del(ctx, c.prefix+key).Err(); err != nil {
		c.down.fail(err)
	}
	return nil
}

// outageLog logs the start and the end of a Redis outage once each.
type outageLog struct {
	log  *slog.Logger
	what string
	o    outage
}

func (l *outageLog) fail(err error) {
	if l.o.fail(err) {
		l.log.Warn("redis unreachable: counting "+l.what+" in this instance until it is back", "err", err)
	}
}

func (l *outageLog) ok() {
	if d, was := l.o.recover(); was {
		l.log.Info("redis reachable again: "+l.what+" are cluster-wide again", "after", d.Round(time.Millisecond))
	}
}

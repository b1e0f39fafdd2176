package app

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// With REDIS_URL set, stream caps count every instance's streams: a user
// behind a load balancer gets PAPO_STREAMS_PER_USER streams in all, not
// that many per instance.
//
// Each open stream holds a slot: a member of a sorted set per user and per
// client address, scored with the time it lapses (Redis time). The
// instance that holds it pushes that time forward every slotTTL/3, so the
// slots of an instance that dies lapse within slotTTL; closing the stream
// removes them at once. While Redis does not answer, the caps are counted
// in this process, as the rate limits are.

// slotTTL is how long a slot outlives the last renewal by its instance.
const slotTTL = 30 * time.Second

// acquireSlotScript drops lapsed slots and takes one in both sets if
// neither is full.
// KEYS[1] user set, KEYS[2] address set; ARGV[1] member, ARGV[2] TTL (ms),
// ARGV[3] cap per user, ARGV[4] cap per address (0: none).
// Returns 0 (taken), 1 (the user is at the cap) or 2 (the address is).
var acquireSlotScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
for i = 1, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
end
local caps = {tonumber(ARGV[3]), tonumber(ARGV[4])}
for i = 1, 2 do
  if caps[i] > 0 and redis.call('ZCARD', KEYS[i]) >= caps[i] then
    return i
  end
end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return 0
`)

// renewSlotsScript pushes the lapse time of slots still present forward.
// KEYS: the sets, ARGV[1] TTL (ms), ARGV[i+1]: the member in KEYS[i].
var renewSlotsScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return #KEYS
`)

// RedisStreamLimits caps streams across every instance sharing a Redis.
type RedisStreamLimits struct {
	rdb      *redis.Client
	prefix   string
	instance string
	perUser  int
	perAddr  int
	ttl      time.Duration
	local    *StreamLimits // while Redis does not answer
	down     *outageLog

	seq  atomic.Uint64
	mu   sync.Mutex
	held map[string][2]string // member → its user and address sets

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewRedisStreamLimits starts the renewal of this instance's slots;
// instance names it among its siblings.
func NewRedisStreamLimits(rdb *redis.Client, prefix, instance string, l Limits, log *slog.Logger) *RedisStreamLimits {
	return newRedisStreamLimits(rdb, prefix, instance, l, slotTTL, log)
}

func newRedisStreamLimits(rdb *redis.Client, prefix, instance string, l Limits, ttl time.Duration, log *slog.Logger) *RedisStreamLimits {
	s := &RedisStreamLimits{
		rdb: rdb, prefix: prefix + "streams:", instance: instance,
		perUser: l.StreamsPerUser, perAddr: l.StreamsPerAddress, ttl: ttl,
		local: NewStreamLimits(l),
		down:  &outageLog{log: log, what: "stream caps"},
		held:  map[string][2]string{},
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go s.renewLoop()
	return s
}

func (s *RedisStreamLimits) Acquire(ctx context.Context, userID int64, addr string) (func(), error) {
	member := s.instance + ":" + strconv.FormatUint(s.seq.Add(1), 10)
	keys := [2]string{s.prefix + "user:" + strconv.FormatInt(userID, 10), s.prefix + "addr:" + addr}
	res, err := acquireSlotScript.Run(ctx, s.rdb, keys[:], member, s.ttl.Milliseconds(), s.perUser, s.perAddr).Int()
	if err != nil {
		s.down.fail(err)
		return s.local.Acquire(ctx, userID, addr)
	}
	s.down.ok()
	switch res {
	case 1:
		return nil, tooManyUserStreams(s.perUser)
	case 2:
		return nil, tooManyAddrStreams()
	}
	s.mu.Lock()
	s.held[member] = keys
	s.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { s.release(member, keys) }) }, nil
}

func (s *RedisStreamLimits) release(member string, keys [2]string) {
	s.mu.Lock()
	delete(s.held, member)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pipe := s.rdb.Pipeline()
	for _, k := range keys {
		pipe.ZRem(ctx, k, member)
	}
	// Should Redis not answer, the slot lapses by itself within the TTL.
	_, _ = pipe.Exec(ctx)
}

func (s *RedisStreamLimits) renewLoop() {
	defer close(s.done)
	tick := time.NewTicker(s.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			if err := s.renew(); err != nil {
				s.down.fail(err)
			} else {
				s.down.ok()
			}
		}
	}
}

// renewBatch bounds the keys of one script call.
const renewBatch = 500

// renew pushes forward the lapse time of every slot this instance holds.
func (s *RedisStreamLimits) renew() error {
	s.mu.Lock()
	keys := make([]string, 0, 2*len(s.held))
	args := make([]any, 0, 2*len(s.held)+1)
	for member, ks := range s.held {
		for _, k := range ks {
			keys = append(keys, k)
			args = append(args, member)
		}
	}
	s.mu.Unlock()
	ttl := s.ttl.Milliseconds()
	for len(keys) > 0 {
		n := min(len(keys), renewBatch)
		ctx, cancel := context.WithTimeout(context.Background(), s.ttl/3)
		err := renewSlotsScript.Run(ctx, s.rdb, keys[:n], append([]any{ttl}, args[:n]...)...).Err()
		cancel()
		if err != nil {
			return fmt.Errorf("renewing stream slots: %w", err)
		}
		keys, args = keys[n:], args[n:]
	}
	return nil
}

// Close stops the renewal; the slots still held lapse within the TTL.
func (s *RedisStreamLimits) Close() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

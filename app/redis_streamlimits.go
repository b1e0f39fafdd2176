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

// acquireSlotsScript takes a slot for each of a batch of streams, in
// order, as one call per stream would: for each it drops the lapsed slots
// of its two sets (once per set a batch) and takes one in both if neither
// is full.
// KEYS: the user set and the address set of each stream in turn; ARGV[1]
// TTL (ms), ARGV[2] cap per user, ARGV[3] cap per address (0: none),
// ARGV[3+i] the member of stream i.
// Returns for each stream 0 (taken), 1 (the user is at the cap) or 2 (the
// address is).
var acquireSlotsScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local caps = {tonumber(ARGV[2]), tonumber(ARGV[3])}
local swept, out = {}, {}
for r = 1, #KEYS / 2 do
  local keys = {KEYS[2 * r - 1], KEYS[2 * r]}
  for i = 1, 2 do
    if not swept[keys[i]] then
      swept[keys[i]] = true
      redis.call('ZREMRANGEBYSCORE', keys[i], '-inf', now)
    end
  end
  local res = 0
  for i = 1, 2 do
    if res == 0 and caps[i] > 0 and redis.call('ZCARD', keys[i]) >= caps[i] then
      res = i
    end
  end
  if res == 0 then
    for i = 1, 2 do
      redis.call('ZADD', keys[i], now + ttl, ARGV[3 + r])
      redis.call('PEXPIRE', keys[i], ttl)
    end
  end
  out[r] = res
end
return out
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

// releaseSlotsScript removes slots. KEYS: the sets, ARGV[i]: the member
// in KEYS[i].
var releaseSlotsScript = redis.NewScript(`
for i = 1, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[i])
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
	// slots asks Redis for the slots of streams that open together in
	// one call, and releases gives back those of streams that close
	// together (a proxy restart, a shutdown) in one call.
	slots    batcher[*slotRequest]
	releases batcher[slotRelease]

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
	s.slots = batcher[*slotRequest]{max: maxSlotsPerCall, answer: s.takeSlots}
	s.releases = batcher[slotRelease]{max: maxSlotsPerCall, answer: s.giveBack}
	go s.renewLoop()
	return s
}

// slotRequest is a stream waiting for its slots.
type slotRequest struct {
	member string
	keys   [2]string // its user and address sets
	res    int64     // 0 taken, 1 the user is at the cap, 2 the address is
	err    error     // Redis did not answer
}

// maxSlotsPerCall bounds the streams one script call takes slots for.
const maxSlotsPerCall = 256

// Acquire takes a slot for a stream of userID from addr. Streams that
// open together are asked for in one script call (see batcher).
func (s *RedisStreamLimits) Acquire(ctx context.Context, userID int64, addr string) (func(), error) {
	req := &slotRequest{
		member: s.instance + ":" + strconv.FormatUint(s.seq.Add(1), 10),
		keys:   [2]string{s.prefix + "user:" + strconv.FormatInt(userID, 10), s.prefix + "addr:" + addr},
	}
	s.slots.do(ctx, req)

	if req.err != nil {
		s.down.fail(req.err)
		return s.local.Acquire(ctx, userID, addr)
	}
	s.down.ok()
	switch req.res {
	case 1:
		return nil, tooManyUserStreams(s.perUser)
	case 2:
		return nil, tooManyAddrStreams()
	}
	var once sync.Once
	return func() { once.Do(func() { s.release(slotRelease{req.member, req.keys}) }) }, nil
}

// takeSlots asks Redis for the slots of a batch of streams in one call.
// A slot taken is held from then on, so that the renewal keeps it.
func (s *RedisStreamLimits) takeSlots(ctx context.Context, batch []*slotRequest) {
	keys := make([]string, 0, 2*len(batch))
	args := make([]any, 0, 3+len(batch))
	args = append(args, s.ttl.Milliseconds(), s.perUser, s.perAddr)
	for _, r := range batch {
		keys = append(keys, r.keys[0], r.keys[1])
		args = append(args, r.member)
	}
	ctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	res, err := acquireSlotsScript.Run(ctx, s.rdb, keys, args...).Int64Slice()
	cancel()
	if err == nil && len(res) != len(batch) {
		err = fmt.Errorf("taking stream slots: %d answers for %d streams", len(res), len(batch))
	}
	s.mu.Lock()
	for i, r := range batch {
		if r.err = err; err == nil {
			r.res = res[i]
			if r.res == 0 {
				s.held[r.member] = r.keys
			}
		}
	}
	s.mu.Unlock()
}

// slotRelease is the slot of a stream that closed.
type slotRelease struct {
	member string
	keys   [2]string
}

// release gives a slot back at once, so that a client that reconnects
// right away finds it free, rather than when the slot lapses.
func (s *RedisStreamLimits) release(r slotRelease) {
	s.mu.Lock()
	delete(s.held, r.member)
	s.mu.Unlock()
	s.releases.do(context.Background(), r)
}

// giveBack removes the slots of a batch of closed streams in one call.
func (s *RedisStreamLimits) giveBack(ctx context.Context, batch []slotRelease) {
	keys := make([]string, 0, 2*len(batch))
	members := make([]any, 0, 2*len(batch))
	for _, r := range batch {
		for _, k := range r.keys {
			keys = append(keys, k)
			members = append(members, r.member)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	defer cancel()
	// Should Redis not answer, the slots lapse by themselves within the
	// TTL: the renewal no longer keeps them.
	if err := releaseSlotsScript.Run(ctx, s.rdb, keys, members...).Err(); err != nil {
		s.down.fail(fmt.Errorf("releasing stream slots: %w", err))
	}
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

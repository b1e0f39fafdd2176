package app

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// With REDIS_URL set, stream caps count every instance's streams: a user
// behind a load balancer gets PAPO_STREAMS_PER_USER streams in all, not
// that many per instance.
//
// Each instance keeps in Redis how many streams it holds per user and per
// client address, and a total over the live instances is kept beside
// them, so a stream's check reads one number per cap. What keeps an
// instance's streams counted is its heartbeat, renewed every slotTTL/3:
// one command for all its streams, however many. When an instance's
// heartbeat lapses (it died), the next instance to look takes its streams
// out of the totals. Keys, under P = <PAPO_REDIS_PREFIX>streams: (a field
// is "u:<user id>" or "a:<address>"):
//
//	P..instances        set     the instances that hold streams
//	P..alive:<instance> string  its heartbeat, with a TTL of slotTTL
//	P..held:<instance>  hash    field -> that instance's streams
//	P..total            hash    field -> the live instances' streams
//
// While Redis does not answer, the caps are counted in this process, as
// the rate limits are. After Redis has lost its data (or has reaped an
// instance that was only slow), the instance's next renewal finds its
// heartbeat gone and writes back what it holds.

// slotTTL is how long an instance's streams stay counted after its last
// heartbeat.
const slotTTL = 30 * time.Second

// streamCountsLua is what the stream-cap scripts share. ARGV[1] is P,
// ARGV[2] the calling instance.
const streamCountsLua = `
local P, inst = ARGV[1], ARGV[2]
local total = P .. 'total'

-- forget takes the streams of an instance's record out of the totals,
-- and deletes the record.
local function forget(held)
  local kv = redis.call('HGETALL', held)
  for i = 1, #kv, 2 do
    if redis.call('HINCRBY', total, kv[i], -tonumber(kv[i + 1])) <= 0 then
      redis.call('HDEL', total, kv[i])
    end
  end
  redis.call('DEL', held)
end

-- reap forgets the other instances whose heartbeat has lapsed.
local function reap()
  for _, other in ipairs(redis.call('SMEMBERS', P .. 'instances')) do
    if other ~= inst and redis.call('EXISTS', P .. 'alive:' .. other) == 0 then
      forget(P .. 'held:' .. other)
      redis.call('SREM', P .. 'instances', other)
    end
  end
end

-- beat renews the caller's heartbeat for ttl ms. It returns 0 when the
-- heartbeat had lapsed: the caller's streams may have been reaped.
local function beat(ttl)
  local alive = P .. 'alive:' .. inst
  local had = redis.call('EXISTS', alive)
  redis.call('SET', alive, '1', 'PX', ttl)
  redis.call('SADD', P .. 'instances', inst)
  return had
end
`

// acquireSlotsScript counts a batch of streams in, in order, as one call
// per stream would: each is counted under its user and its address if
// neither is at its cap. ARGV: P, instance, heartbeat TTL (ms), cap per
// user, cap per address (0: none), then the user field and the address
// field of each stream. Returns {heartbeat present (0/1), then for each
// stream 0 (counted), 1 (the user is at the cap) or 2 (the address is)}.
var acquireSlotsScript = redis.NewScript(streamCountsLua + `
local out = {beat(tonumber(ARGV[3]))}
reap()
local held = P .. 'held:' .. inst
local caps = {tonumber(ARGV[4]), tonumber(ARGV[5])}
for i = 6, #ARGV, 2 do
  local fields = {ARGV[i], ARGV[i + 1]}
  local res = 0
  for k = 1, 2 do
    if res == 0 and caps[k] > 0 and tonumber(redis.call('HGET', total, fields[k]) or 0) >= caps[k] then
      res = k
    end
  end
  if res == 0 then
    for k = 1, 2 do
      redis.call('HINCRBY', held, fields[k], 1)
      redis.call('HINCRBY', total, fields[k], 1)
    end
  end
  table.insert(out, res)
end
return out
`)

// releaseSlotsScript counts streams out. ARGV: P, instance, then a field
// for each stream and cap. A field the instance's record does not hold
// (Redis lost it, or reaped it) is not taken from the totals again.
var releaseSlotsScript = redis.NewScript(streamCountsLua + `
local held = P .. 'held:' .. inst
for i = 3, #ARGV do
  local f = ARGV[i]
  local n = redis.call('HINCRBY', held, f, -1)
  if n < 0 then
    redis.call('HDEL', held, f)
  else
    if n == 0 then redis.call('HDEL', held, f) end
    if redis.call('HINCRBY', total, f, -1) <= 0 then
      redis.call('HDEL', total, f)
    end
  end
end
return #ARGV - 2
`)

// renewSlotsScript renews the heartbeat and reaps the instances that
// have lost theirs. ARGV: P, instance, TTL (ms). Returns whether the
// heartbeat was still there (0/1).
var renewSlotsScript = redis.NewScript(streamCountsLua + `
local had = beat(tonumber(ARGV[3]))
reap()
return had
`)

// syncSlotsScript replaces the instance's record with what it holds.
// ARGV: P, instance, TTL (ms), then field, count pairs. A stream counted
// in between the reading of those pairs and this call is left out until
// it closes (its release finds nothing to take out): the caps run loose
// by it, never tight.
var syncSlotsScript = redis.NewScript(streamCountsLua + `
beat(tonumber(ARGV[3]))
local held = P .. 'held:' .. inst
forget(held)
for i = 4, #ARGV, 2 do
  redis.call('HSET', held, ARGV[i], ARGV[i + 1])
  redis.call('HINCRBY', total, ARGV[i], tonumber(ARGV[i + 1]))
end
return 1
`)

// leaveSlotsScript takes a stopping instance's streams out of the totals
// at once, rather than when its heartbeat lapses. ARGV: P, instance.
var leaveSlotsScript = redis.NewScript(streamCountsLua + `
forget(P .. 'held:' .. inst)
redis.call('DEL', P .. 'alive:' .. inst)
redis.call('SREM', P .. 'instances', inst)
return 1
`)

// RedisStreamLimits caps streams across every instance sharing a Redis.
type RedisStreamLimits struct {
	rdb      redis.UniversalClient
	prefix   string
	route    []string // the key a Redis Cluster routes each script call by
	instance string
	perUser  int
	perAddr  int
	ttl      time.Duration
	local    *StreamLimits // while Redis does not answer
	down     *outageLog

	mu sync.Mutex
	// held is what this instance counts in Redis, field by field: what a
	// sync writes back after Redis has lost it.
	held map[string]int
	// slots counts in the streams that open together in one call, and
	// releases counts out those that close together (a proxy restart, a
	// shutdown) in one call.
	slots    batcher[*slotRequest]
	releases batcher[slotRelease]

	resync chan struct{} // a call found the heartbeat gone: renew now
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

// NewRedisStreamLimits starts the heartbeat that keeps this instance's
// streams counted; instance names it among its siblings.
func NewRedisStreamLimits(rdb redis.UniversalClient, prefix, instance string, l Limits, log *slog.Logger) *RedisStreamLimits {
	return newRedisStreamLimits(rdb, prefix, instance, l, slotTTL, log)
}

func newRedisStreamLimits(rdb redis.UniversalClient, prefix, instance string, l Limits, ttl time.Duration, log *slog.Logger) *RedisStreamLimits {
	s := &RedisStreamLimits{
		rdb: rdb, prefix: prefix + "streams:", route: []string{prefix + "streams:instances"}, instance: instance,
		perUser: l.StreamsPerUser, perAddr: l.StreamsPerAddress, ttl: ttl,
		local:  NewStreamLimits(l),
		down:   &outageLog{log: log, what: "stream caps"},
		held:   map[string]int{},
		resync: make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	s.slots = batcher[*slotRequest]{max: maxSlotsPerCall, answer: s.takeSlots}
	s.releases = batcher[slotRelease]{max: maxSlotsPerCall, answer: s.giveBack}
	go s.renewLoop()
	return s
}

// slotRequest is a stream waiting to be counted.
type slotRequest struct {
	fields [2]string // its user's and its address's
	res    int64     // 0 counted, 1 the user is at the cap, 2 the address is
	err    error     // Redis did not answer
}

// slotRelease is the fields of a stream that closed.
type slotRelease [2]string

// maxSlotsPerCall bounds the streams one script call counts in or out.
const maxSlotsPerCall = 256

// Acquire counts a stream of userID from addr in. Streams that open
// together are counted in one script call (see batcher).
func (s *RedisStreamLimits) Acquire(ctx context.Context, userID int64, addr string) (func(), error) {
	req := &slotRequest{fields: [2]string{"u:" + strconv.FormatInt(userID, 10), "a:" + addr}}
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
	return func() { once.Do(func() { s.release(slotRelease(req.fields)) }) }, nil
}

// takeSlots counts a batch of streams in, in one call.
func (s *RedisStreamLimits) takeSlots(ctx context.Context, batch []*slotRequest) {
	args := make([]any, 0, 5+2*len(batch))
	args = append(args, s.prefix, s.instance, s.ttl.Milliseconds(), s.perUser, s.perAddr)
	for _, r := range batch {
		args = append(args, r.fields[0], r.fields[1])
	}
	ctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	res, err := acquireSlotsScript.Run(ctx, s.rdb, s.route, args...).Int64Slice()
	cancel()
	if err == nil && len(res) != 1+len(batch) {
		err = fmt.Errorf("counting streams in: %d answers for %d streams", len(res)-1, len(batch))
	}
	s.mu.Lock()
	// A heartbeat gone while this instance held streams: Redis lost them,
	// or reaped them, and they must be written back.
	lost := err == nil && res[0] == 0 && len(s.held) > 0
	for i, r := range batch {
		if r.err = err; err == nil {
			if r.res = res[1+i]; r.res == 0 {
				s.held[r.fields[0]]++
				s.held[r.fields[1]]++
			}
		}
	}
	s.mu.Unlock()
	if lost {
		s.renewSoon()
	}
}

// release counts a stream out at once, so that a client that reconnects
// right away finds its place free.
func (s *RedisStreamLimits) release(r slotRelease) {
	s.mu.Lock()
	for _, f := range r {
		if s.held[f]--; s.held[f] <= 0 {
			delete(s.held, f)
		}
	}
	s.mu.Unlock()
	s.releases.do(context.Background(), r)
}

// giveBack counts a batch of closed streams out in one call.
func (s *RedisStreamLimits) giveBack(ctx context.Context, batch []slotRelease) {
	args := make([]any, 0, 2+2*len(batch))
	args = append(args, s.prefix, s.instance)
	for _, r := range batch {
		args = append(args, r[0], r[1])
	}
	ctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	defer cancel()
	// Should Redis not answer, the next sync corrects the record.
	if err := releaseSlotsScript.Run(ctx, s.rdb, s.route, args...).Err(); err != nil {
		s.down.fail(fmt.Errorf("counting streams out: %w", err))
		s.renewSoon()
	}
}

// renewSoon asks the heartbeat for a sync without waiting for its tick.
func (s *RedisStreamLimits) renewSoon() {
	select {
	case s.resync <- struct{}{}:
	default:
	}
}

func (s *RedisStreamLimits) renewLoop() {
	defer close(s.done)
	tick := time.NewTicker(s.ttl / 3)
	defer tick.Stop()
	writeBack := false // the last renewal failed, or a call found the heartbeat gone
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		case <-s.resync:
			writeBack = true
		}
		if err := s.renew(writeBack); err != nil {
			s.down.fail(err)
			writeBack = true
		} else {
			s.down.ok()
			writeBack = false
		}
	}
}

// renew keeps this instance's streams counted, with one heartbeat for
// all of them, and reaps the instances that have stopped beating. When
// the heartbeat had lapsed, or writeBack is set, it writes back what this
// instance holds.
func (s *RedisStreamLimits) renew(writeBack bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.ttl/3)
	defer cancel()
	had, err := renewSlotsScript.Run(ctx, s.rdb, s.route, s.prefix, s.instance, s.ttl.Milliseconds()).Int64()
	if err != nil {
		return fmt.Errorf("renewing the stream counts: %w", err)
	}
	if had == 1 && !writeBack {
		return nil
	}
	s.mu.Lock()
	args := make([]any, 0, 3+2*len(s.held))
	args = append(args, s.prefix, s.instance, s.ttl.Milliseconds())
	for f, n := range s.held {
		args = append(args, f, n)
	}
	s.mu.Unlock()
	if err := syncSlotsScript.Run(ctx, s.rdb, s.route, args...).Err(); err != nil {
		return fmt.Errorf("writing back the stream counts: %w", err)
	}
	return nil
}

// stopRenewal stops the heartbeat: from then on the streams lapse within
// the TTL, as a killed instance's do.
func (s *RedisStreamLimits) stopRenewal() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

// Close stops the heartbeat and takes what this instance still counts
// out of the totals (streams end before Close in a graceful stop, so
// there is seldom any).
func (s *RedisStreamLimits) Close() {
	s.stopRenewal()
	ctx, cancel := context.WithTimeout(context.Background(), redisOpTimeout)
	defer cancel()
	if err := leaveSlotsScript.Run(ctx, s.rdb, s.route, s.prefix, s.instance).Err(); err != nil {
		s.down.fail(fmt.Errorf("taking the stream counts out: %w", err))
	}
}

package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Heartbeat timing of RedisPresence. A crashed instance's heartbeat
// expires within presenceTTL of its last beat; a live sibling notices at
// its next beat, presenceHeartbeat later, and its users' leaves fall due a
// PAPO_LEAVE_GRACE after that, decided by the next sweep. So the users of
// an instance killed with -9 leave within
//
//	presenceTTL + presenceHeartbeat + PAPO_LEAVE_GRACE + one sweep
//
// that is at most 9 s plus the grace (14 s with the default 5 s grace),
// unless they reconnected to a sibling meanwhile.
const (
	presenceHeartbeat = 2 * time.Second
	presenceTTL       = 6 * time.Second
	// presenceRetry is how often a degraded instance tries Redis again.
	presenceRetry = 500 * time.Millisecond
	// presenceSweepBatch bounds the leaves one sweep decides.
	presenceSweepBatch = 200
)

// RedisPresenceOptions configure a RedisPresence. Zero durations take the
// defaults above; tests shorten them.
type RedisPresenceOptions struct {
	URL       string
	Prefix    string // PAPO_REDIS_PREFIX; keys go under <Prefix>presence:
	Origin    string // this instance's id, as the hub's
	Grace     time.Duration
	Heartbeat time.Duration
	TTL       time.Duration
}

// RedisPresence is presence shared by every instance through Redis, so
// join and leave are decided for the cluster: a user with tabs on two
// instances joins once, and leaves when their last stream anywhere has
// been closed for the grace.
//
// Each instance records in Redis how many streams it holds per room and
// user, and renews a heartbeat key. Decisions are Lua scripts (see
// redis_presence_lua.go), so exactly one instance decides, and announces,
// each join and each leave. Leaves that fall due are decided by whichever
// instance sweeps first; the hashes of an instance whose heartbeat expired
// are removed by whichever live instance notices first.
//
// The instance's own streams are also counted in memory, which is the
// truth Redis is brought back to. While Redis is down, presence degrades
// instead of failing streams: Connect and Disconnect count locally and
// return at once, Online and Rooms answer from this instance's streams,
// and when Redis is back the heartbeat writes this instance's record
// anew, deciding the joins and leaves that happened meanwhile.
type RedisPresence struct {
	client redis.UniversalClient
	// route is the key every script call names, which a Redis Cluster
	// routes it by: the scripts find their keys from ARGV[1], all in the
	// prefix's hash slot.
	route  []string
	keys   string // <prefix>presence:
	origin string
	grace  time.Duration
	beat   time.Duration
	ttl    time.Duration
	sweep  time.Duration
	notify func(PresenceChange)
	log    *slog.Logger

	// decide serializes this instance's decisions with their notify, so
	// the announcer hears them in the order Redis decided them. It also
	// serializes changes to local, so a sync sends a consistent picture.
	decide       sync.Mutex
	healthySince time.Time // owned by the heartbeat loop: when Redis last came back (or start)

	mu       sync.Mutex // guards epoch, local, degraded, closed, lost, before, released, queued; taken inside decide
	epoch    string     // the value of the epoch key this instance's record belongs to
	local    map[string]map[int64]*localStreams
	degraded bool
	closed   bool
	outage   outage
	// lost is set when Redis is found to have lost its data, until this
	// instance's record has been rebuilt.
	lost bool
	// before is, while degraded, the pairs this instance had recorded in
	// Redis when it lost it, with their users' names: its users then
	// online, those in their leave grace included. If Redis comes back
	// empty, a stream opened during the outage whose pair is not here (nor
	// in a sibling's) is a join to announce, and a pair here that nobody
	// holds any more a leave; see sync.
	before map[pairKey]string
	// released is when each pair's last stream here closed, and the
	// user's name, kept for a grace: such a user is still online in the
	// cluster.
	released map[pairKey]releasedPair
	// queued are the changes counted here that Redis is still to record,
	// in the order they were counted; see change.
	queued []*streamChange

	kick chan struct{} // asks the heartbeat loop to sync now
	stop chan struct{}
	done chan struct{}
}

type localStreams struct {
	user UserRef
	n    int
}

type releasedPair struct {
	at   time.Time
	name string
}

// pairKey is a room and a user in it.
type pairKey struct {
	room string
	uid  int64
}

var _ PresenceManager = (*RedisPresence)(nil)

// NewRedisPresence registers this instance in Redis and starts its
// heartbeat and sweeps. Redis must answer now; afterwards its outages are
// survived.
func NewRedisPresence(ctx context.Context, opts RedisPresenceOptions, notify func(PresenceChange), log *slog.Logger) (*RedisPresence, error) {
	client, err := newRedisClient(opts.URL, opts.Prefix, log)
	if err != nil {
		return nil, err
	}
	p := &RedisPresence{
		client: client,
		keys:   opts.Prefix + "presence:",
		route:  []string{opts.Prefix + "presence:instances"},
		origin: opts.Origin,
		grace:  opts.Grace,
		beat:   orDefault(opts.Heartbeat, presenceHeartbeat),
		ttl:    orDefault(opts.TTL, presenceTTL),
		// Leaves are due a grace after the last stream closed; sweeping a
		// few times per grace keeps them close to it.
		sweep:    min(max(opts.Grace/4, 50*time.Millisecond), time.Second),
		notify:   notify,
		log:      log,
		local:    map[string]map[int64]*localStreams{},
		released: map[pairKey]releasedPair{},
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if err := p.heartbeat(ctx); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("registering presence in Redis at %s: %w", redisAddr(client), err)
	}
	go p.run()
	return p, nil
}

// orDefault returns d, or def when d is zero.
func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Connect counts a stream and, unless Redis is down, decides: the first
// stream of a user anywhere in the cluster is their join.
func (p *RedisPresence) Connect(ctx context.Context, room string, user UserRef) error {
	p.change(ctx, room, user, +1)
	return nil
}

// ConnectOnline is Connect, and then Online: the call that recorded the
// stream read who is online in its room too, so that a stream opening
// costs no second round trip to Redis, and the streams of one batch share
// one sorted list.
func (p *RedisPresence) ConnectOnline(ctx context.Context, room string, user UserRef) ([]string, error) {
	if c := p.change(ctx, room, user, +1); c != nil && c.online != nil {
		return c.online, nil
	}
	users, err := p.Online(ctx, room)
	if err != nil {
		p.Disconnect(ctx, room, user)
		return nil, err
	}
	return users, nil
}

var _ onlineConnector = (*RedisPresence)(nil)

// Disconnect uncounts a stream; a user with no stream left anywhere gets
// a leave that falls due after the grace.
func (p *RedisPresence) Disconnect(ctx context.Context, room string, user UserRef) {
	p.change(ctx, room, user, -1)
}

// streamChange is a change of this instance's streams of a pair that
// Redis is still to record.
type streamChange struct {
	room     string
	user     UserRef
	n        int  // this instance's streams of the pair after the change
	recorded bool // whether Redis had this instance's streams of the pair before it
	opened   bool // a stream opened (else one closed)
	done     chan struct{}
	// online is, for a stream that opened, who was online in the room
	// once the change was recorded, sorted and shared; nil if it was not
	// recorded by a script call.
	online []string
}

// maxChangesPerCall bounds the changes one script call records.
const maxChangesPerCall = 256

// change counts a stream in or out here and, unless Redis is down,
// returns once Redis has recorded it and what it decided was announced.
// It returns the change, or nil when it was not for Redis to record.
//
// Changes are recorded in batches, by whoever holds decide: a caller
// queues its change and takes decide, and finds it recorded by the
// holder before it, or records the changes queued before it and its own,
// up to maxChangesPerCall a script call. So a storm of streams opening
// costs a round trip to Redis per batch, not one per stream, each batch
// what queued while the previous call was out; and the changes reach
// Redis, and their decisions the announcer, in the order they were
// counted here.
func (p *RedisPresence) change(ctx context.Context, room string, user UserRef, delta int) *streamChange {
	k := pairKey{room, user.ID}
	p.mu.Lock()
	// A reload within the grace: the pair's last stream here closed a
	// moment ago, and Redis still has it recorded, its leave pending.
	// addLocal forgets that, so it is read first; should Redis turn out to
	// be gone, the pair was online before, not a join to announce later.
	r, released := p.released[k]
	n, ok := p.addLocal(room, user, delta)
	if !ok || p.degraded || p.closed {
		p.mu.Unlock()
		return nil
	}
	c := &streamChange{room: room, user: user, n: n, opened: delta > 0, done: make(chan struct{})}
	c.recorded = delta < 0 || n > 1 || (released && time.Since(r.at) <= p.grace)
	p.queued = append(p.queued, c)
	p.mu.Unlock()

	p.decide.Lock()
	defer p.decide.Unlock()
	// Not the caller's context: once sent, the script runs whether or not
	// the client is still there, and the outcome must be known.
	ctx = context.WithoutCancel(ctx)
	// Up to c, and no further: a caller does not record a storm that
	// goes on after its own change.
	for !isClosed(c.done) {
		p.recordBatch(ctx)
	}
	return c
}

// isClosed reports whether ch has been closed.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// recordBatch records the oldest queued changes in Redis, as many as one
// call takes, and announces the joins it decides. Called under decide.
func (p *RedisPresence) recordBatch(ctx context.Context) {
	p.mu.Lock()
	batch := p.queued[:min(len(p.queued), maxChangesPerCall)]
	p.queued = p.queued[len(batch):]
	if len(p.queued) == 0 {
		p.queued = nil
	}
	usable := !p.degraded && !p.closed
	epoch := p.epoch
	p.mu.Unlock()
	if usable && len(batch) > 0 {
		p.setStreams(ctx, batch, epoch)
	}
	// Else the sync that ends the outage writes them with the rest.
	for _, c := range batch {
		close(c.done)
	}
}

// dropQueued marks the queued changes recorded: a sync is about to write
// this instance's whole record, which holds them. Called under decide.
func (p *RedisPresence) dropQueued() {
	p.mu.Lock()
	queued := p.queued
	p.queued = nil
	p.mu.Unlock()
	for _, c := range queued {
		close(c.done)
	}
}

// setStreams records the batch of changes in one script call, which
// decides for each in turn and reads who is online in their rooms, and
// announces the joins. Called under decide.
func (p *RedisPresence) setStreams(ctx context.Context, batch []*streamChange, epoch string) {
	ctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	defer cancel()
	args := make([]any, 0, 4+5*len(batch))
	args = append(args, p.keys, p.origin, p.grace.Milliseconds(), epoch)
	for _, c := range batch {
		list := 0 // a stream opening sends who is online; a closing one, nothing
		if c.opened {
			list = 1
		}
		args = append(args, c.room, c.user.ID, c.user.Name, c.n, list)
	}
	res, err := setStreamsScript.Run(ctx, p.client, p.route, args...).Slice()
	var online map[string][]string
	if err == nil && (len(res) == 0 || res[0] != int64(-1)) {
		online, err = parseOnlineLists(res, 1+2*len(batch))
	}
	if err != nil {
		p.degradeFor(fmt.Errorf("recording %d stream changes (%s in %s first): %w",
			len(batch), batch[0].user.Name, batch[0].room, err), fixesOf(batch))
		return
	}
	switch alive, _ := res[0].(int64); alive {
	case -1:
		// Redis lost its data: count locally until the heartbeat has
		// rebuilt this instance's record.
		p.degradeFor(errors.New("redis has lost its data (restarted without persistence?)"), fixesOf(batch))
		p.requestSync()
		return
	case 0:
		// Siblings took this instance for dead (a long pause): write the
		// whole record again now.
		p.requestSync()
	}
	for i, c := range batch {
		c.online = online[c.room]
		if name, _ := res[1+2*i].(string); name != "" {
			stamp, _ := res[2+2*i].(string)
			n, _ := strconv.ParseInt(stamp, 10, 64)
			p.notify(PresenceChange{Room: c.room, User: c.user, Joined: true, Stamp: n})
		}
	}
}

// parseOnlineLists reads the rooms' online lists that setStreamsScript
// appends to its reply from index at: room, count, then that many names,
// for each room of the batch. Each list comes back sorted.
func parseOnlineLists(res []any, at int) (map[string][]string, error) {
	bad := func() (map[string][]string, error) {
		return nil, fmt.Errorf("set-streams script: unexpected reply %v", res)
	}
	if len(res) < at {
		return bad()
	}
	lists := map[string][]string{}
	for i := at; i < len(res); {
		if i+2 > len(res) {
			return bad()
		}
		room, ok := res[i].(string)
		n, counted := res[i+1].(int64)
		if !ok || !counted || n < 0 || i+2+int(n) > len(res) {
			return bad()
		}
		names := make([]string, 0, n)
		for _, v := range res[i+2 : i+2+int(n)] {
			name, _ := v.(string)
			names = append(names, name)
		}
		SortUsernames(names)
		lists[room] = names
		i += 2 + int(n)
	}
	return lists, nil
}

// fixesOf is what a failed batch tells of each pair: whether Redis had it
// before the batch, which is what its first change there says.
func fixesOf(batch []*streamChange) []pairFix {
	seen := map[pairKey]bool{}
	fixes := make([]pairFix, 0, len(batch))
	for _, c := range batch {
		k := pairKey{c.room, c.user.ID}
		if !seen[k] {
			seen[k] = true
			fixes = append(fixes, pairFix{k, c.user.Name, c.recorded})
		}
	}
	return fixes
}

// addLocal changes this instance's count of user's streams in room and
// returns the new count; ok is false for a stream it never counted.
// Called under mu.
func (p *RedisPresence) addLocal(room string, user UserRef, delta int) (n int, ok bool) {
	users := p.local[room]
	e := users[user.ID]
	if e == nil {
		if delta < 0 {
			return 0, false
		}
		if users == nil {
			users = map[int64]*localStreams{}
			p.local[room] = users
		}
		e = &localStreams{user: user}
		users[user.ID] = e
		delete(p.released, pairKey{room, user.ID})
	}
	e.n += delta
	n = e.n
	if n <= 0 {
		delete(users, user.ID)
		if len(users) == 0 {
			delete(p.local, room)
		}
		p.released[pairKey{room, user.ID}] = releasedPair{time.Now(), user.Name}
	}
	return n, true
}

// onlineHere lists the pairs this instance holds streams of, and those
// whose last stream here closed less than a grace ago, with the users'
// names. Called under mu.
//
// A pair released longer ago is left out even while Redis may still owe
// its leave: the leave fell due and a sweep may have announced it, which
// nothing here can tell, and a leave announced twice is worse than one
// the next users event makes up for.
func (p *RedisPresence) onlineHere() map[pairKey]string {
	out := map[pairKey]string{}
	for room, users := range p.local {
		for uid, e := range users {
			out[pairKey{room, uid}] = e.user.Name
		}
	}
	for k, r := range p.released {
		if time.Since(r.at) <= p.grace {
			out[k] = r.name
		}
	}
	return out
}

// pruneReleased forgets the pairs whose grace is over. Called under mu.
func (p *RedisPresence) pruneReleased() {
	for k, r := range p.released {
		if time.Since(r.at) > p.grace {
			delete(p.released, k)
		}
	}
}

// RedisUp reports whether presence records in Redis now, rather than
// counting this instance's streams alone.
func (p *RedisPresence) RedisUp() bool { return p.usable() }

func (p *RedisPresence) usable() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.degraded && !p.closed
}

// degrade switches to local counting after a failed call and logs the
// outage once; the heartbeat loop retries and syncs.
func (p *RedisPresence) degrade(err error) { p.degradeFor(err, nil) }

// pairFix is the pair whose recording failed, its user's name, and
// whether Redis had it before the failed call.
type pairFix struct {
	pairKey
	name     string
	recorded bool
}

// degradeFor is degrade after failing to record the fixes' pairs: the
// outage's before set must hold each only if Redis had it.
func (p *RedisPresence) degradeFor(err error, fixes []pairFix) {
	p.mu.Lock()
	closed := p.closed
	if !p.degraded {
		p.before = p.onlineHere()
		// The counts here are ahead of Redis by the changes still queued,
		// which will not reach it now. They come after the failed ones
		// (fixes): applied first, so that a pair's earliest change says
		// whether Redis had it.
		p.applyFixes(fixesOf(p.queued))
	}
	p.degraded = true
	p.applyFixes(fixes)
	p.mu.Unlock()
	if !closed && p.outage.fail(err) {
		p.log.Warn("presence: Redis unavailable; streams still open and are counted on this instance "+
			"until it is back, when joins and leaves are caught up", "redis", redisAddr(p.client), "err", err)
	}
}

// applyFixes puts each fix's pair in the before set, or takes it out,
// as Redis had it. Called under mu.
func (p *RedisPresence) applyFixes(fixes []pairFix) {
	for _, fix := range fixes {
		if fix.recorded {
			p.before[fix.pairKey] = fix.name
		} else {
			delete(p.before, fix.pairKey)
		}
	}
}

func (p *RedisPresence) requestSync() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// run beats, syncs and sweeps until Close.
func (p *RedisPresence) run() {
	defer close(p.done)
	beat := time.NewTimer(p.beat)
	defer beat.Stop()
	sweep := time.NewTicker(p.sweep)
	defer sweep.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-p.kick:
			p.tick()
			beat.Reset(p.nextBeat())
		case <-beat.C:
			p.tick()
			beat.Reset(p.nextBeat())
		case <-sweep.C:
			if p.usable() {
				p.sweepDue()
			}
		}
	}
}

// nextBeat is soon while Redis is away, so that recovery is quick.
func (p *RedisPresence) nextBeat() time.Duration {
	if p.usable() {
		return p.beat
	}
	return min(presenceRetry, p.beat)
}

func (p *RedisPresence) tick() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*redisOpTimeout)
	defer cancel()
	if err := p.heartbeat(ctx); err != nil {
		p.degrade(err)
	}
}

// heartbeat renews this instance's heartbeat, writes its whole record
// again when Redis may not have it right, and reaps dead siblings. Only
// the heartbeat loop (and the constructor, before it starts) calls it.
func (p *RedisPresence) heartbeat(ctx context.Context) error {
	// Outside decide: while Redis hangs this waits out its timeout, and
	// streams opening meanwhile (counted locally) must not wait with it.
	res, err := beatScript.Run(ctx, p.client, p.route, p.keys, p.origin, p.ttl.Milliseconds(), newOrigin()).Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("beat script: unexpected reply %v", res)
	}
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	had, _ := res[0].(int64)
	epoch, _ := res[1].(string)
	// A new epoch means Redis lost its data (a restart without
	// persistence): nobody's record is there, and most joins a sync would
	// decide are users who were online all along, not news for the room;
	// the sync rebuilds quietly but for the joins of the outage.
	p.mu.Lock()
	lost := p.epoch != "" && epoch != p.epoch
	p.epoch = epoch
	p.mu.Unlock()
	if err := p.catchUp(ctx, had == 0, lost); err != nil {
		return err
	}
	// Siblings that come back from the same outage need a beat to renew
	// their heartbeats: reap only after being healthy for a whole TTL.
	if time.Since(p.healthySince) >= p.ttl {
		return p.reapDead(ctx)
	}
	return nil
}

// catchUp syncs this instance's record when Redis may not have it right
// (after an outage, when siblings reaped it, or when Redis lost its data)
// and ends the degraded mode. Under decide, so no stream is counted
// between the snapshot and the end of the degraded mode.
func (p *RedisPresence) catchUp(ctx context.Context, reaped, lost bool) error {
	p.decide.Lock()
	defer p.decide.Unlock()
	p.mu.Lock()
	// Kept until a rebuild succeeds: a sync that fails halfway must not
	// be followed by an ordinary one that announces everyone.
	p.lost = p.lost || lost
	degraded, rebuild := p.degraded, p.lost
	p.mu.Unlock()
	if degraded || reaped || rebuild {
		p.dropQueued()
		if err := p.sync(ctx, rebuild); err != nil {
			return err
		}
	}
	if degraded || p.healthySince.IsZero() {
		p.healthySince = time.Now()
	}
	p.mu.Lock()
	p.degraded = false
	p.lost = false
	p.before = nil
	p.pruneReleased()
	p.mu.Unlock()
	if d, ok := p.outage.recover(); ok {
		p.log.Info("presence: Redis is back; this instance's streams are recorded again",
			"redis", redisAddr(p.client), "down_for", d.Round(time.Millisecond), "data_lost", rebuild)
	}
	return nil
}

// sync writes this instance's whole record from its local counts and
// announces the joins it decides. Called under decide.
//
// With rebuild (Redis lost its data) the record is rebuilt quietly, but
// for the joins and leaves that happened during the outage: this instance
// claims the pairs it knew online before (those recorded when it lost
// Redis, or all it holds if it never noticed the outage), and the script
// holds a join, for a TTL, for each pair it holds that nobody has
// claimed, and a leave for each pair it claims that nobody holds. The TTL
// lets every sibling beat, rebuild, claim its own and record what it
// holds; then one sweep announces the joins and leaves still held (see
// sweepScript), so a user who was online all along is announced neither
// joining nor leaving, whichever instance rebuilds first.
func (p *RedisPresence) sync(ctx context.Context, rebuild bool) error {
	hold := int64(0)
	if rebuild {
		hold = p.ttl.Milliseconds()
	}
	args := []any{p.keys, p.origin, p.grace.Milliseconds(), hold}
	p.mu.Lock()
	var claims map[pairKey]string
	if rebuild {
		claims = p.before
		if !p.degraded {
			claims = p.onlineHere()
		}
	}
	args = append(args, len(claims))
	for k, name := range claims {
		args = append(args, k.room, k.uid, name)
	}
	for room, users := range p.local {
		for _, e := range users {
			args = append(args, room, e.user.ID, e.user.Name, e.n)
		}
	}
	p.mu.Unlock()
	joins, err := syncScript.Run(ctx, p.client, p.route, args...).StringSlice()
	if err != nil {
		return fmt.Errorf("recording this instance's streams: %w", err)
	}
	for _, c := range changes(joins, true) {
		p.notify(c)
	}
	return nil
}

func (p *RedisPresence) reapDead(ctx context.Context) error {
	reaped, err := reapScript.Run(ctx, p.client, p.route, p.keys, p.origin, p.grace.Milliseconds(), "dead").StringSlice()
	if err != nil {
		return fmt.Errorf("reaping dead instances: %w", err)
	}
	if len(reaped) > 0 {
		p.log.Warn("presence: instances stopped beating; their users leave unless connected elsewhere",
			"instances", reaped, "leave_within", p.grace)
	}
	return nil
}

// sweepDue decides and announces the leaves that are due, and the joins
// a rebuild held.
func (p *RedisPresence) sweepDue() {
	p.decide.Lock()
	defer p.decide.Unlock()
	for range 10 { // bounded: the rest waits for the next sweep
		ctx, cancel := context.WithTimeout(context.Background(), redisOpTimeout)
		decided, err := sweepScript.Run(ctx, p.client, p.route, p.keys, presenceSweepBatch).StringSlice()
		cancel()
		if err != nil {
			p.degrade(fmt.Errorf("deciding leaves: %w", err))
			return
		}
		// Quintuples: "+" (joined) or "-" (left), room, uid, name, stamp.
		for i := 0; i+4 < len(decided); i += 5 {
			for _, c := range changes(decided[i+1:i+5], decided[i] == "+") {
				p.notify(c)
			}
		}
		if len(decided) < 5*presenceSweepBatch {
			return
		}
	}
}

// changes reads the room, uid, name, stamp quadruples the scripts return.
func changes(flat []string, joined bool) []PresenceChange {
	out := make([]PresenceChange, 0, len(flat)/4)
	for i := 0; i+3 < len(flat); i += 4 {
		id, err := strconv.ParseInt(flat[i+1], 10, 64)
		if err != nil {
			continue // not written by papo
		}
		stamp, _ := strconv.ParseInt(flat[i+3], 10, 64)
		out = append(out, PresenceChange{Room: flat[i], User: UserRef{ID: id, Name: flat[i+2]}, Joined: joined, Stamp: stamp})
	}
	return out
}

// Online lists who is online in room across the cluster, sorted; while
// Redis is down, who has a stream on this instance.
func (p *RedisPresence) Online(ctx context.Context, room string) ([]string, error) {
	names, _, err := p.OnlineStamped(ctx, room)
	return names, err
}

// OnlineStamped is Online with the list's stamp: the last one presence
// gave when the list was read, in one step with it (every change to an
// online list takes a stamp; see stamp in the scripts). Of two lists, the
// one with the higher stamp is the newer. While Redis is down, 0.
func (p *RedisPresence) OnlineStamped(ctx context.Context, room string) ([]string, int64, error) {
	if err := p.checkOpen(); err != nil {
		return nil, 0, err
	}
	if !p.usable() {
		return p.localOnline(room), 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	defer cancel()
	var (
		stamp *redis.StringCmd
		names *redis.StringSliceCmd
	)
	_, err := p.client.TxPipelined(ctx, func(tx redis.Pipeliner) error {
		stamp = tx.Get(ctx, p.keys+"stamp")
		names = tx.HVals(ctx, p.keys+"online:"+room)
		return nil
	})
	if errors.Is(err, redis.Nil) {
		err = names.Err() // no stamp yet: nobody has joined since Redis started
	}
	if err != nil {
		p.degrade(fmt.Errorf("reading who is online in %s: %w", room, err))
		return p.localOnline(room), 0, nil
	}
	n, _ := stamp.Int64()
	list := names.Val()
	SortUsernames(list)
	return list, n, nil
}

// Rooms lists the rooms with someone online across the cluster, the
// busiest first; while Redis is down, from this instance's streams.
func (p *RedisPresence) Rooms(ctx context.Context) ([]RoomCount, error) {
	if err := p.checkOpen(); err != nil {
		return nil, err
	}
	if !p.usable() {
		return p.localRooms(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	defer cancel()
	flat, err := roomsScript.Run(ctx, p.client, p.route, p.keys).Slice()
	if err != nil {
		p.degrade(fmt.Errorf("reading the rooms: %w", err))
		return p.localRooms(), nil
	}
	out := make([]RoomCount, 0, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		room, _ := flat[i].(string)
		n, _ := flat[i+1].(int64)
		out = append(out, RoomCount{Room: room, Users: int(n)})
	}
	sortRoomCounts(out)
	return out, nil
}

// errPresenceClosed keeps a late users event (the announcer finishing its
// queue at shutdown) from telling other instances that the room is empty.
var errPresenceClosed = errors.New("presence: closed")

func (p *RedisPresence) checkOpen() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errPresenceClosed
	}
	return nil
}

func (p *RedisPresence) localOnline(room string) []string {
	p.mu.Lock()
	names := make([]string, 0, len(p.local[room]))
	for _, e := range p.local[room] {
		names = append(names, e.user.Name)
	}
	p.mu.Unlock()
	SortUsernames(names)
	return names
}

func (p *RedisPresence) localRooms() []RoomCount {
	p.mu.Lock()
	out := make([]RoomCount, 0, len(p.local))
	for room, users := range p.local {
		out = append(out, RoomCount{Room: room, Users: len(users)})
	}
	p.mu.Unlock()
	sortRoomCounts(out)
	return out
}

// sortRoomCounts puts the busiest rooms first, then by name, as
// MemoryPresence does.
func sortRoomCounts(rooms []RoomCount) {
	slices.SortFunc(rooms, func(a, b RoomCount) int {
		if a.Users != b.Users {
			return b.Users - a.Users
		}
		if a.Room < b.Room {
			return -1
		}
		if a.Room > b.Room {
			return 1
		}
		return 0
	})
}

// Close stops the heartbeat and takes this instance out of the cluster.
// Its streams have normally all ended by now (each a Disconnect); anything
// left gets the ordinary leave after the grace, decided by a sibling,
// unless the user reconnects to one first.
func (p *RedisPresence) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	degraded := p.degraded
	p.mu.Unlock()
	close(p.stop)
	<-p.done

	p.decide.Lock() // wait for a decision in flight
	defer p.decide.Unlock()
	if !degraded {
		ctx, cancel := context.WithTimeout(context.Background(), redisOpTimeout)
		_, err := reapScript.Run(ctx, p.client, p.route, p.keys, p.origin, p.grace.Milliseconds(), "self").Result()
		cancel()
		if err != nil {
			p.log.Warn("presence: leaving the cluster; siblings will reap this instance when its heartbeat expires", "err", err)
		}
	}
	return p.client.Close()
}

// abandon stops the instance as kill -9 would: no goodbye in Redis. For
// tests of reaping.
func (p *RedisPresence) abandon() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	close(p.stop)
	<-p.done
	p.decide.Lock()
	defer p.decide.Unlock()
	_ = p.client.Close()
}

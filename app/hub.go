package app

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"papo/models"
)

// MessageSource is what the hub reads to fill gaps in what the broker
// delivered.
type MessageSource interface {
	LastMessageID(ctx context.Context) (int64, error)
	MessagesAfter(ctx context.Context, after int64, limit int) ([]models.Message, error)
}

// HubOptions tune a Hub; zero values take the defaults.
type HubOptions struct {
	QueueSize int           // per-subscriber queue; a full queue drops the subscriber (default 128)
	Heartbeat time.Duration // ": ping" to every stream this often (default 15s)
	GapWait   time.Duration // how long an out-of-order message waits for the ones before it (default 150ms)
	Poll      time.Duration // the safety poll of the last committed id (default 1s)
	Recent    int           // messages kept in memory, in id order, to serve stream backlogs (default 4096; <0: none)
	// Coalesce, when positive, is the least time between two offers of
	// a room's messages to its streams: a message that comes sooner after
	// the last offer waits (at most this long) and goes out together with
	// the others that came meanwhile, as one frame, so a busy room costs
	// each stream one write per Coalesce rather than one per message. A
	// message after a quiet spell goes out at once. 0: off.
	Coalesce time.Duration
}

// Hub fans events out to the streams of this instance.
//
// Messages carry ids from one global sequence handed out in commit order
// (models.InsertMessages). The hub dispatches them strictly in that order:
// it keeps next, the id it expects; a message with a higher id waits until
// the ones before it arrive, and if they have not come within GapWait they
// are read from the database, where they must be, since a higher id
// committed after them. A slow poll of the last committed id catches a gap
// that no later message reveals (a publish lost while the broker was down).
// So a lost publish, a crashed publisher, or two instances publishing out of
// order cost latency, never a message, and a stream's cursor (the last id it
// sent) always means "everything visible up to here".
//
// Other events (users, typing, reply) are outside the sequence and go out
// as they come.
type Hub struct {
	origin string
	broker Broker
	source MessageSource
	log    *slog.Logger
	opts   HubOptions

	in chan Envelope

	// Each room's and each user's subscribers, oldest first (see
	// subscribers).
	mu      sync.RWMutex
	rooms   map[string]subscribers
	users   map[int64]subscribers
	all     int
	nextSeq uint64

	// Owned by the dispatcher goroutine.
	next       int64
	pending    map[int64]Envelope
	gapSince   time.Time
	dispatched atomic.Int64
	// The safety poll's failures while the database does not answer it:
	// logged at the start and at the end, not each poll.
	pollFailures failureStreak

	// recent is the tail of the sequence as this hub dispatched it; see
	// recentRing.
	recent recentRing
	// tails are the newest messages of the rooms and users whose streams
	// were lately opened; see backlogTails.
	tails *backlogTails

	// Coalescing (see HubOptions.Coalesce), owned by the dispatcher:
	// the messages held back per room, and when each room's messages were
	// last offered.
	held      map[string]*heldBatch
	lastOffer map[string]time.Time

	// usersStamps holds, per room, the stamp of the newest online list
	// dispatched (see Envelope.Stamp), owned by the dispatcher.
	usersStamps map[string]int64

	// onSessionEnd, when set, hears of every ended session (this
	// instance's and, through the broker, other instances').
	onSessionEnd atomic.Pointer[func(session string)]

	// restored receives a token each time the broker's subscription is
	// restored after an outage (see BrokerRestored).
	restored chan struct{}

	stats HubStats

	started  chan struct{}
	stopping chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// HubStats are counters for /metrics.
type HubStats struct {
	EventsSent    atomic.Int64 // frames queued to streams
	Dropped       atomic.Int64 // subscribers dropped for a full queue
	GapFills      atomic.Int64 // times messages were read from the database to fill a gap
	Subscriptions atomic.Int64 // open subscriptions
}

// DefaultCoalesce is the Coalesce that App gives its hub unless
// PAPO_COALESCE says otherwise: a busy room's messages reach each stream
// at most about seven times a second, in batches; a message after a quiet
// spell goes out at once. Each write to a stream costs the kernel far more
// than the bytes it carries (BENCHMARKS.md: 100 ms gave 6.9 ms of CPU per
// 1,000 deliveries at 5,000 streams and 20 messages/s, 150 ms 4.8 ms),
// while a wait of at most 150 ms, in a room busy enough to have one, is
// not one a reader notices.
const DefaultCoalesce = 150 * time.Millisecond

// NewHub builds a hub; Start runs it.
func NewHub(origin string, broker Broker, source MessageSource, log *slog.Logger, opts HubOptions) *Hub {
	if opts.QueueSize <= 0 {
		// 128 frames is seconds of a busy room (its messages come
		// coalesced, see Coalesce), and a stream dropped for falling
		// behind resumes from its cursor. The queue grows to the bound
		// only while frames wait (frameQueue).
		opts.QueueSize = 128
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.GapWait <= 0 {
		opts.GapWait = 150 * time.Millisecond
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.Recent == 0 {
		opts.Recent = 4096
	}
	return &Hub{
		origin:    origin,
		broker:    broker,
		source:    source,
		log:       log,
		opts:      opts,
		in:        make(chan Envelope, 4096),
		rooms:     map[string]subscribers{},
		users:     map[int64]subscribers{},
		pending:   map[int64]Envelope{},
		recent:    recentRing{buf: make([]recentMessage, max(opts.Recent, 0))},
		tails:     newBacklogTails(BacklogSize, tailRooms, tailUsers, tailBudget),
		held:      map[string]*heldBatch{},
		lastOffer: map[string]time.Time{},
		restored:  make(chan struct{}, 1),
		started:   make(chan struct{}),
		stopping:  make(chan struct{}),
		done:      make(chan struct{}),

		usersStamps: map[string]int64{},
	}
}

// Start subscribes to the broker, learns the last committed id, and runs
// the dispatcher until Stop. Subscribing first means nothing can fall
// between the two: a message committed after the read arrives through the
// broker, and one committed before it is already history.
func (h *Hub) Start(ctx context.Context) error {
	if n, ok := h.broker.(restoreNotifier); ok {
		n.OnRestored(h.brokerRestored)
	}
	if err := h.broker.Subscribe(ctx, h.receive); err != nil {
		return fmt.Errorf("%w: %w", ErrBrokerUnavailable, err)
	}
	last, err := h.source.LastMessageID(ctx)
	if err != nil {
		return err
	}
	h.next = last + 1
	h.dispatched.Store(last)
	h.tails.start(last)
	h.preloadRecent(ctx, last)
	close(h.started)
	go h.run()
	return nil
}

// Stop ends every stream and the dispatcher.
func (h *Hub) Stop() {
	h.stopOnce.Do(func() { close(h.stopping) })
	select {
	case <-h.started:
		<-h.done
	default:
	}
	h.mu.Lock()
	for _, subs := range h.rooms {
		for _, s := range subs {
			s.close(CloseShutdown)
		}
	}
	h.rooms = map[string]subscribers{}
	h.users = map[int64]subscribers{}
	h.all = 0
	h.mu.Unlock()
}

// Stopping is closed once Stop has been called.
func (h *Hub) Stopping() <-chan struct{} { return h.stopping }

// Stats exposes the hub's counters.
func (h *Hub) Stats() *HubStats { return &h.stats }

// LastDispatched is the highest message id this hub has dispatched.
func (h *Hub) LastDispatched() int64 { return h.dispatched.Load() }

// Publish delivers env to this instance's streams and, through the broker,
// to every other instance. Local delivery does not wait for the broker, so
// this instance keeps serving its own streams when the broker is down.
func (h *Hub) Publish(ctx context.Context, env Envelope) error {
	env.Origin = h.origin
	h.enqueue(env)
	if err := h.broker.Publish(ctx, env); err != nil {
		return err
	}
	return nil
}

// publishLocal and publishRemote are Publish in two halves, for the writer,
// which answers its senders between them.
func (h *Hub) publishLocal(envs []Envelope) {
	for i := range envs {
		envs[i].Origin = h.origin
		h.enqueue(envs[i])
	}
}

func (h *Hub) publishRemote(ctx context.Context, envs []Envelope) error {
	return h.broker.Publish(ctx, envs...)
}

// receive takes envelopes from the broker. This instance's own were already
// delivered locally by Publish.
func (h *Hub) receive(env Envelope) {
	if env.Origin == h.origin {
		return
	}
	h.enqueue(env)
}

func (h *Hub) enqueue(env Envelope) {
	select {
	case h.in <- env:
	case <-h.stopping:
	}
}

func (h *Hub) run() {
	defer close(h.done)
	heartbeat := time.NewTicker(h.opts.Heartbeat)
	defer heartbeat.Stop()
	poll := time.NewTicker(h.opts.Poll)
	defer poll.Stop()
	gap := time.NewTimer(time.Hour)
	gap.Stop()
	gapArmed := false
	coalesce := time.NewTimer(time.Hour)
	coalesce.Stop()
	var coalesceAt time.Time // when coalesce fires; zero when stopped
	armCoalesce := func() {
		due, ok := h.nextHeldDue()
		if !ok || (!coalesceAt.IsZero() && !due.Before(coalesceAt)) {
			return
		}
		coalesceAt = due
		coalesce.Reset(time.Until(due))
	}
	for {
		select {
		case env := <-h.in:
			h.accept(env)
			// Take what else is waiting before looking at timers, so a
			// burst is dispatched without a select per event.
			for drained := 0; drained < 1024; drained++ {
				select {
				case env = <-h.in:
					h.accept(env)
					continue
				default:
				}
				break
			}
			if len(h.pending) > 0 && !gapArmed {
				gap.Reset(h.opts.GapWait)
				gapArmed = true
			}
			armCoalesce()
		case <-coalesce.C:
			coalesceAt = time.Time{}
			h.offerHeld(time.Now())
			armCoalesce()
		case <-gap.C:
			gapArmed = false
			h.fillGap()
			if len(h.pending) > 0 {
				gap.Reset(h.opts.GapWait)
				gapArmed = true
			}
		case <-poll.C:
			if len(h.pending) == 0 {
				h.pollLast()
			}
			h.forgetQuietRooms(time.Now())
			armCoalesce()
		case <-heartbeat.C:
			h.broadcast(pingFrame)
		case <-h.stopping:
			return
		}
	}
}

// accept orders messages and passes other events straight on.
func (h *Hub) accept(env Envelope) {
	switch env.Type {
	case EventMessage:
	case eventSessionEnd:
		if f := h.onSessionEnd.Load(); f != nil {
			(*f)(env.Session)
		}
		h.endSession(env.User, env.Session)
		return
	case EventUsers:
		if !h.newerUsers(env) {
			return
		}
	}
	if env.Type != EventMessage {
		// Held messages go first: streams see events in the order the
		// hub took them.
		h.offerAllHeld()
		h.dispatch(env, EncodeFrame(0, env.Type, env.Data))
		return
	}
	switch {
	case env.ID < h.next:
		return // already dispatched: a duplicate, or filled from the database
	case env.ID > h.next:
		h.pending[env.ID] = env
		return
	}
	h.dispatchMessage(env)
	h.drainPending()
}

// usersStampsMax bounds the rooms whose last online list the hub keeps a
// stamp of; past it, it starts over. Forgetting only lets through a list
// that arrives late, in the few milliseconds it takes to be overtaken.
const usersStampsMax = 10_000

// newerUsers reports whether a users event is newer than the last one
// the room's streams were given, and records it. Online lists are read
// and published by whichever instance announced a change, so two read a
// moment apart may cross on their way; the older one, coming last, would
// show a user who is online as gone. An unstamped list (one instance, or
// Redis down) always goes through.
func (h *Hub) newerUsers(env Envelope) bool {
	if env.Stamp == 0 {
		return true
	}
	if env.Stamp <= h.usersStamps[env.Room] {
		return false
	}
	if len(h.usersStamps) >= usersStampsMax {
		clear(h.usersStamps)
	}
	h.usersStamps[env.Room] = env.Stamp
	return true
}

func (h *Hub) dispatchMessage(env Envelope) {
	f := EncodeFrame(env.ID, EventMessage, env.Data)
	// Into the ring before any subscriber is offered it: a stream that
	// registers after the offer finds it in the ring (see Recent).
	h.recent.add(env, f)
	h.tails.add(env, f)
	h.next = env.ID + 1
	h.dispatched.Store(env.ID)
	if h.opts.Coalesce <= 0 {
		h.dispatch(env, f)
		return
	}
	if env.Private {
		// Routed by user, to streams in any room: whatever is held for
		// any room goes first.
		h.offerAllHeld()
		h.dispatch(env, f)
		return
	}
	if b := h.held[env.Room]; b != nil {
		b.frames = append(b.frames, f)
		return
	}
	now := time.Now()
	if last, ok := h.lastOffer[env.Room]; ok && now.Sub(last) < h.opts.Coalesce {
		h.held[env.Room] = &heldBatch{env: env, frames: []*Frame{f}, due: last.Add(h.opts.Coalesce)}
		return
	}
	h.lastOffer[env.Room] = now
	h.dispatch(env, f)
}

// heldBatch is a room's messages waiting for their offer (Coalesce).
type heldBatch struct {
	env    Envelope // the first message's: routes the batch to its room
	frames []*Frame
	due    time.Time
}

func (h *Hub) nextHeldDue() (time.Time, bool) {
	var due time.Time
	for _, b := range h.held {
		if due.IsZero() || b.due.Before(due) {
			due = b.due
		}
	}
	return due, !due.IsZero()
}

// offerHeld offers the batches that are due.
func (h *Hub) offerHeld(now time.Time) {
	for room, b := range h.held {
		if !b.due.After(now) {
			h.offerBatch(room, b, now)
		}
	}
}

// offerAllHeld offers every batch now, due or not (an event that must
// follow them is about to go out).
func (h *Hub) offerAllHeld() {
	if len(h.held) == 0 {
		return
	}
	now := time.Now()
	for room, b := range h.held {
		h.offerBatch(room, b, now)
	}
}

func (h *Hub) offerBatch(room string, b *heldBatch, now time.Time) {
	delete(h.held, room)
	h.lastOffer[room] = now
	h.dispatch(b.env, joinFrames(b.frames))
}

// forgetQuietRooms drops the offer times that no longer hold anything back.
func (h *Hub) forgetQuietRooms(now time.Time) {
	for room, last := range h.lastOffer {
		if now.Sub(last) >= h.opts.Coalesce && h.held[room] == nil {
			delete(h.lastOffer, room)
		}
	}
}

func (h *Hub) drainPending() {
	for {
		env, ok := h.pending[h.next]
		if !ok {
			return
		}
		delete(h.pending, h.next)
		h.dispatchMessage(env)
	}
}

// fillGap reads from the database the messages the broker has not brought,
// then carries on with those that were waiting behind them.
func (h *Hub) fillGap() {
	h.stats.GapFills.Add(1)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rows, err := h.source.MessagesAfter(ctx, h.next-1, 500)
		cancel()
		if err != nil {
			h.log.Error("hub: reading missing messages", "after", h.next-1, "err", err)
			return
		}
		for i := range rows {
			if rows[i].ID < h.next {
				continue
			}
			if rows[i].ID > h.next {
				// Ids are given without gaps, so this cannot happen unless
				// rows were deleted by hand; skip ahead rather than stall.
				h.log.Warn("hub: message ids skip", "expected", h.next, "got", rows[i].ID)
			}
			delete(h.pending, rows[i].ID)
			h.dispatchMessage(messageEnvelope(&rows[i]))
		}
		h.drainPending()
		if len(rows) < 500 {
			break
		}
	}
	// Whatever still waits is ahead of everything committed so far; drop
	// entries we have passed.
	for id := range h.pending {
		if id < h.next {
			delete(h.pending, id)
		}
	}
}

func (h *Hub) pollLast() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	last, err := h.source.LastMessageID(ctx)
	cancel()
	if err != nil {
		if h.pollFailures.fail(1) {
			h.log.Warn("hub: safety poll: the database does not answer; messages from other instances "+
				"may arrive late until it does (further failures are counted, not logged)", "err", err)
		}
		return
	}
	if failed, _, d, was := h.pollFailures.succeed(); was {
		h.log.Info("hub: safety poll: the database answers again", "failed_polls", failed, "after", d)
	}
	if last >= h.next {
		h.fillGap()
	}
}

// Subscribe registers a stream's subscriber. From now on every event it
// may see is queued to it, so the caller reads the backlog after this.
func (h *Hub) Subscribe(room string, user UserRef, session string) (*Subscriber, error) {
	s := &Subscriber{
		Room:    room,
		User:    user,
		Session: session,
		bound:   h.opts.QueueSize,
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.stopping:
		return nil, ErrShuttingDown
	default:
	}
	h.nextSeq++
	s.seq = h.nextSeq
	addSub(h.rooms, room, s)
	addSub(h.users, user.ID, s)
	h.all++
	h.stats.Subscriptions.Add(1)
	return s, nil
}

// ErrBrokerUnavailable is why a hub could not start: its broker did not
// take the subscription.
var ErrBrokerUnavailable = errors.New("the broker is unavailable")

// ErrShuttingDown refuses new streams during shutdown.
var ErrShuttingDown = &Error{Kind: KindUnavailable, Code: "shutting_down", Message: "The server is shutting down; reconnect shortly."}

// Unsubscribe removes s; it is safe to call more than once.
func (h *Hub) Unsubscribe(s *Subscriber) {
	h.mu.Lock()
	if removeSub(h.rooms, s.Room, s) {
		removeSub(h.users, s.User.ID, s)
		h.all--
		h.stats.Subscriptions.Add(-1)
	}
	h.mu.Unlock()
	s.close(CloseUnsubscribed)
}

// Subscribers counts the open subscriptions of this instance.
func (h *Hub) Subscribers() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.all
}

// subscribers is a room's or a user's subscribers in the order they
// subscribed. A message reaches them in that order, which is also, for
// the most part, the order in memory of everything a delivery touches:
// the subscriber and its stream (Go allocates objects of a size one after
// another), and the socket, which the kernel made when the stream
// connected. Walking them so, rather than in a map's random order, costs
// 8-20 % less server CPU per delivery (BENCHMARKS.md, change 20). A leaver
// is cut out with a copy of those after it: microseconds, even at 10,000.
type subscribers []*Subscriber

// addSub appends s, the newest subscriber: the list stays in order.
func addSub[K comparable](m map[K]subscribers, k K, s *Subscriber) {
	m[k] = append(m[k], s)
}

func removeSub[K comparable](m map[K]subscribers, k K, s *Subscriber) bool {
	subs := m[k]
	i, found := slices.BinarySearchFunc(subs, s.seq, func(e *Subscriber, seq uint64) int { return cmp.Compare(e.seq, seq) })
	if !found || subs[i] != s {
		return false
	}
	subs = slices.Delete(subs, i, i+1)
	if len(subs) == 0 {
		delete(m, k)
	} else {
		m[k] = subs
	}
	return true
}

// dispatch queues f to every subscriber env is for. It holds only the read
// lock and never blocks: a subscriber whose queue is full is dropped
// afterwards, so one slow client never slows a room.
func (h *Hub) dispatch(env Envelope, f *Frame) {
	var full []*Subscriber
	h.mu.RLock()
	switch env.Type {
	case EventMessage:
		if env.Private {
			full = h.offerAll(h.users[env.From], f, full, nil)
			if env.To != env.From {
				full = h.offerAll(h.users[env.To], f, full, nil)
			}
		} else {
			full = h.offerAll(h.rooms[env.Room], f, full, nil)
		}
	case EventTyping:
		full = h.offerAll(h.rooms[env.Room], f, full, func(s *Subscriber) bool { return s.User.ID != env.User })
	case EventReply:
		full = h.offerAll(h.users[env.User], f, full, func(s *Subscriber) bool { return s.Room == env.Room })
	default: // users, and any room-wide event
		full = h.offerAll(h.rooms[env.Room], f, full, nil)
	}
	h.mu.RUnlock()
	h.dropAll(full)
}

func (h *Hub) broadcast(f *Frame) {
	var full []*Subscriber
	h.mu.RLock()
	for _, subs := range h.rooms {
		full = h.offerAll(subs, f, full, nil)
	}
	h.mu.RUnlock()
	h.dropAll(full)
}

func (h *Hub) offerAll(subs subscribers, f *Frame, full []*Subscriber, keep func(*Subscriber) bool) []*Subscriber {
	sent := 0
	for _, s := range subs {
		if keep != nil && !keep(s) {
			continue
		}
		if s.offer(f) {
			sent++
		} else {
			full = append(full, s)
		}
	}
	h.stats.EventsSent.Add(int64(sent))
	return full
}

func (h *Hub) dropAll(full []*Subscriber) {
	for _, s := range full {
		h.stats.Dropped.Add(1)
		h.log.Info("hub: dropping a slow stream", "room", s.Room, "user", s.User.Name)
		s.close(CloseSlow)
		h.Unsubscribe(s)
	}
}

func (h *Hub) endSession(userID int64, session string) {
	var ended []*Subscriber
	h.mu.RLock()
	for _, s := range h.users[userID] {
		if s.Session == session {
			ended = append(ended, s)
		}
	}
	h.mu.RUnlock()
	for _, s := range ended {
		s.close(CloseLoggedOut)
		h.Unsubscribe(s)
	}
}

// restoreNotifier is a broker that can tell when its subscription is back
// after an outage (RedisBroker).
type restoreNotifier interface {
	OnRestored(f func())
}

// brokerRestored runs on the broker's receive loop; it only leaves a
// token, which BrokerRestored hands to whoever acts on it.
func (h *Hub) brokerRestored() {
	select {
	case h.restored <- struct{}{}:
	default: // one is already waiting
	}
}

// BrokerRestored yields once each time the broker's subscription is
// restored after an outage (repeats while nobody reads coalesce into one):
// events other instances published meanwhile, such as the end of a
// session, were lost.
func (h *Hub) BrokerRestored() <-chan struct{} { return h.restored }

// SessionIDs returns the distinct sessions of this instance's streams, in
// no particular order. It holds the read lock only while it copies them.
func (h *Hub) SessionIDs() []string {
	h.mu.RLock()
	seen := map[string]struct{}{}
	for _, subs := range h.users {
		for _, s := range subs {
			if s.Session != "" {
				seen[s.Session] = struct{}{}
			}
		}
	}
	h.mu.RUnlock()
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	return ids
}

// EndSessions ends, here only, the streams of the sessions in ended, as a
// session_end event would (CloseLoggedOut), and tells OnSessionEnd of each
// session; it returns how many streams it ended. It is for sessions found
// gone from the database, whose event may have been lost: the others
// already heard or will hear of them from their own look.
func (h *Hub) EndSessions(ended map[string]bool) int {
	if len(ended) == 0 {
		return 0
	}
	if f := h.onSessionEnd.Load(); f != nil {
		for id := range ended {
			(*f)(id)
		}
	}
	var subs []*Subscriber
	h.mu.RLock()
	for _, us := range h.users {
		for _, s := range us {
			if ended[s.Session] {
				subs = append(subs, s)
			}
		}
	}
	h.mu.RUnlock()
	for _, s := range subs {
		s.close(CloseLoggedOut)
		h.Unsubscribe(s)
	}
	return len(subs)
}

// OnSessionEnd sets f to hear of every session that ends, here or on
// another instance (session caches forget it).
func (h *Hub) OnSessionEnd(f func(session string)) { h.onSessionEnd.Store(&f) }

// EndSession closes the streams of a session on every instance.
func (h *Hub) EndSession(ctx context.Context, userID int64, session string) error {
	return h.Publish(ctx, Envelope{Type: eventSessionEnd, User: userID, Session: session})
}

// PublishEvent sends an ephemeral event (users, typing, reply).
func (h *Hub) PublishEvent(ctx context.Context, env Envelope, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	env.Data = raw
	return h.Publish(ctx, env)
}

// CloseReason tells a stream why its subscription ended.
type CloseReason int32

const (
	CloseNone CloseReason = iota
	CloseSlow
	CloseLoggedOut
	CloseShutdown
	CloseUnsubscribed
)

// Subscriber is one stream's place in the hub: a bounded queue of frames.
type Subscriber struct {
	Room    string
	User    UserRef
	Session string

	seq   uint64 // its place among the hub's subscribers, oldest first
	queue frameQueue
	bound int // frames queued at most: one more drops the subscriber
	ready atomic.Pointer[func()]

	// ended is set, with reason, when the hub ends the subscription.
	// done is made only for those who wait on Done (a stream with a
	// goroutine of its own); a detached stream looks at Ended, and an
	// idle one should not hold a channel for nothing.
	mu     sync.Mutex
	ended  atomic.Bool
	reason atomic.Int32
	done   chan struct{}
}

// OnReady sets f to be called each time a frame is queued to s and once
// when s ends, and calls it once now for what was queued before. It lets
// one writer serve many streams, learning which have work, instead of a
// goroutine waiting on each queue. f runs on the hub's goroutine: it must
// not block.
func (s *Subscriber) OnReady(f func()) {
	s.ready.Store(&f)
	f()
}

func (s *Subscriber) notify() {
	if f := s.ready.Load(); f != nil {
		(*f)()
	}
}

// Ended reports whether the hub has ended the subscription.
func (s *Subscriber) Ended() bool { return s.ended.Load() }

// Take appends the frames queued to dst, oldest first, and empties the
// queue. OnReady says when there are more.
func (s *Subscriber) Take(dst []*Frame) []*Frame { return s.queue.take(dst) }

// Waiting reports whether frames are queued.
func (s *Subscriber) Waiting() bool { return s.queue.waiting() }

// Done is closed when the hub ends the subscription.
func (s *Subscriber) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done == nil {
		s.done = make(chan struct{})
		if s.ended.Load() {
			close(s.done)
		}
	}
	return s.done
}

// Reason says why Done was closed.
func (s *Subscriber) Reason() CloseReason { return CloseReason(s.reason.Load()) }

func (s *Subscriber) offer(f *Frame) bool {
	if s.ended.Load() {
		return true // already ending; nothing to drop
	}
	if !s.queue.push(f, s.bound) {
		return false
	}
	s.notify()
	return true
}

func (s *Subscriber) close(r CloseReason) {
	s.mu.Lock()
	if s.ended.Load() {
		s.mu.Unlock()
		return
	}
	s.reason.Store(int32(r))
	s.ended.Store(true)
	if s.done != nil {
		close(s.done)
	}
	s.mu.Unlock()
	s.notify()
}

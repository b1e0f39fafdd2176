package app

// A session that ends while its session_end event cannot reach the other
// instances (Redis down at logout, or the event lost) must not leave its
// streams open there: each instance checks its streams' sessions against
// the database when its broker is restored, and periodically.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"papo/models"
	"papo/models/modelstest"
)

// sweepUser creates a user to own sessions.
func sweepUser(t testing.TB, s *models.Store, name string) UserRef {
	t.Helper()
	u := &models.User{Username: fmt.Sprintf("%s%d", name, time.Now().UnixNano()%1e9), PasswordHash: "x", CreatedAt: time.Now().UTC()}
	if err := s.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return UserRef{ID: u.ID, Name: u.Username}
}

// sweepSession stores a session of user that expires at expires.
func sweepSession(t testing.TB, s *models.Store, user UserRef, expires time.Time) string {
	t.Helper()
	id := NewSessionID()
	uid := user.ID
	row := &models.Session{ID: id, UserID: &uid, Data: []byte("{}"), ExpiresAt: expires.UTC()}
	if err := s.SaveSession(context.Background(), row); err != nil {
		t.Fatal(err)
	}
	return id
}

func subscribe(t testing.TB, h *Hub, room string, user UserRef, session string) *Subscriber {
	t.Helper()
	sub, err := h.Subscribe(room, user, session)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func decodeAny(b []byte) (any, error) { return string(b), nil }

// assertLoggedOut checks that the stream was ended as a logout ends it.
func assertLoggedOut(t *testing.T, what string, sub *Subscriber) {
	t.Helper()
	if !sub.Ended() {
		t.Fatalf("%s: still open", what)
	}
	if r := sub.Reason(); r != CloseLoggedOut {
		t.Fatalf("%s: ended with reason %d, want CloseLoggedOut (%d)", what, r, CloseLoggedOut)
	}
}

func assertOpen(t *testing.T, what string, sub *Subscriber) {
	t.Helper()
	if sub.Ended() {
		t.Fatalf("%s: ended (reason %d), want it open", what, sub.Reason())
	}
}

// The check ends the streams of a session whose row is gone (deleted with
// no session_end event) or expired, and only those; the ended session is
// refused on this instance at once, not after the session cache's 10 s.
func TestStreamsOfSessionsEndedUnheardAreClosed(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, store *models.Store) {
		ctx := context.Background()
		hub := startHub(t, store, &scriptedBroker{}, HubOptions{})
		sessions := NewSessions(store, hub)
		alice, bob, carol := sweepUser(t, store, "alice"), sweepUser(t, store, "bob"), sweepUser(t, store, "carol")
		later := time.Now().Add(time.Hour)
		loggedOut := sweepSession(t, store, alice, later)
		aliceOther := sweepSession(t, store, alice, later)
		bobs := sweepSession(t, store, bob, later)
		expired := sweepSession(t, store, carol, time.Now().Add(-time.Minute))

		gone1 := subscribe(t, hub, "lobby", alice, loggedOut)
		gone2 := subscribe(t, hub, "dev", alice, loggedOut)
		stays1 := subscribe(t, hub, "lobby", alice, aliceOther)
		stays2 := subscribe(t, hub, "lobby", bob, bobs)
		old := subscribe(t, hub, "lobby", carol, expired)

		// This instance has the session cached, as after any request.
		if _, _, err := sessions.Load(ctx, loggedOut, decodeAny); err != nil {
			t.Fatal(err)
		}
		// Another instance logs the session out; its event never comes.
		if err := store.DeleteSession(ctx, loggedOut); err != nil {
			t.Fatal(err)
		}
		assertOpen(t, "before the check, the logged-out session's stream", gone1)

		if n := sessions.checkStreams(ctx); n != 3 {
			t.Fatalf("the check ended %d streams, want 3", n)
		}
		assertLoggedOut(t, "the logged-out session's stream in lobby", gone1)
		assertLoggedOut(t, "the logged-out session's stream in dev", gone2)
		assertLoggedOut(t, "the expired session's stream", old)
		assertOpen(t, "the same user's other session's stream", stays1)
		assertOpen(t, "another user's stream", stays2)
		if n := hub.Subscribers(); n != 2 {
			t.Fatalf("%d subscribers left, want 2", n)
		}
		// The client reconnects with its cookie: refused (the routes
		// answer 401), at once rather than when the cache lapses.
		if _, _, err := sessions.Load(ctx, loggedOut, decodeAny); !errors.Is(err, ErrNoSession) {
			t.Fatalf("loading the ended session: %v, want ErrNoSession", err)
		}
		if _, _, err := sessions.Load(ctx, aliceOther, decodeAny); err != nil {
			t.Fatalf("loading the live session: %v", err)
		}
		// Nothing more to end; the streams that stay still get events.
		if n := sessions.checkStreams(ctx); n != 0 {
			t.Fatalf("a second check ended %d streams, want 0", n)
		}
		if err := hub.PublishEvent(ctx, Envelope{Type: EventUsers, Room: "lobby"}, []string{"x"}); err != nil {
			t.Fatal(err)
		}
		for _, sub := range []*Subscriber{stays1, stays2} {
			if frameWithin(sub, 5*time.Second) == nil {
				t.Fatal("a stream that stays got no event")
			}
		}
	})
}

// restoringBroker is a broker whose subscription the test "restores".
type restoringBroker struct {
	scriptedBroker
	restored atomic.Pointer[func()]
}

func (b *restoringBroker) OnRestored(f func()) { b.restored.Store(&f) }

func (b *restoringBroker) restore() {
	if f := b.restored.Load(); f != nil {
		(*f)()
	}
}

// The check runs when the broker's subscription is restored, without
// waiting for the periodic one.
func TestStreamSessionCheckRunsWhenTheBrokerIsRestored(t *testing.T) {
	store := modelstest.Open(t, models.SQLite)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	broker := &restoringBroker{}
	hub := startHub(t, store, broker, HubOptions{})
	sessions := NewSessions(store, hub)
	done := make(chan struct{})
	go func() { defer close(done); sessions.WatchStreams(ctx, time.Hour) }()
	defer func() { cancel(); <-done }()

	alice, bob := sweepUser(t, store, "alice"), sweepUser(t, store, "bob")
	later := time.Now().Add(time.Hour)
	gone := subscribe(t, hub, "lobby", alice, sweepSession(t, store, alice, later))
	stays := subscribe(t, hub, "lobby", bob, sweepSession(t, store, bob, later))
	if err := store.DeleteSession(ctx, gone.Session); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	assertOpen(t, "with no restore and no periodic check yet, the stream", gone)

	broker.restore()
	eventually(t, 10*time.Second, "the stream of the session ended meanwhile closes", gone.Ended)
	assertLoggedOut(t, "the stream of the session ended meanwhile", gone)
	assertOpen(t, "another session's stream", stays)
}

// The periodic check catches what no restore reveals (an event lost while
// this instance's subscription stayed up).
func TestStreamSessionCheckRunsPeriodically(t *testing.T) {
	store := modelstest.Open(t, models.SQLite)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hub := startHub(t, store, &scriptedBroker{}, HubOptions{})
	sessions := NewSessions(store, hub)
	done := make(chan struct{})
	go func() { defer close(done); sessions.WatchStreams(ctx, 50*time.Millisecond) }()
	defer func() { cancel(); <-done }()

	alice, bob := sweepUser(t, store, "alice"), sweepUser(t, store, "bob")
	later := time.Now().Add(time.Hour)
	gone := subscribe(t, hub, "lobby", alice, sweepSession(t, store, alice, later))
	stays := subscribe(t, hub, "lobby", bob, sweepSession(t, store, bob, later))
	if err := store.DeleteSession(ctx, gone.Session); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the stream of the deleted session closes", gone.Ended)
	assertLoggedOut(t, "the stream of the deleted session", gone)
	time.Sleep(200 * time.Millisecond) // a few more checks
	assertOpen(t, "another session's stream", stays)
}

// checkedStore records the check's queries, and can fail them or answer
// them from a set instead of the database.
type checkedStore struct {
	*models.Store
	fail atomic.Bool

	mu      sync.Mutex
	batches []int
	live    map[string]bool // when set, the answer, instead of the database's
}

func (s *checkedStore) LiveSessionIDs(ctx context.Context, ids []string) (map[string]bool, error) {
	s.mu.Lock()
	s.batches = append(s.batches, len(ids))
	live := s.live
	s.mu.Unlock()
	if s.fail.Load() {
		return nil, errors.New("database unavailable")
	}
	if live != nil {
		out := map[string]bool{}
		for _, id := range ids {
			if live[id] {
				out[id] = true
			}
		}
		return out, nil
	}
	return s.Store.LiveSessionIDs(ctx, ids)
}

func (s *checkedStore) takeBatches() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.batches
	s.batches = nil
	return b
}

// While the database fails, the check ends nothing and logs once; when it
// answers again, the check does its work and logs the recovery once.
func TestStreamSessionCheckSkipsWhileTheDatabaseFails(t *testing.T) {
	store := modelstest.Open(t, models.SQLite)
	ctx := context.Background()
	log, logs := newTestLog(t)
	hub := NewHub("this-instance", &scriptedBroker{}, store, log, HubOptions{})
	if err := hub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hub.Stop)
	checked := &checkedStore{Store: store}
	sessions := NewSessions(checked, hub)

	alice, bob := sweepUser(t, store, "alice"), sweepUser(t, store, "bob")
	later := time.Now().Add(time.Hour)
	gone := subscribe(t, hub, "lobby", alice, sweepSession(t, store, alice, later))
	stays := subscribe(t, hub, "lobby", bob, sweepSession(t, store, bob, later))
	if err := store.DeleteSession(ctx, gone.Session); err != nil {
		t.Fatal(err)
	}

	checked.fail.Store(true)
	for range 3 {
		if n := sessions.checkStreams(ctx); n != 0 {
			t.Fatalf("a failed check ended %d streams", n)
		}
	}
	assertOpen(t, "while the database fails, the stream", gone)
	assertOpen(t, "while the database fails, another stream", stays)
	if n := logs.count("checking that open streams' sessions still exist failed"); n != 1 {
		t.Fatalf("the failure was logged %d times, want once", n)
	}

	checked.fail.Store(false)
	if n := sessions.checkStreams(ctx); n != 1 {
		t.Fatalf("the check ended %d streams, want 1", n)
	}
	assertLoggedOut(t, "the deleted session's stream", gone)
	assertOpen(t, "another session's stream", stays)
	sessions.checkStreams(ctx)
	if n := logs.count("checking open streams' sessions works again"); n != 1 {
		t.Fatalf("the recovery was logged %d times, want once", n)
	}
}

// The check costs a query per 500 distinct sessions, whatever the number
// of streams: 10,000 streams of 100 sessions are one query of 100 ids.
func TestStreamSessionCheckAsksPerDistinctSessionInBatches(t *testing.T) {
	store := modelstest.Open(t, models.SQLite)
	ctx := context.Background()
	hub := startHub(t, store, &scriptedBroker{}, HubOptions{QueueSize: 1})
	checked := &checkedStore{Store: store, live: map[string]bool{}}
	sessions := NewSessions(checked, hub)
	user := UserRef{ID: 1, Name: "u"}

	var subs []*Subscriber
	for i := range 10_000 {
		id := fmt.Sprintf("s%03d", i%100)
		checked.live[id] = true
		subs = append(subs, subscribe(t, hub, fmt.Sprintf("room%d", i%7), user, id))
	}
	if n := sessions.checkStreams(ctx); n != 0 {
		t.Fatalf("the check ended %d streams of live sessions", n)
	}
	if b := checked.takeBatches(); len(b) != 1 || b[0] != 100 {
		t.Fatalf("queries asked about %v ids, want one of 100", b)
	}

	// 1,001 sessions: three queries, none over 500; one session ends.
	for i := 100; i < 1001; i++ {
		id := fmt.Sprintf("s%03d", i)
		checked.live[id] = true
		subscribe(t, hub, "lobby", user, id)
	}
	checked.mu.Lock()
	delete(checked.live, "s042")
	checked.mu.Unlock()
	if n := sessions.checkStreams(ctx); n != 100 {
		t.Fatalf("the check ended %d streams, want the 100 of s042", n)
	}
	b := checked.takeBatches()
	total := 0
	for _, n := range b {
		if n > streamCheckBatch {
			t.Fatalf("a query asked about %d ids", n)
		}
		total += n
	}
	if len(b) != 3 || total != 1001 {
		t.Fatalf("queries asked about %v ids, want 3 queries over 1001", b)
	}
	for i, sub := range subs {
		if sub.Session == "s042" {
			assertLoggedOut(t, "a stream of the ended session", sub)
		} else if sub.Ended() {
			t.Fatalf("stream %d of live session %s ended", i, sub.Session)
		}
	}
}

// The database's answer: live sessions only, and any number of ids.
func TestLiveSessionIDs(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, store *models.Store) {
		ctx := context.Background()
		u := sweepUser(t, store, "u")
		want := map[string]bool{}
		var ids []string
		for i := range 1200 {
			if i%100 == 0 {
				id := sweepSession(t, store, u, time.Now().Add(time.Hour))
				want[id] = true
				ids = append(ids, id)
				continue
			}
			ids = append(ids, NewSessionID()) // never existed
		}
		ids = append(ids, sweepSession(t, store, u, time.Now().Add(-time.Second))) // expired
		got, err := store.LiveSessionIDs(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("got %d live sessions, want %d", len(got), len(want))
		}
		for id := range want {
			if !got[id] {
				t.Fatalf("live session %s not reported", id)
			}
		}
		if got, err := store.LiveSessionIDs(ctx, nil); err != nil || len(got) != 0 {
			t.Fatalf("no ids: %v, %v", got, err)
		}
	})
}

// Two instances over one Redis. Redis is down when a user logs out on
// instance A, so the session_end event reaches no one; the user's stream
// on instance B must still close once Redis is back (B's subscription is
// restored, and B checks its streams' sessions), while the user's other
// session and other users keep theirs.
func TestRedisLogoutDuringAnOutageClosesStreamsElsewhere(t *testing.T) {
	url := requireRedis(t)
	prefix := testPrefix(t, url)
	proxy, proxied := newFlakyProxy(t, url)
	store := modelstest.Open(t, models.SQLite)
	ctx, cancel := context.WithCancel(context.Background())
	log, _ := newTestLog(t)

	instance := func(origin string) (*Hub, *RedisBroker, *Sessions) {
		b, err := NewRedisBroker(proxied, prefix, log.With("instance", origin))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		h := NewHub(origin, b, store, log.With("instance", origin), HubOptions{})
		if err := h.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.Stop)
		s := NewSessions(store, h)
		done := make(chan struct{})
		go func() { defer close(done); s.WatchStreams(ctx, time.Hour) }() // only a restore checks
		t.Cleanup(func() { cancel(); <-done })
		return h, b, s
	}
	hubA, brokerA, sessionsA := instance("instance-a")
	hubB, brokerB, sessionsB := instance("instance-b")

	alice, bob := sweepUser(t, store, "alice"), sweepUser(t, store, "bob")
	later := time.Now().Add(time.Hour)
	loggedOut := sweepSession(t, store, alice, later)
	aliceOther := sweepSession(t, store, alice, later)
	bobs := sweepSession(t, store, bob, later)
	onA := subscribe(t, hubA, "lobby", alice, loggedOut)
	onB := subscribe(t, hubB, "lobby", alice, loggedOut)
	otherOnB := subscribe(t, hubB, "lobby", alice, aliceOther)
	bobOnB := subscribe(t, hubB, "lobby", bob, bobs)
	if _, _, err := sessionsB.Load(ctx, loggedOut, decodeAny); err != nil { // B has it cached
		t.Fatal(err)
	}

	proxy.cut()
	eventually(t, 15*time.Second, "both instances know Redis is down", func() bool {
		return !brokerA.live.Load() && !brokerB.live.Load()
	})
	if err := sessionsA.Delete(ctx, loggedOut, alice.ID); err != nil {
		t.Fatalf("logout during the outage: %v", err)
	}
	eventually(t, 5*time.Second, "the session's stream on the instance that logged it out closes", onA.Ended)
	assertLoggedOut(t, "the session's stream on the instance that logged it out", onA)
	time.Sleep(300 * time.Millisecond)
	assertOpen(t, "while Redis is down, the session's stream on the other instance", onB)

	proxy.restore()
	eventually(t, 20*time.Second, "the session's stream on the other instance closes once Redis is back", onB.Ended)
	assertLoggedOut(t, "the session's stream on the other instance", onB)
	if _, _, err := sessionsB.Load(ctx, loggedOut, decodeAny); !errors.Is(err, ErrNoSession) {
		t.Fatalf("the logged-out cookie on the other instance: %v, want ErrNoSession (401)", err)
	}

	// The others keep their streams, which carry events across again.
	eventually(t, 15*time.Second, "both subscriptions are restored", func() bool {
		return brokerA.live.Load() && brokerB.live.Load()
	})
	assertOpen(t, "the user's other session's stream", otherOnB)
	assertOpen(t, "another user's stream", bobOnB)
	if err := hubA.PublishEvent(ctx, Envelope{Type: EventUsers, Room: "lobby"}, []string{"x"}); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []*Subscriber{otherOnB, bobOnB} {
		if frameWithin(sub, 10*time.Second) == nil {
			t.Fatal("a stream that stays got no event from the other instance")
		}
	}
}

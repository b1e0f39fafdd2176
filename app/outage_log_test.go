package app

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"papo/models"
)

// flakyStore is a database that fails while its failures last: the
// writer's store and the hub's source at once. Stored messages get ids in
// order.
type flakyStore struct {
	mu       sync.Mutex
	last     int64
	fails    int   // InsertMessages calls still to fail
	err      error // what they fail with
	pollFail atomic.Int32
	polls    atomic.Int32
}

var errDown = errors.New("dial tcp 127.0.0.1:3306: connect: connection refused")

func (s *flakyStore) InsertMessages(_ context.Context, msgs []*models.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fails > 0 {
		s.fails--
		return s.err
	}
	for _, m := range msgs {
		s.last++
		m.ID = s.last
	}
	return nil
}

// ProbeWrite fails while commits would.
func (s *flakyStore) ProbeWrite(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fails > 0 {
		return s.err
	}
	return nil
}

func (s *flakyStore) LastMessageID(context.Context) (int64, error) {
	s.polls.Add(1)
	if s.pollFail.Load() > 0 {
		s.pollFail.Add(-1)
		return 0, errDown
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, nil
}

func (s *flakyStore) MessagesAfter(context.Context, int64, int) ([]models.Message, error) {
	return nil, nil
}

// switchBroker fails every publish while down.
type switchBroker struct {
	scriptedBroker
	down atomic.Bool
}

func (b *switchBroker) Publish(context.Context, ...Envelope) error {
	if b.down.Load() {
		return errors.New("redis: connection refused")
	}
	return nil
}

func startFlakyHub(t *testing.T, s *flakyStore, b Broker, opts HubOptions) *Hub {
	t.Helper()
	log, _ := newTestLog(t)
	h := NewHub("this-instance", b, s, log, opts)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	return h
}

func testMessage(body string) *models.Message {
	return &models.Message{Room: "general", Kind: models.KindUser, UserID: 1, Username: "ana", Body: body, CreatedAt: time.Now().UTC()}
}

// A database outage shows in the writer's log as one ERROR line when it
// starts and one INFO line, with the count of failed batches, when it ends;
// every failed post is still answered 503.
func TestWriterLogsAnOutageOnce(t *testing.T) {
	store := &flakyStore{fails: 5, err: errDown}
	h := startFlakyHub(t, store, &scriptedBroker{}, HubOptions{Poll: time.Hour})
	log, logs := newTestLog(t)
	w := NewWriter(store, h, log)
	defer w.Close()
	ctx := context.Background()
	for i := range 5 {
		_, err := w.Store(ctx, testMessage("lost"))
		if e := AsError(err); err == nil || e.Kind != KindUnavailable {
			t.Fatalf("post %d in the outage: %v, want a 503", i, err)
		}
	}
	for range 3 {
		if _, err := w.Store(ctx, testMessage("kept")); err != nil {
			t.Fatal(err)
		}
	}
	if n := logs.count("level=ERROR"); n != 1 {
		t.Errorf("%d ERROR lines over the outage, want 1", n)
	}
	if n := logs.count("writer: storing messages failed"); n != 1 {
		t.Errorf("%d 'storing messages failed' lines, want 1", n)
	}
	if n := logs.count("level=INFO msg=\"writer: storing messages works again\" failed_batches=5 failed_messages=5"); n != 1 {
		t.Errorf("%d recovery lines with failed_batches=5, want 1", n)
	}
	// A second outage is logged again.
	store.mu.Lock()
	store.fails = 1
	store.mu.Unlock()
	if _, err := w.Store(ctx, testMessage("lost")); err == nil {
		t.Fatal("stored in the second outage")
	}
	if _, err := w.Store(ctx, testMessage("kept")); err != nil {
		t.Fatal(err)
	}
	if n := logs.count("writer: storing messages failed"); n != 2 {
		t.Errorf("%d 'storing messages failed' lines after two outages, want 2", n)
	}
	if n := logs.count("failed_batches=1 "); n != 1 {
		t.Errorf("%d recovery lines with failed_batches=1, want 1", n)
	}
}

// A commit whose outcome is unknown is answered 503 without claiming that
// nothing was stored, and logged as such.
func TestWriterOutcomeUnknownDoesNotClaimNothingStored(t *testing.T) {
	store := &flakyStore{fails: 1, err: errors.Join(models.ErrOutcomeUnknown, errDown)}
	h := startFlakyHub(t, store, &scriptedBroker{}, HubOptions{Poll: time.Hour})
	log, logs := newTestLog(t)
	w := NewWriter(store, h, log)
	defer w.Close()
	_, err := w.Store(context.Background(), testMessage("maybe"))
	e := AsError(err)
	if err == nil || e.Kind != KindUnavailable {
		t.Fatalf("Store = %v, want a 503", err)
	}
	if strings.Contains(e.Message, "nothing was stored") || !strings.Contains(e.Message, "may") {
		t.Errorf("the answer to an unknown outcome says %q", e.Message)
	}
	if n := logs.count("may or may not be stored"); n != 1 {
		t.Errorf("%d lines saying the outcome is unknown, want 1", n)
	}
	// A plain failure still says nothing was stored.
	store.mu.Lock()
	store.fails, store.err = 1, errDown
	store.mu.Unlock()
	_, err = w.Store(context.Background(), testMessage("lost"))
	if e := AsError(err); !strings.Contains(e.Message, "nothing was stored") {
		t.Errorf("a plain failure says %q", e.Message)
	}
}

// The hub's safety poll logs a database outage once when it starts and
// once when it ends, not every poll.
func TestSafetyPollLogsAnOutageOnce(t *testing.T) {
	store := &flakyStore{}
	log, logs := newTestLog(t)
	h := NewHub("this-instance", &scriptedBroker{}, store, log, HubOptions{Poll: 5 * time.Millisecond})
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	const failures = 20
	start := store.polls.Load()
	store.pollFail.Store(failures)
	eventually(t, 10*time.Second, "the polls to go through the outage and past it", func() bool {
		return store.polls.Load() >= start+failures+3
	})
	h.Stop()
	if n := logs.count("hub: safety poll: the database does not answer"); n != 1 {
		t.Errorf("%d outage lines, want 1", n)
	}
	if n := logs.count("hub: safety poll: the database answers again\" failed_polls=20"); n != 1 {
		t.Errorf("%d recovery lines with failed_polls=20, want 1", n)
	}
	if n := strings.Count(logs.String(), "\n"); n != 2 {
		t.Errorf("%d lines logged, want 2:\n%s", n, logs.String())
	}
}

// Typing and command replies published while the broker is down are
// logged once when publishing starts failing and once when it works again.
func TestTypingAndReplyPublishesLogAnOutageOnce(t *testing.T) {
	b := &switchBroker{}
	store := &flakyStore{}
	h := startFlakyHub(t, store, b, HubOptions{Poll: time.Hour})
	log, logs := newTestLog(t)
	typing := NewTyping(h, time.Hour, log)
	defer typing.Close()
	chat := &Chat{hub: h, log: log}
	ctx := context.Background()
	ana := UserRef{ID: 1, Name: "ana"}

	b.down.Store(true)
	for range 5 {
		typing.Set(ctx, "general", ana, true)
		typing.Set(ctx, "general", ana, false)
		chat.publishReply(ctx, ana, "general", Reply{})
	}
	b.down.Store(false)
	typing.Set(ctx, "general", ana, true)
	chat.publishReply(ctx, ana, "general", Reply{})
	typing.Set(ctx, "general", ana, false)
	chat.publishReply(ctx, ana, "general", Reply{})

	for _, what := range []string{
		"typing: publishing to other instances failed",
		"typing: publishing to other instances works again\" failed_events=10",
		"chat: replies: publishing to other instances failed",
		"chat: replies: publishing to other instances works again\" failed_events=5",
	} {
		if n := logs.count(what); n != 1 {
			t.Errorf("%d lines with %q, want 1", n, what)
		}
	}
	if n := strings.Count(logs.String(), "\n"); n != 4 {
		t.Errorf("%d lines logged, want 4:\n%s", n, logs.String())
	}
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

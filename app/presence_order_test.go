package app

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"papo/models"
	"papo/models/modelstest"
)

// leaveGate holds back the commit of any batch that carries a leave, as a
// slow writer or a descheduled instance would, until it is opened. The
// store behind it is the real one.
type leaveGate struct {
	Store
	instance string

	held    chan string // the instance, once it holds a leave back
	release chan struct{}
	settled chan []*models.Message // the held batch, once stored
}

func (g *leaveGate) InsertMessages(ctx context.Context, msgs []*models.Message) error {
	if !slices.ContainsFunc(msgs, func(m *models.Message) bool { return m.Event == models.EventLeave }) {
		return g.Store.InsertMessages(ctx, msgs)
	}
	g.held <- g.instance
	<-g.release
	err := g.Store.InsertMessages(ctx, msgs)
	g.settled <- msgs
	return err
}

// TestALateLeaveDoesNotFollowTheRejoinInHistory: two instances on one
// Redis and one database. A user's last stream closes on one; the leave
// is decided when the grace runs out, but its instance is slow to store
// it; meanwhile the user opens a stream on the other instance, which
// decides and stores the join at once. The leave, reaching the database
// last, must not be stored after the join: the room's history would say
// the user left while they are online.
func TestALateLeaveDoesNotFollowTheRejoinInHistory(t *testing.T) {
	url := requireRedis(t)
	store := modelstest.Open(t, models.SQLite)
	ctx := context.Background()
	ana := &models.User{Username: "ana", PasswordHash: "x", CreatedAt: time.Now().UTC()}
	must(t, store.CreateUser(ctx, ana))
	user := UserRef{ID: ana.ID, Name: ana.Username}

	cfg, err := LoadConfig(func(string) string { return "" })
	must(t, err)
	cfg.RedisURL = url
	cfg.RedisPrefix = testPrefix(t, url)
	cfg.LeaveGrace = 200 * time.Millisecond
	cfg.Limits.Enabled = false
	held := make(chan string, 2)
	release := make(chan struct{})
	settled := make(chan []*models.Message, 2)
	start := func(name string) *App {
		gate := &leaveGate{Store: store, instance: name, held: held, release: release, settled: settled}
		a, err := New(ctx, cfg, gate, slog.New(slog.DiscardHandler), Options{BcryptCost: 4})
		must(t, err)
		t.Cleanup(a.Close)
		return a
	}
	insts := map[string]*App{"a": start("a"), "b": start("b")}
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})

	must(t, insts["a"].Presence.Connect(ctx, "general", user))
	insts["a"].Presence.Disconnect(ctx, "general", user)
	var slow string
	select {
	case slow = <-held:
	case <-time.After(15 * time.Second):
		t.Fatal("no instance decided the leave")
	}
	other := map[string]string{"a": "b", "b": "a"}[slow]
	must(t, insts[other].Presence.Connect(ctx, "general", user))
	eventually(t, 10*time.Second, "the rejoin is stored", func() bool {
		return len(presenceHistory(t, store)) == 2
	})
	close(release)
	select {
	case batch := <-settled:
		for _, m := range batch {
			if m.Event == models.EventLeave && m.ID != 0 {
				t.Fatalf("the late leave was stored, as message %d", m.ID)
			}
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the held leave never reached the database")
	}
	if got := presenceHistory(t, store); !slices.Equal(got, []string{models.EventJoin, models.EventJoin}) {
		t.Fatalf("ana's presence in general's history: %v, want join, join (the late leave dropped)", got)
	}
	for name, a := range insts {
		if got, _ := a.Presence.Online(ctx, "general"); !slices.Equal(got, []string{"ana"}) {
			t.Fatalf("online on %s: %v", name, got)
		}
	}
}

// presenceHistory lists the joins and leaves stored, in id order.
func presenceHistory(t *testing.T, store *models.Store) []string {
	t.Helper()
	msgs, err := store.MessagesAfter(context.Background(), 0, 100)
	must(t, err)
	var events []string
	for _, m := range msgs {
		if m.Kind == models.KindSystem {
			events = append(events, m.Event)
		}
	}
	return events
}

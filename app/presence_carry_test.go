package app

import (
	"context"
	"slices"
	"testing"
	"time"

	"papo/models"
	"papo/models/modelstest"
)

// all returns every change recorded, without the instance.
func (l *changeLog) all() []PresenceChange {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]PresenceChange, len(l.changes))
	for i, c := range l.changes {
		out[i] = c.PresenceChange
	}
	return out
}

func TestPresenceCarriedAcrossAStop(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, store *models.Store) {
		ctx := context.Background()
		const grace = 300 * time.Millisecond
		ana, bia := UserRef{ID: 1, Name: "ana"}, UserRef{ID: 2, Name: "bia"}

		before := NewMemoryPresence(grace, func(PresenceChange) {})
		for _, c := range []struct {
			room string
			user UserRef
		}{{"general", ana}, {"general", bia}, {"dev", bia}} {
			if err := before.Connect(ctx, c.room, c.user); err != nil {
				t.Fatal(err)
			}
		}
		// A graceful stop ends the streams first: everyone is in the grace.
		before.Disconnect(ctx, "general", ana)
		before.Disconnect(ctx, "general", bia)
		before.Disconnect(ctx, "dev", bia)
		if err := savePresence(ctx, store, before, time.Now()); err != nil {
			t.Fatal(err)
		}
		_ = before.Close()

		var log changeLog
		after := NewMemoryPresence(grace, log.notifier("after"))
		t.Cleanup(func() { _ = after.Close() })
		n, err := restorePresence(ctx, store, after, time.Now())
		if err != nil || n != 3 {
			t.Fatalf("restored %d, %v; want 3", n, err)
		}
		if names, _ := after.Online(ctx, "general"); !slices.Equal(names, []string{"ana", "bia"}) {
			t.Fatalf("online in general after the restart: %v", names)
		}
		// ana's client reconnects within the grace: no join, no leave.
		if err := after.Connect(ctx, "general", ana); err != nil {
			t.Fatal(err)
		}
		time.Sleep(grace + 200*time.Millisecond)
		got := log.all()
		want := []PresenceChange{{Room: "dev", User: bia}, {Room: "general", User: bia}}
		slices.SortFunc(got, func(a, b PresenceChange) int { return compareFold(a.Room, b.Room) })
		if !slices.Equal(got, want) {
			t.Fatalf("changes after the restart: %+v, want bia leaving both rooms and nothing of ana", got)
		}
		if names, _ := after.Online(ctx, "general"); !slices.Equal(names, []string{"ana"}) {
			t.Fatalf("online in general after the grace: %v", names)
		}
		// The stored presence is taken once.
		if n, err := restorePresence(ctx, store, NewMemoryPresence(grace, log.notifier("after")), time.Now()); n != 0 || err != nil {
			t.Fatalf("a second start restored %d, %v", n, err)
		}
	})
}

func TestPresenceNotCarriedAcrossALongStop(t *testing.T) {
	store := modelstest.Open(t, models.SQLite)
	ctx := context.Background()
	before := NewMemoryPresence(time.Second, func(PresenceChange) {})
	if err := before.Connect(ctx, "general", UserRef{ID: 1, Name: "ana"}); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now().Add(-presenceCarryMax - time.Second)
	if err := savePresence(ctx, store, before, stoppedAt); err != nil {
		t.Fatal(err)
	}
	var log changeLog
	after := NewMemoryPresence(50*time.Millisecond, log.notifier("after"))
	t.Cleanup(func() { _ = after.Close() })
	if n, err := restorePresence(ctx, store, after, time.Now()); n != 0 || err != nil {
		t.Fatalf("restored %d, %v after a stop longer than %v", n, err, presenceCarryMax)
	}
	time.Sleep(200 * time.Millisecond)
	if got := log.all(); len(got) != 0 {
		t.Fatalf("changes: %+v; nobody should be announced", got)
	}
	if _, ok, err := store.TakeSetting(ctx, presenceSetting); ok || err != nil {
		t.Fatalf("the stale presence was left behind (%v, %v)", ok, err)
	}
}

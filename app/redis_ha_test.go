package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"papo/models"
	"papo/models/modelstest"
)

// Helpers of the tests that run instances on a highly available Redis
// (a Cluster, Sentinels).

// namedUser stores a user named name.
func namedUser(t *testing.T, store *models.Store, name string) UserRef {
	t.Helper()
	u := &models.User{Username: name, PasswordHash: "x", CreatedAt: time.Now().UTC()}
	must(t, store.CreateUser(context.Background(), u))
	return UserRef{ID: u.ID, Name: name}
}

// redisConfig is the configuration of an instance on the Redis at url.
func redisConfig(t *testing.T, url, prefix string) Config {
	t.Helper()
	cfg, err := LoadConfig(func(string) string { return "" })
	must(t, err)
	cfg.RedisURL = url
	cfg.RedisPrefix = prefix
	cfg.LeaveGrace = 200 * time.Millisecond
	cfg.Limits.Enabled = false
	return cfg
}

// startInstances starts n instances on cfg, sharing store.
func startInstances(t *testing.T, cfg Config, store *models.Store, n int) []*App {
	t.Helper()
	var insts []*App
	for range n {
		a, err := New(context.Background(), cfg, store, slog.New(slog.DiscardHandler), Options{BcryptCost: 4})
		must(t, err)
		t.Cleanup(a.Close)
		insts = append(insts, a)
	}
	return insts
}

// openStream opens a stream of u's on inst, in general, with a session
// of its own.
func openStream(t *testing.T, inst *App, store *models.Store, u UserRef) *Stream {
	t.Helper()
	ctx := context.Background()
	st, err := inst.Chat.OpenStream(ctx, u, sweepSession(t, store, u, time.Now().Add(time.Hour)), "general", "")
	must(t, err)
	t.Cleanup(func() { st.Close(ctx) })
	return st
}

// typingCrosses reports whether typist's typing, set on from, reaches the
// stream to (on another instance: only Redis carries it there).
func typingCrosses(t *testing.T, from *App, typist UserRef, to *Stream) bool {
	t.Helper()
	ctx := context.Background()
	must(t, from.Chat.SetTyping(ctx, typist, "general", true))
	defer func() { must(t, from.Chat.SetTyping(ctx, typist, "general", false)) }()
	deadline := time.Now().Add(300 * time.Millisecond)
	for {
		f := frameWithin(to.Sub, time.Until(deadline))
		if f == nil {
			return false
		}
		if strings.Contains(string(f.Bytes), "event: typing") && strings.Contains(string(f.Bytes), `"typing":true`) {
			return true
		}
	}
}

// rideOutFailover runs two instances on the Redis at url, then kills its
// master, and waits until promoted says a replica took over. Then the
// instances must find the new master by themselves: the events only
// Redis carries between instances (typing) cross again, and a user who
// joins on one is online on the other.
func rideOutFailover(t *testing.T, url, prefix string, kill func(), promoted func() bool) {
	t.Helper()
	store := modelstest.Open(t, models.SQLite)
	ctx := context.Background()
	ana, bia, cy := namedUser(t, store, "ana"), namedUser(t, store, "bia"), namedUser(t, store, "cy")
	insts := startInstances(t, redisConfig(t, url, prefix), store, 2)
	a, b := insts[0], insts[1]
	anaOnA := openStream(t, a, store, ana)
	openStream(t, b, store, bia)
	res, err := b.Chat.Post(ctx, bia, "general", "before the failover")
	must(t, err)
	waitForMessage(t, anaOnA, res.Message.ID, "before the failover")
	if !typingCrosses(t, b, bia, anaOnA) {
		t.Fatal("typing does not cross before the failover")
	}

	kill()
	killed := time.Now()
	eventually(t, 30*time.Second, "a replica takes over", promoted)
	tookOver := time.Since(killed)
	eventually(t, 30*time.Second, "typing crosses again", func() bool { return typingCrosses(t, b, bia, anaOnA) })
	crossing := time.Since(killed)
	openStream(t, b, store, cy)
	eventually(t, 30*time.Second, "a sees who joined on b", func() bool {
		got, err := a.Presence.Online(ctx, "general")
		return err == nil && slices.Equal(got, []string{"ana", "bia", "cy"}) && a.Presence.(*RedisPresence).usable()
	})
	t.Logf("replica promoted %v after the master died; typing crossed again after %v; presence shared again after %v",
		tookOver.Round(10*time.Millisecond), crossing.Round(10*time.Millisecond), time.Since(killed).Round(10*time.Millisecond))
}

// waitForMessage reads st's queue until the message id arrives, and
// checks its text. A busy room's frame may carry several messages.
func waitForMessage(t *testing.T, st *Stream, id int64, text string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		f := frameWithin(st.Sub, time.Until(deadline))
		if f == nil {
			continue
		}
		for _, event := range strings.Split(strings.TrimSpace(string(f.Bytes)), "\n\n") {
			if !strings.HasPrefix(event, fmt.Sprintf("id: %d\n", id)) {
				continue
			}
			_, data, _ := strings.Cut(event, "data: ")
			var m Message
			must(t, json.Unmarshal([]byte(data), &m))
			if m.Message != text {
				t.Fatalf("message %d says %q, want %q", id, m.Message, text)
			}
			return
		}
	}
	t.Fatalf("message %d did not arrive", id)
}

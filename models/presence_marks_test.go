package models_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"papo/models"
	"papo/models/modelstest"
)

// presenceMessage is a join or leave as the announcer stores it, its
// stamp written into the body so that a test can read the order back.
func presenceMessage(u *models.User, room string, stamp int64) *models.Message {
	event := models.EventJoin
	if stamp%2 == 0 {
		event = models.EventLeave
	}
	return &models.Message{
		Room: room, Kind: models.KindSystem, UserID: u.ID, Username: u.Username,
		Event: event, Body: fmt.Sprintf("%s %s #%d", u.Username, event, stamp),
		CreatedAt: time.Now().UTC(), PresenceStamp: stamp,
	}
}

// storedStamps lists the stamps of the room's stored presence messages
// in id order (the order the room's history shows them), and checks that
// the ids are 1..N.
func storedStamps(t *testing.T, s *models.Store, room string) []int64 {
	t.Helper()
	msgs, err := s.MessagesAfter(context.Background(), 0, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	var stamps []int64
	for i, m := range msgs {
		if m.ID != int64(i+1) {
			t.Fatalf("ids not 1..N: position %d holds %d", i, m.ID)
		}
		if m.Room != room || m.Kind != models.KindSystem {
			continue
		}
		_, num, ok := strings.Cut(m.Body, "#")
		stamp, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil {
			t.Fatalf("body %q carries no stamp", m.Body)
		}
		stamps = append(stamps, stamp)
	}
	return stamps
}

// TestSupersededPresenceIsNotStored: a join or leave that reaches the
// database after a later decision for the same user and room was stored
// is dropped, not stored after it; everything else in its batch is
// stored, with ids still gapless.
func TestSupersededPresenceIsNotStored(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, s *models.Store) {
		ctx := context.Background()
		ana, bea := newUser(t, s, "ana"), newUser(t, s, "bea")
		chat := func(u *models.User, body string) *models.Message {
			return &models.Message{Room: "general", Kind: models.KindUser, UserID: u.ID, Username: u.Username, Body: body, CreatedAt: time.Now().UTC()}
		}
		steps := []struct {
			name   string
			batch  []*models.Message
			stored []bool
		}{
			{"a join", []*models.Message{presenceMessage(ana, "general", 11)}, []bool{true}},
			{"the leave before it, late", []*models.Message{presenceMessage(ana, "general", 10), chat(ana, "hi")}, []bool{false, true}},
			{"the same stamp again", []*models.Message{presenceMessage(ana, "general", 11)}, []bool{false}},
			{"another room keeps its own order", []*models.Message{presenceMessage(ana, "other", 3)}, []bool{true}},
			{"another user too", []*models.Message{presenceMessage(bea, "general", 5)}, []bool{true}},
			{"a later leave and join in one batch", []*models.Message{presenceMessage(ana, "general", 12), presenceMessage(ana, "general", 13)}, []bool{true, true}},
			{"in one batch, the later first", []*models.Message{presenceMessage(bea, "general", 7), chat(bea, "yo"), presenceMessage(bea, "general", 6)}, []bool{true, true, false}},
			{"a batch of superseded ones alone", []*models.Message{presenceMessage(ana, "general", 9), presenceMessage(bea, "general", 4)}, []bool{false, false}},
			{"unstamped system messages always go in", []*models.Message{{Room: "general", Kind: models.KindSystem, UserID: ana.ID, Username: "ana", Event: models.EventLeave, Body: "ana left the chat #0", CreatedAt: time.Now().UTC()}}, []bool{true}},
		}
		for _, step := range steps {
			if err := s.InsertMessages(ctx, step.batch); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			for i, m := range step.batch {
				if got := m.ID != 0; got != step.stored[i] {
					t.Fatalf("%s: message %d (%q) stored %v, want %v", step.name, i, m.Body, got, step.stored[i])
				}
			}
		}
		want := []int64{11, 5, 12, 13, 7, 0}
		if got := storedStamps(t, s, "general"); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("general's presence history %v, want %v", got, want)
		}
		if last, _ := s.LastMessageID(ctx); last != 9 {
			t.Fatalf("last id %d, want 9 (every stored message, no more)", last)
		}
		if got, _ := s.UserByID(ctx, ana.ID); got.MessageCount != 1 {
			t.Fatalf("ana's count %d, want 1: presence messages are not counted", got.MessageCount)
		}
	})
}

// TestPresenceStoredInDecidedOrderUnderRace: several writers (as several
// instances' announcers) store one user's decisions, each handed to a
// writer at random and in no order. Whatever reaches the room's history
// is in stamp order, and the last decision is always there.
func TestPresenceStoredInDecidedOrderUnderRace(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, s *models.Store) {
		ctx := context.Background()
		ana := newUser(t, s, "ana")
		const writers, decisions = 4, 200
		work := make([]chan int64, writers)
		for i := range work {
			work[i] = make(chan int64, decisions)
		}
		for stamp := int64(1); stamp <= decisions; stamp++ {
			work[rand.IntN(writers)] <- stamp
		}
		var wg sync.WaitGroup
		for _, ch := range work {
			close(ch)
			wg.Add(1)
			go func() {
				defer wg.Done()
				var batch []*models.Message
				for stamp := range ch {
					batch = append(batch, presenceMessage(ana, "general", stamp))
					if len(batch) == 1+rand.IntN(3) {
						if err := s.InsertMessages(ctx, batch); err != nil {
							t.Error(err)
							return
						}
						batch = nil
					}
				}
				if err := s.InsertMessages(ctx, batch); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		got := storedStamps(t, s, "general")
		for i := 1; i < len(got); i++ {
			if got[i] <= got[i-1] {
				t.Fatalf("stored out of decided order: %d after %d (%v)", got[i], got[i-1], got)
			}
		}
		if len(got) == 0 || got[len(got)-1] != decisions {
			t.Fatalf("the last decision (%d) is not the last stored: %v", decisions, got)
		}
		t.Logf("%d of %d decisions stored, in order", len(got), decisions)
	})
}

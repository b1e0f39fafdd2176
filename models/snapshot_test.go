package models_test

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"papo/models"
	"papo/models/modelstest"
)

// TestVisibleReadsOneSnapshot: the visibility rule is read as three
// queries (the room's messages, the reader's sent and received private
// ones). While batches commit, each holding a room message and then a
// private message to the reader, every page must be one moment of the
// history: a page that shows a batch's private message shows its room
// message too. Read at three moments, a page could show the private
// message of a batch whose room message it missed, and a client that
// takes the page's newest id as its cursor would never get that one.
func TestVisibleReadsOneSnapshot(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, s *models.Store) {
		ctx := context.Background()
		ana, bia := newUser(t, s, "ana"), newUser(t, s, "bia")
		v := models.Visibility{Room: "attic", UserID: bia.ID}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				now := time.Now().UTC().Truncate(time.Millisecond)
				batch := []*models.Message{
					{Room: "attic", Kind: models.KindUser, UserID: ana.ID, Username: ana.Username, Body: "room", CreatedAt: now},
					{Room: "lobby", Kind: models.KindPrivate, UserID: ana.ID, Username: ana.Username,
						ToUserID: &bia.ID, ToUsername: bia.Username, Body: "private", CreatedAt: now},
				}
				if err := s.InsertMessages(ctx, batch); err != nil {
					t.Error(err)
					return
				}
			}
		})
		defer func() { close(stop); wg.Wait() }()

		// Every message is visible to bia, so a page from one moment is a
		// run of consecutive ids that ends with a private message.
		deadline := time.Now().Add(time.Second)
		pages := 0
		for time.Now().Before(deadline) {
			page, err := s.VisibleBefore(ctx, v, math.MaxInt64, 20)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				continue
			}
			pages++
			for i := 1; i < len(page); i++ {
				if page[i].ID != page[i-1].ID+1 {
					t.Fatalf("page %d skips from %d to %d: not one moment of the history", pages, page[i-1].ID, page[i].ID)
				}
			}
			if n := len(page); page[n-1].Kind != models.KindPrivate {
				t.Fatalf("page %d ends with %d, a room message whose batch's private message it does not show", pages, page[n-1].ID)
			}
			after, err := s.VisibleAfter(ctx, v, max(0, page[0].ID-1), 1000)
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i < len(after); i++ {
				if after[i].ID != after[i-1].ID+1 {
					t.Fatalf("a read after %d skips from %d to %d", page[0].ID-1, after[i-1].ID, after[i].ID)
				}
			}
		}
		t.Logf("%d pages read while batches committed", pages)
	})
}

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"papo/e2e/client"
)

// TestResumeAcrossInstancesUnderLoad is DELIVERY.md's test through three
// instances: five writers post concurrently, each through all instances in
// turn, while a reader is cut off at random moments and reconnects to a
// random instance with its Last-Event-ID. In the end the ids it received
// are exactly the stored ids it may see: none missing, none twice, in
// increasing order.
func TestResumeAcrossInstancesUnderLoad(t *testing.T) {
	db := newMariaDB(t)
	redisURL, prefix := sharedRedis(t)
	servers := startCluster(t, 3, db, redisURL, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	at := func(c *client.Client, s *Server) *client.Client { return &client.Client{Base: s.URL, HTTP: c.HTTP} }
	reader := client.New(servers[0].URL, nil)
	if _, err := reader.Register(ctx, "reader", "correct horse"); err != nil {
		t.Fatal(err)
	}
	const writers, each = 5, 60
	var wg sync.WaitGroup
	for w := range writers {
		c := client.New(servers[w%3].URL, nil)
		if _, err := c.Register(ctx, fmt.Sprintf("writer%d", w), "correct horse"); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				text := fmt.Sprintf("w%d m%d", w, i)
				if i%10 == 0 {
					text = "/msg reader private " + text // private ones count too
				}
				if _, err := at(c, servers[(w+i)%3]).Post(ctx, "general", text); err != nil {
					t.Errorf("post: %v", err)
					return
				}
			}
		}()
	}
	posting := make(chan struct{})
	go func() { wg.Wait(); close(posting) }()

	rng := rand.New(rand.NewPCG(7, 11))
	var received []int64
	cursor := "0" // from the start, to compare with the whole history
	take := func(st *client.Stream, n int, until <-chan struct{}) {
		events := make(chan client.Event)
		go func() {
			defer close(events)
			for {
				ev, err := st.Next()
				if err != nil {
					return
				}
				select {
				case events <- ev:
				case <-ctx.Done():
					return
				}
			}
		}()
		quiet := time.NewTimer(time.Hour)
		for n > 0 {
			select {
			case ev, ok := <-events:
				if !ok {
					return
				}
				if ev.Type == "message" {
					m, _ := client.DecodeMessage(ev)
					received = append(received, m.ID)
					cursor = ev.ID
					n--
				}
			case <-until:
				until = nil
				quiet.Reset(time.Second) // drain what is still coming, then stop
			case <-quiet.C:
				_ = st.Close()
				for range events {
				}
				return
			}
		}
		_ = st.Close()
		for range events {
		}
	}
	for cut := 0; cut <= 4; cut++ {
		s := servers[rng.IntN(3)]
		st, err := at(reader, s).Open(ctx, "general", cursor)
		if err != nil {
			t.Fatal(err)
		}
		if cut < 4 {
			take(st, 5+rng.IntN(30), nil)
		} else {
			take(st, 1<<30, posting)
		}
	}
	// A last resume on yet another instance picks up anything in flight.
	st, err := at(reader, servers[1]).Open(ctx, "general", cursor)
	if err != nil {
		t.Fatal(err)
	}
	replayed, err := st.Backlog()
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	for _, m := range replayed {
		received = append(received, m.ID)
	}

	history, err := reader.AllHistory(ctx, "general")
	if err != nil {
		t.Fatal(err)
	}
	stored := make([]int64, len(history))
	for i, m := range history {
		stored[i] = m.ID
	}
	if !slices.Equal(received, stored) {
		t.Fatalf("received %d ids, stored %d visible\nreceived: %v\nstored:   %v", len(received), len(stored), received, stored)
	}
	if len(stored) < writers*each {
		t.Fatalf("only %d messages stored", len(stored))
	}
	t.Logf("%d messages through 3 instances, 5 cuts, all received once and in order", len(stored))
}

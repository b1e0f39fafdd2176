package app

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"papo/models"
	"papo/models/modelstest"
)

// A message reaches a room's subscribers in the order they subscribed
// (see subscribers), whatever came and went in between, and never one
// that left.
func TestRoomSubscribersHearInSubscriptionOrder(t *testing.T) {
	store := modelstest.Open(t, models.SQLite)
	b := &scriptedBroker{}
	h := startHub(t, store, b, HubOptions{Poll: time.Hour})

	var (
		mu     sync.Mutex
		woken  []string
		record bool
	)
	var all []*Subscriber
	subscribe := func(name, room string) *Subscriber {
		// Two users, each with streams in both rooms.
		s, err := h.Subscribe(room, UserRef{ID: int64(len(all) % 2), Name: name}, "s")
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, s)
		s.OnReady(func() {
			mu.Lock()
			if record && !s.Ended() {
				woken = append(woken, name)
			}
			mu.Unlock()
		})
		return s
	}
	subs := map[string]*Subscriber{}
	var want []string
	for i := range 12 {
		name := fmt.Sprintf("g%02d", i)
		subs[name] = subscribe(name, "general")
		want = append(want, name)
		subscribe(fmt.Sprintf("o%02d", i), "other") // interleaved, elsewhere
	}
	// Some leave: first, last, middle, and one twice.
	for _, name := range []string{"g00", "g11", "g05", "g05"} {
		h.Unsubscribe(subs[name])
		want = slices.DeleteFunc(want, func(n string) bool { return n == name })
	}
	// Newcomers come after everyone already there.
	for _, name := range []string{"g12", "g13"} {
		subs[name] = subscribe(name, "general")
		want = append(want, name)
	}

	mu.Lock()
	record = true
	mu.Unlock()
	msgs := storeMessages(t, store, "general", 1)
	b.deliver(messageEnvelope(msgs[0]))
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(woken)
		mu.Unlock()
		if n >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	if !slices.Equal(woken, want) {
		t.Errorf("woken %v\nwant  %v", woken, want)
	}
	record = false
	mu.Unlock()
	if n := h.Subscribers(); n != 12+12-3+2 {
		t.Errorf("%d subscribers, want %d", n, 12+12-3+2)
	}
	// Once all have left, nothing is kept for any room or user.
	for _, s := range all {
		h.Unsubscribe(s)
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if len(h.rooms) != 0 || len(h.users) != 0 || h.all != 0 {
		t.Errorf("left behind: rooms %v, users %v, count %d", h.rooms, h.users, h.all)
	}
}

package app

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"papo/models"
	"papo/models/modelstest"
)

// frameIDs lists the message ids a frame carries.
func frameIDs(f *Frame) []int64 {
	if f.ID == 0 {
		return nil
	}
	if f.Parts == nil {
		return []int64{f.ID}
	}
	var out []int64
	for _, p := range f.Parts {
		out = append(out, p.ID)
	}
	return out
}

func nextFrame(t *testing.T, sub *Subscriber) *Frame {
	t.Helper()
	f := frameWithin(sub, 5*time.Second)
	if f == nil {
		t.Fatal("no frame")
	}
	return f
}

func TestCoalescedMessagesKeepOrderAndAllArrive(t *testing.T) {
	store := modelstest.Open(t, models.SQLite)
	h := startHub(t, store, LocalBroker{}, HubOptions{Coalesce: 200 * time.Millisecond, Poll: time.Hour})
	ana, _ := h.Subscribe("general", UserRef{ID: 1, Name: "ana"}, "a")
	other, _ := h.Subscribe("random", UserRef{ID: 2, Name: "bia"}, "b")
	msg := func(id int64, room string) Envelope {
		return Envelope{Type: EventMessage, Room: room, ID: id, Origin: "x", Data: json.RawMessage(`{}`)}
	}
	// 1 goes at once (a quiet room); 2 and 3 come within the interval and
	// are held; 4, in another room, goes at once.
	h.enqueue(msg(1, "general"))
	if got := frameIDs(nextFrame(t, ana)); fmt.Sprint(got) != "[1]" {
		t.Fatalf("first frame %v", got)
	}
	h.enqueue(msg(2, "general"))
	h.enqueue(msg(3, "general"))
	h.enqueue(msg(4, "random"))
	if got := frameIDs(nextFrame(t, other)); fmt.Sprint(got) != "[4]" {
		t.Fatalf("other room %v", got)
	}
	start := time.Now()
	f := nextFrame(t, ana)
	if got := frameIDs(f); fmt.Sprint(got) != "[2 3]" {
		t.Fatalf("held frame %v", got)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Fatalf("held for %v", waited)
	}
	// A stream whose backlog already sent 2 takes only 3 from the frame.
	rest, last := f.Since(2)
	if last != 3 || string(rest) != string(EncodeFrame(3, EventMessage, []byte(`{}`)).Bytes) {
		t.Fatalf("Since(2): %q, %d", rest, last)
	}
	if b, last := f.Since(3); b != nil || last != 3 {
		t.Fatalf("Since(3): %q, %d", b, last)
	}
	if b, last := f.Since(1); len(b) != len(f.Bytes) || last != 3 {
		t.Fatalf("Since(1): %q, %d", b, last)
	}

	// An ephemeral event, or a private message, waits for what is held:
	// the room sees events in the hub's order.
	h.enqueue(msg(5, "general"))
	h.enqueue(Envelope{Type: EventUsers, Room: "general", Origin: "x", Data: json.RawMessage(`{}`)})
	if got := frameIDs(nextFrame(t, ana)); fmt.Sprint(got) != "[5]" {
		t.Fatalf("before the users event: %v", got)
	}
	if f := nextFrame(t, ana); f.ID != 0 {
		t.Fatalf("want the users event, got message %d", f.ID)
	}
	h.enqueue(msg(6, "general"))
	h.enqueue(Envelope{Type: EventMessage, Room: "random", ID: 7, Private: true, From: 2, To: 1, Origin: "x", Data: json.RawMessage(`{}`)})
	if got := frameIDs(nextFrame(t, ana)); fmt.Sprint(got) != "[6]" {
		t.Fatalf("before the private message: %v", got)
	}
	if got := frameIDs(nextFrame(t, ana)); fmt.Sprint(got) != "[7]" {
		t.Fatalf("private message: %v", got)
	}
}

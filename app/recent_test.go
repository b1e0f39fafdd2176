package app

import (
	"testing"

	"papo/models"
)

func ringIDs(frames []*Frame) []int64 {
	out := make([]int64, len(frames))
	for i, f := range frames {
		out[i] = f.ID
	}
	return out
}

func addMsg(r *recentRing, id int64, room string, private bool, from, to int64) {
	env := Envelope{Type: EventMessage, ID: id, Room: room, Private: private, From: from, To: to, Data: []byte(`{}`)}
	r.add(env, EncodeFrame(id, EventMessage, env.Data))
}

func TestRecentRing(t *testing.T) {
	r := recentRing{buf: make([]recentMessage, 8), origin: true}
	ana := models.Visibility{Room: "general", UserID: 1}
	// 1..5: general, general, private 2->1, other room, private 2->3.
	addMsg(&r, 1, "general", false, 1, 0)
	addMsg(&r, 2, "general", false, 2, 0)
	addMsg(&r, 3, "other", true, 2, 1)
	addMsg(&r, 4, "other", false, 2, 0)
	addMsg(&r, 5, "general", true, 2, 3)

	frames, last, ok := r.newest(ana, 50)
	if !ok || last != 3 || !equalIDs(ringIDs(frames), 1, 2, 3) {
		t.Fatalf("newest from the origin: %v %d %v", ringIDs(frames), last, ok)
	}
	frames, last, ok = r.newest(ana, 2)
	if !ok || last != 3 || !equalIDs(ringIDs(frames), 2, 3) {
		t.Fatalf("newest 2: %v %d %v", ringIDs(frames), last, ok)
	}
	frames, last, ok = r.after(ana, 1, 100)
	if !ok || last != 3 || !equalIDs(ringIDs(frames), 2, 3) {
		t.Fatalf("after 1: %v %d %v", ringIDs(frames), last, ok)
	}
	if _, _, ok = r.after(ana, 0, 1); ok {
		t.Fatal("after 0 with limit 1 must fall back: more than the limit were missed")
	}
	// Wrap around: 6..12 push 1..4 out; the run is 5..12.
	for id := int64(6); id <= 12; id++ {
		addMsg(&r, id, "general", false, 2, 0)
	}
	if r.first != 5 || r.n != 8 || r.origin {
		t.Fatalf("after wrapping: first %d n %d origin %v", r.first, r.n, r.origin)
	}
	if _, _, ok = r.after(ana, 2, 100); ok {
		t.Fatal("a cursor older than the ring must fall back to the database")
	}
	frames, _, ok = r.after(ana, 4, 100)
	if !ok || !equalIDs(ringIDs(frames), 6, 7, 8, 9, 10, 11, 12) {
		t.Fatalf("after 4: %v %v", ringIDs(frames), ok)
	}
	if _, _, ok = r.newest(ana, 50); ok {
		t.Fatal("fewer visible than asked, and not from the origin: must fall back")
	}
	frames, _, ok = r.newest(ana, 3)
	if !ok || !equalIDs(ringIDs(frames), 10, 11, 12) {
		t.Fatalf("newest 3 after wrapping: %v %v", ringIDs(frames), ok)
	}
	// A broken run (ids skipped) starts over.
	addMsg(&r, 20, "general", false, 2, 0)
	if r.first != 20 || r.n != 1 {
		t.Fatalf("after a skip: first %d n %d", r.first, r.n)
	}
	if _, _, ok = r.after(ana, 12, 100); ok {
		t.Fatal("a cursor before a skip must fall back")
	}
}

func equalIDs(got []int64, want ...int64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

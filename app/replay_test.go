package app

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"papo/models"
	"papo/models/modelstest"
)

// replayFixture is a stream resuming from before n messages of #general,
// none of them in the hub's memory, with a live queue of 4 frames.
func replayFixture(t *testing.T, n int) (*Stream, *Hub, []*models.Message) {
	t.Helper()
	store := modelstest.Open(t, models.SQLite)
	msgs := storeMessages(t, store, "general", n)
	// The messages are history when the hub starts; no poll finds more.
	hub := startHub(t, store, &scriptedBroker{}, HubOptions{QueueSize: 4, Recent: -1, Poll: time.Hour})
	reader := UserRef{ID: 999, Name: "reader"}
	sub, err := hub.Subscribe("general", reader, "session")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hub.Unsubscribe(sub) })
	st := &Stream{Sub: sub, chat: &Chat{history: store, hub: hub}, replay: &replay{
		vis:   models.Visibility{Room: "general", UserID: reader.ID},
		until: msgs[n-1].ID,
		users: encodeJSONFrame(EventUsers, UsersEvent{Room: "general", Users: []string{"reader"}}),
	}}
	return st, hub, msgs
}

func typingFrame(n int) (Envelope, *Frame) {
	env := Envelope{Type: EventTyping, Room: "general", User: 1} // not the reader
	return env, encodeJSONFrame(EventTyping, TypingEvent{Room: "general", Username: "u", Typing: n%2 == 0})
}

// TestReplayHoldsTheLiveQueue: between the pages of a long replay, the
// stream takes what its live queue holds, so the hub never finds the queue
// full; what it took goes out after ready, in order, without what the
// replay itself sent.
func TestReplayHoldsTheLiveQueue(t *testing.T) {
	const n = 1234
	st, hub, msgs := replayFixture(t, n)
	users := st.replay.users
	var (
		replayed []int64
		live     []*Frame // offered to the stream while it replayed, in order
		tail     []*Frame
	)
	for page := 0; ; page++ {
		frames, err := st.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if frames == nil {
			break
		}
		if frames[0].ID == 0 { // users: the backlog is complete
			tail = frames
			continue
		}
		for _, f := range frames {
			replayed = append(replayed, f.ID)
		}
		// Three events while the page goes out: the queue holds four.
		// One is a message the replay already sent, one a live message
		// past the replayed ones, one a typing event.
		sent := &Frame{ID: frames[0].ID, Bytes: []byte("duplicate\n\n")}
		fresh := EncodeFrame(msgs[n-1].ID+int64(page)+1, EventMessage, []byte(`{}`))
		env, typing := typingFrame(page)
		hub.dispatch(Envelope{Type: EventMessage, Room: "general", ID: sent.ID}, sent)
		hub.dispatch(Envelope{Type: EventMessage, Room: "general", ID: fresh.ID}, fresh)
		hub.dispatch(env, typing)
		live = append(live, fresh, typing)
	}
	if st.Sub.Ended() {
		t.Fatalf("the stream was dropped (%v)", st.Sub.Reason())
	}
	want := make([]int64, n)
	for i, m := range msgs {
		want[i] = m.ID
	}
	if !slices.Equal(replayed, want) {
		t.Fatalf("replayed %d messages, want %d in order", len(replayed), n)
	}
	// users, ready, then the live events: all but the duplicates.
	if len(tail) != 2+len(live) || tail[0] != users {
		t.Fatalf("the end of the opening has %d frames, want users, ready and %d live", len(tail), len(live))
	}
	ready := string(tail[1].Bytes)
	if wantReady := `event: ready` + "\n" + `data: {"room":"general","resume":"ok","replayed":1234}` + "\n\n"; ready != wantReady {
		t.Fatalf("ready frame %q, want %q", ready, wantReady)
	}
	if !slices.Equal(tail[2:], live) {
		t.Fatal("the live events after ready are not the ones offered, in order")
	}
	if frames, err := st.Next(context.Background()); frames != nil || err != nil {
		t.Fatalf("after the opening: %d frames, %v", len(frames), err)
	}
	if d := hub.Stats().Dropped.Load(); d != 0 {
		t.Fatalf("%d dropped", d)
	}
}

// TestReplayDropsAStreamThatHoldsTooMuch: a stream whose backlog is still
// going out when more than replayHeldMax live events have come is too slow
// to keep, as one whose queue fills: it is dropped, and resumes from its
// cursor.
func TestReplayDropsAStreamThatHoldsTooMuch(t *testing.T) {
	st, hub, _ := replayFixture(t, ReplayPageSize+10)
	if _, err := st.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= replayHeldMax; i++ {
		env, f := typingFrame(i)
		hub.dispatch(env, f)
		if i%4 == 3 && !st.hold() {
			t.Fatalf("dropped after %d events", i+1)
		}
	}
	frames, err := st.Next(context.Background())
	if frames != nil || !errors.Is(err, ErrStreamEnded) {
		t.Fatalf("a stream holding %d events got %d frames, %v; want ErrStreamEnded", replayHeldMax+1, len(frames), err)
	}
	if !st.Sub.Ended() || st.Sub.Reason() != CloseSlow || hub.Stats().Dropped.Load() != 1 {
		t.Fatalf("ended %v, reason %v, dropped %d; want dropped as slow", st.Sub.Ended(), st.Sub.Reason(), hub.Stats().Dropped.Load())
	}
}

// After a drop for holding too much, the live queue may still hold message
// frames newer than the held ones that were let go: Next must say the
// stream ended, not that its opening is complete, or a caller would go on
// to send them and move the client's cursor past messages it never got.
func TestReplayDroppedForHoldingTooMuchEndsTheOpening(t *testing.T) {
	st, hub, msgs := replayFixture(t, ReplayPageSize+10)
	if _, err := st.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := msgs[len(msgs)-1].ID
	live := func() {
		id++
		f := EncodeFrame(id, EventMessage, []byte(`{}`))
		hub.dispatch(Envelope{Type: EventMessage, Room: "general", ID: id}, f)
	}
	for i := 0; i < replayHeldMax; i++ {
		live()
		if i%4 == 3 && !st.hold() {
			t.Fatalf("dropped after %d", i+1)
		}
	}
	live() // crosses the bound
	live() // newer still
	frames, err := st.Next(context.Background())
	if frames != nil || !errors.Is(err, ErrStreamEnded) {
		t.Fatalf("after the drop Next gave %d frames, %v; want ErrStreamEnded", len(frames), err)
	}
	if !st.Sub.Ended() {
		t.Fatal("not dropped")
	}
}

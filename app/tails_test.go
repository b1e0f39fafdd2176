package app

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"papo/models"
	"papo/models/modelstest"
)

// tailsFixture is a hub whose ring holds only 16 messages, so that a quiet
// room's backlog never comes from it, with a Chat over the same store, and
// a way to post as another instance would: commit, then publish.
type tailsFixture struct {
	store  *models.Store
	broker *scriptedBroker
	hub    *Hub
	chat   *Chat
	users  map[string]*models.User
}

func newTailsFixture(t *testing.T, store *models.Store) *tailsFixture {
	t.Helper()
	b := &scriptedBroker{}
	hub := startHub(t, store, b, HubOptions{Recent: 16, Poll: time.Hour, QueueSize: 4096})
	f := &tailsFixture{store: store, broker: b, hub: hub, chat: &Chat{history: store, hub: hub}, users: map[string]*models.User{}}
	for _, name := range []string{"ana", "bia", "caio"} {
		u := &models.User{Username: fmt.Sprintf("%s%d", name, time.Now().UnixNano()%1e9), PasswordHash: "x", CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
		if err := store.CreateUser(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		f.users[name] = u
	}
	return f
}

// say is a room message by from; whisper a private message from -> to,
// sent from room.
func (f *tailsFixture) say(from, room string, n int) []*models.Message {
	u := f.users[from]
	out := make([]*models.Message, n)
	for i := range out {
		out[i] = &models.Message{Room: room, Kind: models.KindUser, UserID: u.ID, Username: u.Username,
			Body: fmt.Sprintf("%s in %s, %d", from, room, i), CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	}
	return out
}

func (f *tailsFixture) whisper(from, to, room string) *models.Message {
	u, r := f.users[from], f.users[to]
	return &models.Message{Room: room, Kind: models.KindPrivate, UserID: u.ID, Username: u.Username,
		ToUserID: &r.ID, ToUsername: r.Username, Body: from + " to " + to, CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
}

// post commits msgs in one batch and publishes them, then waits until the
// hub has dispatched them.
func (f *tailsFixture) post(t *testing.T, msgs ...*models.Message) {
	t.Helper()
	if err := f.store.InsertMessages(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		f.broker.deliver(messageEnvelope(m))
	}
	last := msgs[len(msgs)-1].ID
	deadline := time.Now().Add(10 * time.Second)
	for f.hub.LastDispatched() < last {
		if time.Now().After(deadline) {
			t.Fatalf("the hub dispatched up to %d, not %d", f.hub.LastDispatched(), last)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkBacklog asserts that reader's backlog in room, fresh and resumed
// from each cursor, is what the database's visibility rule gives, frame
// for frame: the newest BacklogSize, or everything after the cursor.
func (f *tailsFixture) checkBacklog(t *testing.T, reader, room string, cursors ...int64) {
	t.Helper()
	ctx := context.Background()
	v := models.Visibility{Room: room, UserID: f.users[reader].ID}
	want, err := f.store.VisibleBefore(ctx, v, math.MaxInt64, BacklogSize)
	if err != nil {
		t.Fatal(err)
	}
	frames, last, resume, _, err := f.chat.backlog(ctx, v, "")
	if err != nil {
		t.Fatal(err)
	}
	sameFrames(t, fmt.Sprintf("%s in %s, fresh", reader, room), frames, last, want)
	if resume != resumeNew {
		t.Fatalf("%s in %s, fresh: resume %q", reader, room, resume)
	}
	for _, cursor := range cursors {
		want, err := f.store.VisibleAfter(ctx, v, cursor, ReplayPageSize)
		if err != nil {
			t.Fatal(err)
		}
		frames, last, resume, until, err := f.chat.backlog(ctx, v, fmt.Sprint(cursor))
		if err != nil {
			t.Fatal(err)
		}
		sameFrames(t, fmt.Sprintf("%s in %s after %d", reader, room, cursor), frames, last, want)
		if resume != resumeOK || until != 0 {
			t.Fatalf("%s in %s after %d: resume %q, until %d", reader, room, cursor, resume, until)
		}
	}
}

func sameFrames(t *testing.T, what string, frames []*Frame, last int64, want []models.Message) {
	t.Helper()
	if len(frames) != len(want) {
		t.Fatalf("%s: %d messages, want %d", what, len(frames), len(want))
	}
	for i := range want {
		if !bytes.Equal(frames[i].Bytes, messageFrame(&want[i]).Bytes) {
			t.Fatalf("%s: message %d is\n%s\nwant\n%s", what, i, frames[i].Bytes, messageFrame(&want[i]).Bytes)
		}
	}
	if len(want) > 0 && last != want[len(want)-1].ID {
		t.Fatalf("%s: last %d, want %d", what, last, want[len(want)-1].ID)
	}
}

// TestQuietRoomBacklogIsTheVisibleHistory: a stream opened in a room whose
// newest messages left the hub's memory long ago gets what the rule gives:
// the room's newest messages with the reader's own private ones from any
// room, never someone else's. It still does when the room's tail, kept from
// the first such stream, has since been carried on by dispatch: the room
// grew past the tail's length, private messages came, and other rooms were
// busy.
func TestQuietRoomBacklogIsTheVisibleHistory(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, store *models.Store) {
		f := newTailsFixture(t, store)
		f.post(t, f.say("ana", "attic", 20)...)
		f.post(t, f.whisper("ana", "bia", "general"), f.whisper("caio", "bia", "attic"), f.whisper("bia", "ana", "lobby"))
		f.post(t, f.say("caio", "attic", 10)...)
		f.post(t, f.say("bia", "general", 100)...) // far past the ring

		first := f.hub.LastDispatched() - 132 // the first message posted
		for _, reader := range []string{"bia", "ana", "caio"} {
			f.checkBacklog(t, reader, "attic", 0, first+5, first+21, first+40, f.hub.LastDispatched())
		}
		f.hub.tails.mu.Lock()
		kept := f.hub.tails.rooms["attic"] != nil && f.hub.tails.users[f.users["bia"].ID] != nil
		f.hub.tails.mu.Unlock()
		if !kept {
			t.Fatal("the quiet room's tail, or its reader's, was not kept")
		}
		// An empty room has an empty tail, and a reader there sees their
		// private messages alone.
		f.checkBacklog(t, "bia", "cellar")

		// The room grows past the tail's length, between private messages
		// and other rooms' traffic.
		f.post(t, f.say("bia", "attic", 30)...)
		f.post(t, f.whisper("ana", "caio", "attic"))
		f.post(t, f.say("ana", "general", 40)...)
		f.post(t, f.say("caio", "attic", 35)...)
		f.post(t, f.say("bia", "cellar", 3)...)
		f.post(t, f.say("caio", "general", 40)...)
		now := f.hub.LastDispatched()
		for _, reader := range []string{"ana", "bia", "caio"} {
			f.checkBacklog(t, reader, "attic", first+5, now-200, now-60, now-50, now-45, now-1)
			f.checkBacklog(t, reader, "cellar", 0, now-10)
		}
	})
}

// TestQuietRoomStreamsMissNothingWhileMessagesFlow: streams opened in a
// quiet room while messages are being dispatched there get, from their
// backlog and then their queue, every visible message from the backlog's
// first on (or, resuming, from their cursor on), each once, in order: the
// seam between the tails (or the database) and the live queue loses and
// repeats nothing.
func TestQuietRoomStreamsMissNothingWhileMessagesFlow(t *testing.T) {
	store := modelstest.Open(t, models.SQLite)
	f := newTailsFixture(t, store)
	f.post(t, f.say("ana", "attic", 60)...)
	f.post(t, f.say("ana", "general", 50)...)

	const batches = 40
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range batches {
			msgs := f.say("caio", "attic", 3)
			msgs = append(msgs, f.whisper("caio", "bia", "general"), f.whisper("ana", "caio", "attic"))
			msgs = append(msgs, f.say("ana", "general", 20)...)
			if err := store.InsertMessages(context.Background(), msgs); err != nil {
				t.Error(err)
				return
			}
			for _, m := range msgs {
				f.broker.deliver(messageEnvelope(m))
			}
			if i%4 == 0 {
				// Now and then a new room tail must be read while the
				// hub moves on.
				f.hub.tails.mu.Lock()
				delete(f.hub.tails.rooms, "attic")
				clear(f.hub.tails.users)
				f.hub.tails.mu.Unlock()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()

	type opened struct {
		sub    *Subscriber
		reader string
		first  int64
		got    []int64
	}
	var streams []*opened
	for i := 0; i < 24; i++ {
		reader := []string{"ana", "bia", "caio"}[i%3]
		u := f.users[reader]
		sub, err := f.hub.Subscribe("attic", UserRef{ID: u.ID, Name: u.Username}, "s")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.hub.Unsubscribe(sub) })
		// Every other stream resumes from a cursor a little behind.
		cursor := ""
		if i%2 == 1 {
			cursor = fmt.Sprint(f.hub.LastDispatched() - 40)
		}
		frames, _, _, _, err := f.chat.backlog(context.Background(), models.Visibility{Room: "attic", UserID: u.ID}, cursor)
		if err != nil {
			t.Fatal(err)
		}
		o := &opened{sub: sub, reader: reader}
		for _, fr := range frames {
			o.got = append(o.got, fr.ID)
		}
		if cursor != "" {
			fmt.Sscan(cursor, &o.first)
			o.first++
		} else if len(o.got) > 0 {
			o.first = o.got[0]
		}
		streams = append(streams, o)
		time.Sleep(3 * time.Millisecond)
	}
	wg.Wait()
	end := f.hub.LastDispatched()
	for _, o := range streams {
		// The live queue, deduped by the cursor as a stream does.
		last := int64(0)
		if len(o.got) > 0 {
			last = o.got[len(o.got)-1]
		}
		for _, fr := range o.sub.Take(nil) {
			if fr.ID > last {
				o.got = append(o.got, fr.ID)
				last = fr.ID
			}
		}
		v := models.Visibility{Room: "attic", UserID: f.users[o.reader].ID}
		want, err := store.VisibleAfter(context.Background(), v, o.first-1, 100000)
		if err != nil {
			t.Fatal(err)
		}
		var wantIDs []int64
		for _, m := range want {
			if m.ID <= end {
				wantIDs = append(wantIDs, m.ID)
			}
		}
		if !equalIDs(o.got, wantIDs...) {
			t.Fatalf("%s's stream got %v\nwant %v", o.reader, o.got, wantIDs)
		}
	}
}

func tailIDs(tails *backlogTails, room string, user int64) (roomIDs, userIDs []int64, asOf int64) {
	s := tails.snapshot(models.Visibility{Room: room, UserID: user})
	if !s.hasRoom {
		roomIDs = []int64{-1}
	} else {
		roomIDs = s.room.ids
	}
	if !s.hasUser {
		userIDs = []int64{-1}
	} else {
		userIDs = s.user.ids
	}
	return roomIDs, userIDs, s.asOf
}

// TestTailsCatchUpFromTheRing: a tail read from the database before the
// latest dispatches is completed from the ring, or not kept when the ring
// no longer holds what it missed; once kept, dispatch carries it on.
func TestTailsCatchUpFromTheRing(t *testing.T) {
	frame := func(id int64) *Frame { return EncodeFrame(id, EventMessage, []byte(`{}`)) }
	read := func(ids ...int64) tail {
		tl := tail{ids: ids}
		for _, id := range ids {
			tl.frames = append(tl.frames, frame(id))
		}
		return tl
	}
	ring := recentRing{buf: make([]recentMessage, 4)}
	tails := newBacklogTails(3, 10, 10, 1<<20)
	tails.start(5)
	dispatch := func(id int64, room string, private bool, from, to int64) {
		addMsg(&ring, id, room, private, from, to)
		tails.add(Envelope{ID: id, Room: room, Private: private, From: from, To: to}, frame(id))
	}
	// 6 and 9 are the attic's, 7 another room's, 8 private from 1 to 2.
	dispatch(6, "attic", false, 1, 0)
	dispatch(7, "general", false, 1, 0)
	dispatch(8, "attic", true, 1, 2)
	dispatch(9, "attic", false, 3, 0)
	// Read up to 5, while 6..9 were dispatched.
	tails.installRoom("attic", read(4, 5), 5, &ring)
	tails.installUser(2, read(3), 5, &ring)
	rooms, users, asOf := tailIDs(tails, "attic", 2)
	if asOf != 9 || !equalIDs(rooms, 5, 6, 9) || !equalIDs(users, 3, 8) {
		t.Fatalf("caught up: room %v, user %v as of %d; want [5 6 9], [3 8] as of 9", rooms, users, asOf)
	}
	dispatch(10, "attic", false, 1, 0)
	dispatch(11, "lobby", true, 2, 4)
	rooms, users, _ = tailIDs(tails, "attic", 2)
	if !equalIDs(rooms, 6, 9, 10) || !equalIDs(users, 3, 8, 11) {
		t.Fatalf("after dispatches: room %v, user %v; want [6 9 10], [3 8 11]", rooms, users)
	}
	// The ring holds 8..11 now: tails read up to 6 cannot be completed.
	tails.installRoom("cellar", read(), 6, &ring)
	tails.installUser(4, read(), 6, &ring)
	if rooms, users, _ := tailIDs(tails, "cellar", 4); !equalIDs(rooms, -1) || !equalIDs(users, -1) {
		t.Fatalf("tails the ring could not complete were kept: room %v, user %v", rooms, users)
	}
	tails.installRoom("cellar", read(), 7, &ring)
	tails.installUser(4, read(), 7, &ring)
	if rooms, users, _ := tailIDs(tails, "cellar", 4); len(rooms) != 0 || !equalIDs(users, 11) {
		t.Fatalf("tails read up to 7: room %v (want none), user %v (want [11])", rooms, users)
	}
}

// TestTailsStayInBounds: past their counts or their bytes, tails are
// dropped, never the one just kept, and their bytes are accounted.
func TestTailsStayInBounds(t *testing.T) {
	frame := func(id int64, size int) *Frame {
		return &Frame{ID: id, Bytes: bytes.Repeat([]byte{'x'}, size)}
	}
	var ring recentRing
	tails := newBacklogTails(50, 3, 2, 1000)
	tails.start(5)
	for i, room := range []string{"a", "b", "c", "d", "e"} {
		id := int64(i + 1)
		tails.installRoom(room, tail{ids: []int64{id}, frames: []*Frame{frame(id, 100)}, bytes: 100}, 5, &ring)
		tails.installUser(id, tail{}, 5, &ring)
	}
	if len(tails.rooms) != 3 || tails.rooms["e"] == nil || len(tails.users) != 2 || tails.users[5] == nil || tails.bytes != 300 {
		t.Fatalf("%d rooms (want 3, e among them), %d users (want 2, 5 among them), %d bytes (want 300)",
			len(tails.rooms), len(tails.users), tails.bytes)
	}
	// Messages into one room push the others out past the byte budget.
	for id := int64(6); id < 16; id++ {
		tails.add(Envelope{ID: id, Room: "e"}, frame(id, 100))
	}
	total := 0
	for _, tl := range tails.rooms {
		total += tl.bytes
	}
	if tails.bytes > 1000 || total != tails.bytes {
		t.Fatalf("%d bytes accounted (budget 1000), %d held", tails.bytes, total)
	}
}

// countingHistory counts the reads of the tails' halves from the store.
type countingHistory struct {
	HistoryStore
	mu           sync.Mutex
	rooms, users int
}

func (h *countingHistory) RoomNewest(ctx context.Context, room string, upTo int64, limit int) ([]models.Message, error) {
	h.mu.Lock()
	h.rooms++
	h.mu.Unlock()
	time.Sleep(20 * time.Millisecond) // a slow database: the others arrive meanwhile
	return h.HistoryStore.RoomNewest(ctx, room, upTo, limit)
}

func (h *countingHistory) PrivateNewest(ctx context.Context, userID int64, upTo int64, limit int) ([]models.Message, error) {
	h.mu.Lock()
	h.users++
	h.mu.Unlock()
	return h.HistoryStore.PrivateNewest(ctx, userID, upTo, limit)
}

// TestQuietRoomStormReadsItOnce: many streams opened at once in a quiet
// room read its messages from the database once, and each reader's
// private ones once, and every one of them gets the right backlog.
func TestQuietRoomStormReadsItOnce(t *testing.T) {
	store := modelstest.Open(t, models.SQLite)
	f := newTailsFixture(t, store)
	f.post(t, f.say("ana", "attic", 70)...)
	f.post(t, f.whisper("ana", "bia", "general"), f.whisper("caio", "ana", "attic"))
	f.post(t, f.say("bia", "general", 40)...)
	counted := &countingHistory{HistoryStore: store}
	f.chat = &Chat{history: counted, hub: f.hub}

	readers := []string{"ana", "bia", "caio"}
	got := make([][]*Frame, 60)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() {
			v := models.Visibility{Room: "attic", UserID: f.users[readers[i%3]].ID}
			frames, _, _, _, err := f.chat.backlog(context.Background(), v, "")
			if err != nil {
				t.Error(err)
			}
			got[i] = frames
		})
	}
	wg.Wait()
	if counted.rooms != 1 || counted.users != 3 {
		t.Fatalf("the room was read %d times (want 1), the readers' private messages %d (want 3)", counted.rooms, counted.users)
	}
	for i, frames := range got {
		v := models.Visibility{Room: "attic", UserID: f.users[readers[i%3]].ID}
		want, err := store.VisibleBefore(context.Background(), v, math.MaxInt64, BacklogSize)
		if err != nil {
			t.Fatal(err)
		}
		var last int64
		if len(frames) > 0 {
			last = frames[len(frames)-1].ID
		}
		sameFrames(t, fmt.Sprintf("stream %d (%s)", i, readers[i%3]), frames, last, want)
	}
}

// panickyHistory panics in its first reads of a room's tail, as a driver
// bug would; the router's recovery answers 500 and the server goes on.
type panickyHistory struct {
	HistoryStore
	panics atomic.Int32
}

func (h *panickyHistory) RoomNewest(ctx context.Context, room string, upTo int64, limit int) ([]models.Message, error) {
	if h.panics.Add(-1) >= 0 {
		panic("a bug in the driver")
	}
	return h.HistoryStore.RoomNewest(ctx, room, upTo, limit)
}

// TestATailReadThatPanicsLetsTheRoomOpenAgain: a stream whose read
// of a missing tail panics must still give up its claim on that half
// (claim: "call done after, whatever happened"); else every later stream
// of the room waits for a read that will never end.
func TestATailReadThatPanicsLetsTheRoomOpenAgain(t *testing.T) {
	store := modelstest.Open(t, models.SQLite)
	f := newTailsFixture(t, store)
	f.post(t, f.say("ana", "attic", 60)...)
	f.post(t, f.say("caio", "general", 30)...)
	history := &panickyHistory{HistoryStore: store}
	history.panics.Store(1)
	f.chat = &Chat{history: history, hub: f.hub}
	v := models.Visibility{Room: "attic", UserID: f.users["bia"].ID}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the first read did not panic")
			}
		}()
		f.chat.backlog(context.Background(), v, "")
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	frames, last, _, _, err := f.chat.backlog(ctx, v, "")
	if err != nil {
		t.Fatalf("the next stream of the room: %v", err)
	}
	want, err := store.VisibleBefore(context.Background(), v, math.MaxInt64, BacklogSize)
	if err != nil {
		t.Fatal(err)
	}
	sameFrames(t, "the next stream of the room", frames, last, want)
}

package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"papo/e2e/client"
	"papo/models"
	"papo/models/modelstest"
)

// scriptedBroker stands in for the network between instances: the test
// decides which envelopes of "another instance" arrive, and in what order.
// The hub is the thing under test; its database is real.
type scriptedBroker struct {
	mu     sync.Mutex
	handle func(Envelope)
}

func (b *scriptedBroker) Subscribe(_ context.Context, h func(Envelope)) error {
	b.mu.Lock()
	b.handle = h
	b.mu.Unlock()
	return nil
}
func (b *scriptedBroker) Publish(context.Context, ...Envelope) error { return nil }
func (b *scriptedBroker) Ping(context.Context) error                 { return nil }
func (b *scriptedBroker) Close() error                               { return nil }

func (b *scriptedBroker) deliver(env Envelope) {
	b.mu.Lock()
	h := b.handle
	b.mu.Unlock()
	env.Origin = "another-instance"
	h(env)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// storeMessages commits n messages in room as one batch, as another
// instance's writer would, and returns them.
func storeMessages(t testing.TB, s *models.Store, room string, n int) []*models.Message {
	t.Helper()
	ctx := context.Background()
	u := &models.User{Username: fmt.Sprintf("u%d", time.Now().UnixNano()%1e9), PasswordHash: "x", CreatedAt: time.Now().UTC()}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	msgs := make([]*models.Message, n)
	for i := range msgs {
		msgs[i] = &models.Message{Room: room, Kind: models.KindUser, UserID: u.ID, Username: u.Username,
			Body: fmt.Sprintf("m%d", i), CreatedAt: time.Now().UTC()}
	}
	if err := s.InsertMessages(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	return msgs
}

func startHub(t testing.TB, store *models.Store, b Broker, opts HubOptions) *Hub {
	t.Helper()
	h := NewHub("this-instance", b, store, quiet(), opts)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	return h
}

// received reads message frames from sub until it has n, or times out.
func received(t testing.TB, sub *Subscriber, n int) []int64 {
	t.Helper()
	var ids []int64
	deadline := time.Now().Add(10 * time.Second)
	for len(ids) < n {
		f := frameWithin(sub, time.Until(deadline))
		if f == nil {
			t.Fatalf("got %v, want %d messages", ids, n)
		}
		if f.ID > 0 {
			ids = append(ids, f.ID)
		}
	}
	return ids
}

func TestHubDispatchesInCommitOrderAndFillsGaps(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, store *models.Store) {
		b := &scriptedBroker{}
		h := startHub(t, store, b, HubOptions{GapWait: 50 * time.Millisecond, Poll: time.Hour})
		sub, err := h.Subscribe("general", UserRef{ID: 99, Name: "reader"}, "s")
		if err != nil {
			t.Fatal(err)
		}
		msgs := storeMessages(t, store, "general", 6)
		// The broker brings 3 first, then 2, duplicates 3, and loses 1, 4 and 5...
		for _, i := range []int{2, 1, 2} {
			b.deliver(messageEnvelope(msgs[i]))
		}
		// ...then 6: the hub waits for 1, reads 1, 4 and 5 from the
		// database, and sends all six once, in order.
		b.deliver(messageEnvelope(msgs[5]))
		got := received(t, sub, 6)
		for i, id := range got {
			if id != msgs[i].ID {
				t.Fatalf("order %v, want %d..%d", got, msgs[0].ID, msgs[5].ID)
			}
		}
		// A late copy of a message already sent is dropped.
		b.deliver(messageEnvelope(msgs[3]))
		if f := frameWithin(sub, 200*time.Millisecond); f != nil {
			t.Fatalf("a duplicate went out: id %d", f.ID)
		}
		if h.Stats().GapFills.Load() == 0 {
			t.Fatal("the gap was not filled from the database")
		}
	})
}

func TestHubSafetyPollFindsUnpublishedMessages(t *testing.T) {
	store := modelstest.Open(t, models.SQLite)
	h := startHub(t, store, &scriptedBroker{}, HubOptions{Poll: 50 * time.Millisecond})
	sub, _ := h.Subscribe("general", UserRef{ID: 1, Name: "r"}, "s")
	// Committed by an instance whose publishes were all lost.
	msgs := storeMessages(t, store, "general", 3)
	got := received(t, sub, 3)
	if got[0] != msgs[0].ID || got[2] != msgs[2].ID {
		t.Fatalf("got %v", got)
	}
}

func TestHubRoutesByVisibility(t *testing.T) {
	store := modelstest.Open(t, models.SQLite)
	h := startHub(t, store, LocalBroker{}, HubOptions{})
	ana := UserRef{ID: 1, Name: "ana"}
	bia := UserRef{ID: 2, Name: "bia"}
	eve := UserRef{ID: 3, Name: "eve"}
	anaGeneral, _ := h.Subscribe("general", ana, "a")
	anaRandom, _ := h.Subscribe("random", ana, "a")
	biaGeneral, _ := h.Subscribe("general", bia, "b")
	eveGeneral, _ := h.Subscribe("general", eve, "e")
	ctx := context.Background()

	to := int64(2)
	pm := &models.Message{ID: 1, Room: "general", Kind: models.KindPrivate, UserID: 1, Username: "ana", ToUserID: &to, ToUsername: "bia", Body: "psst"}
	_ = h.Publish(ctx, messageEnvelope(pm))
	_ = h.PublishEvent(ctx, Envelope{Type: EventTyping, Room: "general", User: 1}, TypingEvent{Room: "general", Username: "ana", Typing: true})
	_ = h.PublishEvent(ctx, Envelope{Type: EventReply, Room: "general", User: 1}, Reply{Command: "who", OK: true})

	expect := func(name string, sub *Subscriber, want ...string) {
		t.Helper()
		var got []string
		deadline := time.Now().Add(300 * time.Millisecond)
		for {
			f := frameWithin(sub, time.Until(deadline))
			if f == nil {
				break
			}
			line, _, _ := bytes.Cut(bytes.TrimPrefix(f.Bytes, []byte(fmt.Sprintf("id: %d\n", f.ID))), []byte("\n"))
			got = append(got, string(bytes.TrimPrefix(line, []byte("event: "))))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s got %v, want %v", name, got, want)
		}
	}
	expect("ana in general", anaGeneral, "message", "reply")
	expect("ana in random", anaRandom, "message")
	expect("bia in general", biaGeneral, "message", "typing")
	expect("eve in general", eveGeneral, "typing")
}

func TestSlowSubscriberIsDroppedOthersKeepUp(t *testing.T) {
	store := modelstest.Open(t, models.SQLite)
	const queue = 16
	h := startHub(t, store, LocalBroker{}, HubOptions{QueueSize: queue})
	stuck, _ := h.Subscribe("general", UserRef{ID: 1, Name: "stuck"}, "s1")
	var readers []*Subscriber
	for i := 0; i < 5; i++ {
		s, _ := h.Subscribe("general", UserRef{ID: int64(10 + i), Name: "r"}, "s")
		readers = append(readers, s)
	}
	// The readers keep up with each message (in lockstep, so the test
	// does not depend on scheduling); the stuck one never reads.
	const n = 200
	results := make([][]int64, len(readers))
	for i := 1; i <= n; i++ {
		h.enqueue(Envelope{Type: EventMessage, Room: "general", ID: int64(i), Origin: "x", Data: json.RawMessage(`{}`)})
		for r, s := range readers {
			results[r] = append(results[r], received(t, s, 1)...)
		}
	}
	select {
	case <-stuck.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the stuck subscriber was not dropped")
	}
	if stuck.Reason() != CloseSlow {
		t.Fatalf("reason %v", stuck.Reason())
	}
	// Its memory is bounded by the queue, and it is out of the hub.
	if held := len(stuck.Take(nil)); held > queue || cap(stuck.queue.frames) > queue {
		t.Fatalf("queue grew to %d frames, %d slots", held, cap(stuck.queue.frames))
	}
	if got := h.Subscribers(); got != len(readers) {
		t.Fatalf("%d subscribers, want %d", got, len(readers))
	}
	for i, ids := range results {
		if len(ids) != n {
			t.Fatalf("reader %d got %d messages", i, len(ids))
		}
		for j, id := range ids {
			if id != int64(j+1) {
				t.Fatalf("reader %d: id %d at %d", i, id, j)
			}
		}
	}
}

// FuzzFrameSurvivesParsing: whatever a message says, its frame parses back
// (by the standard's rules) to exactly one event with its id and JSON.
func FuzzFrameSurvivesParsing(f *testing.F) {
	for _, s := range []string{"plain", "a\nb", "a\r\nb", "a\rb", "data: x", "event: ready", "id: 5", "\n\n", ":", "\x00", "é👋", "\u2028\u2029"} {
		f.Add(s, int64(7))
	}
	f.Fuzz(func(t *testing.T, text string, id int64) {
		if id <= 0 {
			id = -id + 1
		}
		data, err := json.Marshal(Message{ID: id, Room: "r", Kind: "user", Username: "u", Message: text})
		if err != nil {
			t.Skip()
		}
		frame := EncodeFrame(id, EventMessage, data)
		p := client.NewParser(bytes.NewReader(append(frame.Bytes, frame.Bytes...)))
		for i := 0; i < 2; i++ {
			ev, err := p.Next()
			if err != nil {
				t.Fatalf("frame %q: %v", frame.Bytes, err)
			}
			if ev.Type != "message" || ev.Data != string(data) || ev.ID != fmt.Sprint(id) {
				t.Fatalf("parsed %+v from %q", ev, frame.Bytes)
			}
			var back Message
			if err := json.Unmarshal([]byte(ev.Data), &back); err != nil {
				t.Fatal(err)
			}
			if back.Message != string([]rune(text)) && back.Message != text {
				t.Fatalf("text %q came back as %q", text, back.Message)
			}
		}
		if _, err := p.Next(); err != io.EOF {
			t.Fatalf("more than two events: %v", err)
		}
	})
}

// BenchmarkFanout measures one message dispatched to N subscribers: the
// encode, the queueing to each, and the readers' draining.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			store := modelstest.Open(b, models.SQLite)
			h := startHub(b, store, LocalBroker{}, HubOptions{QueueSize: 1024})
			var wg sync.WaitGroup
			subs := make([]*Subscriber, n)
			for i := range subs {
				subs[i], _ = h.Subscribe("general", UserRef{ID: int64(i + 1), Name: "u"}, "s")
			}
			data, _ := json.Marshal(Message{ID: 1, Room: "general", Kind: "user", Username: "ana", Message: "hello everyone, this is a typical chat line", CreatedAt: time.Now()})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				env := Envelope{Type: EventMessage, Room: "general", ID: h.next, Data: data}
				h.accept(env)
				// Drain, as the stream writers would.
				wg.Add(1)
				go func() {
					defer wg.Done()
					var scratch [4]*Frame
					for _, s := range subs {
						if len(s.Take(scratch[:0])) != 1 {
							panic("a subscriber did not get the message")
						}
					}
				}()
				wg.Wait()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
		})
	}
}

// Done is closed when the subscription ends, whether it was asked for
// before the end (a stream waiting on it) or after; the reason is there
// by then, and a second end changes nothing.
func TestSubscriberDoneBeforeAndAfterItEnds(t *testing.T) {
	store := modelstest.Open(t, models.SQLite)
	h := startHub(t, store, LocalBroker{}, HubOptions{})
	early, _ := h.Subscribe("general", UserRef{ID: 1, Name: "a"}, "s")
	late, _ := h.Subscribe("general", UserRef{ID: 2, Name: "b"}, "s")
	waiting := early.Done()
	select {
	case <-waiting:
		t.Fatal("Done closed before the end")
	default:
	}
	early.close(CloseSlow)
	late.close(CloseLoggedOut)
	early.close(CloseUnsubscribed)
	for _, c := range []struct {
		sub  *Subscriber
		done <-chan struct{}
		want CloseReason
	}{{early, waiting, CloseSlow}, {late, late.Done(), CloseLoggedOut}} {
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			t.Fatal("Done not closed after the end")
		}
		if !c.sub.Ended() || c.sub.Reason() != c.want {
			t.Fatalf("ended %v, reason %v; want true, %v", c.sub.Ended(), c.sub.Reason(), c.want)
		}
	}
}

// TestHubDropsAnOnlineListOverTakenByANewerOne: online lists read on two
// instances a moment apart may cross on their way; a room's streams get
// each list only if it is newer, by its stamp, than the last they got.
// Unstamped lists (one instance, or Redis down) always go through, and
// each room keeps its own order.
func TestHubDropsAnOnlineListOverTakenByANewerOne(t *testing.T) {
	store := modelstest.Open(t, models.SQLite)
	h := startHub(t, store, LocalBroker{}, HubOptions{})
	general, _ := h.Subscribe("general", UserRef{ID: 1, Name: "ana"}, "a")
	random, _ := h.Subscribe("random", UserRef{ID: 1, Name: "ana"}, "a")
	ctx := context.Background()
	steps := []struct {
		room   string
		stamp  int64
		remote bool // from another instance, through the broker
	}{
		{"general", 7, false},
		{"general", 5, true}, // read before 7, arrived after it
		{"general", 7, true}, // the same list, from another instance
		{"general", 9, true},
		{"random", 3, false}, // older than general's, but another room
		{"general", 0, false},
		{"general", 8, false},
		{"general", 10, true},
	}
	for _, s := range steps {
		env := Envelope{Type: EventUsers, Room: s.room, Stamp: s.stamp}
		list := UsersEvent{Room: s.room, Users: []string{fmt.Sprintf("list%d", s.stamp)}}
		if s.remote {
			env.Data, _ = json.Marshal(list)
			env.Origin = "another-instance"
			h.receive(env)
		} else {
			must(t, h.PublishEvent(ctx, env, list))
		}
	}
	lists := func(sub *Subscriber) []string {
		var got []string
		for {
			f := frameWithin(sub, 300*time.Millisecond)
			if f == nil {
				return got
			}
			_, data, _ := bytes.Cut(f.Bytes, []byte("data: "))
			var ev UsersEvent
			if err := json.Unmarshal(bytes.TrimSpace(data), &ev); err != nil {
				t.Fatalf("frame %q: %v", f.Bytes, err)
			}
			got = append(got, ev.Users...)
		}
	}
	if got, want := lists(general), []string{"list7", "list9", "list0", "list10"}; !slices.Equal(got, want) {
		t.Fatalf("general got the lists %v, want %v", got, want)
	}
	if got, want := lists(random), []string{"list3"}; !slices.Equal(got, want) {
		t.Fatalf("random got the lists %v, want %v", got, want)
	}
}

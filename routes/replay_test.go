package routes

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"papo/app"
	"papo/e2e/client"
	"papo/models"
)

// A client away for longer than the hub's memory reaches comes back to
// every message it missed, however many: the database answers, a page at
// a time, and the stream's live queue collects meanwhile.

// withRecent sets how many messages the hub keeps in memory (-1: none, so
// every resume reads the database).
func withRecent(n int) serverOption {
	return func(_ *app.Config, o *app.Options) { o.Hub.Recent = n }
}

// withoutCoalescing gives every message a frame of its own.
func withoutCoalescing(_ *app.Config, o *app.Options) { o.Hub.Coalesce = -1 }

// replayPageHook runs after each database read of a resume's replay
// beyond the first page (Stream.Next's reads, counted from 1), before the
// rows go back.
type replayPageHook func(page int)

// hookedStore is a store whose replay reads for one user call a hook.
type hookedStore struct {
	*models.Store
	user  atomic.Int64 // the reader whose replay is watched; 0: none
	mu    sync.Mutex
	after int64 // the resume's cursor: the first page reads after it
	page  int
	hook  replayPageHook
}

func (s *hookedStore) watch(user, cursor int64, hook replayPageHook) {
	s.mu.Lock()
	s.after, s.page, s.hook = cursor, 0, hook
	s.mu.Unlock()
	s.user.Store(user)
}

func (s *hookedStore) VisibleAfter(ctx context.Context, v models.Visibility, after int64, limit int) ([]models.Message, error) {
	rows, err := s.Store.VisibleAfter(ctx, v, after, limit)
	if err != nil || v.UserID != s.user.Load() || limit != app.ReplayPageSize {
		return rows, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if after > s.after {
		s.page++
		s.hook(s.page)
	}
	return rows, err
}

// userOver registers name with a client that speaks HTTP/2 to s when h2
// is set (s must then serve it), else s.user's HTTP/1.1.
func userOver(t testing.TB, s *testServer, name string, h2 bool) *client.Client {
	t.Helper()
	if !h2 {
		return s.user(t, name)
	}
	c := client.New(s.URL, nil)
	c.HTTP.Transport = s.srv.Client().Transport
	if _, err := c.Register(context.Background(), name, "correct horse"); err != nil {
		t.Fatalf("registering %s: %v", name, err)
	}
	return c
}

// awayMix posts n messages from writers while reader is away: most to
// #general, and some that reader must not see (another room, private
// between others) or must (private to reader). It returns the last id.
func awayMix(t *testing.T, ctx context.Context, writers []*client.Client, names []string, n int) int64 {
	t.Helper()
	var (
		wg   sync.WaitGroup
		last atomic.Int64
	)
	for w, c := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += len(writers) {
				room, text := "general", fmt.Sprintf("away %d", i)
				switch i % 10 {
				case 0:
					room = "elsewhere"
				case 1:
					text = "/msg reader psst " + strconv.Itoa(i)
				case 2:
					text = fmt.Sprintf("/msg %s not for reader %d", names[(w+1)%len(names)], i)
				}
				res, err := c.Post(ctx, room, text)
				if err != nil {
					t.Errorf("post %d: %v", i, err)
					return
				}
				if res.Message != nil {
					for {
						old := last.Load()
						if res.Message.ID <= old || last.CompareAndSwap(old, res.Message.ID) {
							break
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return last.Load()
}

// dispatched waits until the hub has dispatched id: a POST is answered
// once its message is committed, and the hub takes it just after.
func (s *testServer) dispatched(t testing.TB, id int64) {
	t.Helper()
	if !s.waitDispatched(id) {
		t.Fatalf("the hub dispatched up to %d, not %d", s.App.Hub.LastDispatched(), id)
	}
}

func (s *testServer) waitDispatched(id int64) bool {
	deadline := time.Now().Add(10 * time.Second)
	for s.App.Hub.LastDispatched() < id {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// above returns the ids above cursor.
func above(all []int64, cursor int64) []int64 {
	i, _ := slices.BinarySearch(all, cursor+1)
	return all[i:]
}

// readerAway opens reader's stream, reads it to ready, and closes it; it
// returns the cursor the client keeps (its Last-Event-ID).
func readerAway(t *testing.T, reader *client.Client) int64 {
	t.Helper()
	w := watch(t, reader, "general", "")
	backlog, _ := w.untilReady()
	// The reader's join comes in the backlog or just after.
	for len(backlog) == 0 || backlog[len(backlog)-1].Username != "reader" {
		backlog = append(backlog, decode[client.Message](t, w.next("message")))
	}
	w.close()
	cursor, err := strconv.ParseInt(w.cursor, 10, 64)
	if err != nil {
		t.Fatalf("cursor %q: %v", w.cursor, err)
	}
	return cursor
}

func TestLongResumeReplaysEveryMissedMessageOnce(t *testing.T) {
	cases := []struct {
		name string
		h2   bool // over HTTP/2, where the stream keeps its request's goroutine
		opts []serverOption
	}{
		// 3,300 messages fit in the default ring of 4,096: from memory.
		{"from the ring", false, nil},
		// No ring: the database, 500 at a time.
		{"from the database", false, []serverOption{withRecent(-1)}},
		{"from the database over HTTP/2", true, []serverOption{withRecent(-1)}},
		// A ring that holds the newest 1,000 only: the cursor is older.
		{"older than the ring", false, []serverOption{withRecent(1000)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachStore(t, func(t *testing.T, store *models.Store) {
				s := startServer(t, store, store, tc.h2, tc.opts...)
				ctx := ctxT(t)
				reader := userOver(t, s, "reader", tc.h2)
				me, err := reader.Me(ctx)
				if err != nil {
					t.Fatal(err)
				}
				names := []string{"away0", "away1", "away2", "away3", "away4", "away5"}
				writers := make([]*client.Client, len(names))
				for i, name := range names {
					writers[i] = userOver(t, s, name, tc.h2)
				}
				cursor := readerAway(t, reader)
				if tc.h2 {
					w := watch(t, reader, "general", strconv.FormatInt(cursor, 10))
					if proto := w.stream.Resp.Proto; proto != "HTTP/2.0" {
						t.Fatalf("the stream came over %s", proto)
					}
					w.close()
				}

				// 3,300 posts, of which 2,640 are visible to the reader.
				last := awayMix(t, ctx, writers, names, 3300)
				s.dispatched(t, last)
				missed := above(ids(toClient(storedVisible(t, store, "general", me.ID))), cursor)
				if len(missed) < 2600 {
					t.Fatalf("only %d missed", len(missed))
				}

				start := time.Now()
				w := watch(t, reader, "general", strconv.FormatInt(cursor, 10))
				backlog, ready := w.untilReady()
				t.Logf("%d messages replayed in %v", len(backlog), time.Since(start))
				got := ids(backlog)
				// Every missed message, once, in order, before ready (the
				// reader's own leave and join may follow them).
				if len(got) < len(missed) || !slices.Equal(got[:len(missed)], missed) {
					t.Fatalf("replayed %d, missed %d\nmissing: %v\nextra or repeated: %v",
						len(got), len(missed), missing(missed, got), repeated(got))
				}
				if ready.Resume != "ok" || ready.Replayed != len(backlog) {
					t.Fatalf("ready %+v after %d messages", ready, len(backlog))
				}
				// And nothing again after ready: what follows is only what
				// was posted since, each once.
				w.quietCollect(500*time.Millisecond, &got)
				want := above(ids(toClient(storedVisible(t, store, "general", me.ID))), cursor)
				if !slices.Equal(got, want) {
					t.Fatalf("received %d, stored %d\nmissing: %v\nextra or repeated: %v",
						len(got), len(want), missing(want, got), repeated(got))
				}
			})
		})
	}
}

func TestLiveMessagesDuringALongReplayComeOnceAfterIt(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2], func(t *testing.T) {
			eachStore(t, func(t *testing.T, store *models.Store) { liveDuringReplay(t, store, h2) })
		})
	}
}

func liveDuringReplay(t *testing.T, store *models.Store, h2 bool) {
	// No ring, so the replay reads the database; every message a
	// frame of its own; and a queue smaller than what comes during the
	// replay, though larger than what comes during one page of it.
	const queue, perPage = 64, 40
	hooked := &hookedStore{Store: store}
	s := startServer(t, hooked, store, h2, withRecent(-1), withoutCoalescing, withQueue(queue))
	ctx := ctxT(t)
	reader := userOver(t, s, "reader", h2)
	me, err := reader.Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"away0", "away1", "away2", "away3"}
	writers := make([]*client.Client, len(names))
	for i, name := range names {
		writers[i] = userOver(t, s, name, h2)
	}
	live := userOver(t, s, "live", h2)
	cursor := readerAway(t, reader)
	last := awayMix(t, ctx, writers, names, 3300)
	s.dispatched(t, last)
	missed := above(ids(toClient(storedVisible(t, store, "general", me.ID))), cursor)

	// After each page the replay reads, perPage live messages are
	// posted (and dispatched, so queued to the stream) before the page
	// goes out; at the second, someone also starts typing. The live
	// messages of all but the last page are read by the replay's last
	// page; those of the last come from the live queue, after ready.
	var posted []int64
	pages := 0
	hooked.watch(me.ID, cursor, func(page int) {
		pages = page
		for i := range perPage {
			res, err := live.Post(ctx, "general", fmt.Sprintf("live %d.%d", page, i))
			if err != nil {
				t.Errorf("live post: %v", err)
				return
			}
			posted = append(posted, res.Message.ID)
		}
		if !s.waitDispatched(posted[len(posted)-1]) {
			t.Errorf("live message %d was not dispatched", posted[len(posted)-1])
		}
		if page == 2 {
			if err := live.Typing(ctx, "general", true); err != nil {
				t.Errorf("typing: %v", err)
			}
		}
	})
	w := watch(t, reader, "general", strconv.FormatInt(cursor, 10))
	backlog, ready := w.untilReady()
	hooked.user.Store(0)
	hooked.mu.Lock() // the hook is done with pages and posted
	hooked.mu.Unlock()
	if t.Failed() {
		t.FailNow()
	}
	if pages < 3 {
		t.Fatalf("the replay read %d pages after the first; the test wants a long one", pages)
	}
	before := ids(backlog)
	if len(before) < len(missed) || !slices.Equal(before[:len(missed)], missed) {
		t.Fatalf("replayed %d, missed %d\nmissing: %v\nextra or repeated: %v",
			len(before), len(missed), missing(missed, before), repeated(before))
	}
	if ready.Resume != "ok" || ready.Replayed != len(backlog) {
		t.Fatalf("ready %+v after %d messages", ready, len(backlog))
	}

	// Then the live messages the replay did not read, and the typing,
	// once each.
	got := slices.Clone(before)
	typing := 0
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(got, posted[len(posted)-1]) && time.Now().Before(deadline) {
		ev, ok := w.take(time.Until(deadline))
		if !ok {
			break
		}
		switch ev.Type {
		case "message":
			got = append(got, decode[client.Message](t, ev).ID)
		case "typing":
			if e := decode[app.TypingEvent](t, ev); e.Username == "live" && e.Typing {
				typing++
			}
		}
	}
	w.quietCollect(300*time.Millisecond, &got)
	want := above(ids(toClient(storedVisible(t, store, "general", me.ID))), cursor)
	if !slices.Equal(got, want) {
		t.Fatalf("received %d, stored %d\nmissing: %v\nextra or repeated: %v",
			len(got), len(want), missing(want, got), repeated(got))
	}
	if len(got) == len(before) || !slices.Contains(got[len(before):], posted[len(posted)-1]) {
		t.Fatalf("no live message came after ready (%d before it); the test wants some", len(before))
	}
	if typing != 1 {
		t.Fatalf("the typing event came %d times, want once", typing)
	}
	if d := s.App.Hub.Stats().Dropped.Load(); d != 0 {
		t.Fatalf("%d streams dropped: the replay let the live queue fill", d)
	}
}

// BenchmarkResumeFromTheDatabase times a resume that missed 10,000
// messages, none of them in the hub's memory: connect to ready, over
// HTTP/1.1 on loopback, on SQLite.
//
//	go test -run '^$' -bench ResumeFromTheDatabase -benchtime 20x ./routes/
func BenchmarkResumeFromTheDatabase(b *testing.B) {
	const missed = 10_000
	store := storeSQLite(b)
	s := newTestServer(b, store, withRecent(-1))
	ctx := ctxT(b)
	reader := s.user(b, "reader")
	me, err := reader.Me(ctx)
	if err != nil {
		b.Fatal(err)
	}
	msgs := make([]*models.Message, missed)
	for i := range msgs {
		msgs[i] = &models.Message{Room: "general", Kind: models.KindUser, UserID: me.ID, Username: "reader",
			Body: fmt.Sprintf("message %d, long enough to look like one that people write", i), CreatedAt: time.Now().UTC()}
	}
	if err := store.InsertMessages(ctx, msgs); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		st, err := reader.Open(ctx, "general", "0")
		if err != nil {
			b.Fatal(err)
		}
		backlog, err := st.Backlog()
		_ = st.Close()
		if err != nil || len(backlog) < missed {
			b.Fatalf("replayed %d of %d: %v", len(backlog), missed, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/resume")
}

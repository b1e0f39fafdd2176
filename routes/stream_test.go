package routes

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"papo/app"
	"papo/e2e/client"
	"papo/models"
)

// watcher reads a stream in the background and hands its events over.
type watcher struct {
	t      testing.TB
	stream *client.Stream
	events chan client.Event
	done   chan error
	cursor string // Last-Event-ID of the last consumed event
}

func watch(t testing.TB, c *client.Client, room, lastID string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := c.Open(ctx, room, lastID)
	if err != nil {
		cancel()
		t.Fatalf("opening %s: %v", room, err)
	}
	w := &watcher{t: t, stream: st, events: make(chan client.Event, 10000), done: make(chan error, 1), cursor: lastID}
	go func() {
		defer close(w.events)
		for {
			ev, err := st.Next()
			if err != nil {
				w.done <- err
				return
			}
			w.events <- ev
		}
	}()
	t.Cleanup(func() { cancel(); _ = st.Close() })
	return w
}

func (w *watcher) close() { _ = w.stream.Close() }

// take waits up to d for the next event. It tracks the cursor of what was
// consumed (the reader goroutine may have parsed further ahead).
func (w *watcher) take(d time.Duration) (client.Event, bool) {
	select {
	case ev, ok := <-w.events:
		if ok {
			w.cursor = ev.ID
		}
		return ev, ok
	case <-time.After(d):
		return client.Event{}, false
	}
}

// next waits for the next event of one of the given types.
func (w *watcher) next(types ...string) client.Event {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ev, ok := w.take(time.Until(deadline))
		if !ok {
			w.t.Fatalf("no %v event within 10s (or the stream ended)", types)
		}
		if len(types) == 0 || slices.Contains(types, ev.Type) {
			return ev
		}
	}
}

// untilReady returns the messages before ready, and ready's data.
func (w *watcher) untilReady() ([]client.Message, app.ReadyEvent) {
	w.t.Helper()
	var msgs []client.Message
	for {
		ev := w.next()
		switch ev.Type {
		case "message":
			msgs = append(msgs, decode[client.Message](w.t, ev))
		case "ready":
			return msgs, decode[app.ReadyEvent](w.t, ev)
		}
	}
}

// message waits for a message event matching keep.
func (w *watcher) message(keep func(client.Message) bool) client.Message {
	w.t.Helper()
	for {
		m := decode[client.Message](w.t, w.next("message"))
		if keep(m) {
			return m
		}
	}
}

// quiet asserts that no event of the given type arrives within d.
func (w *watcher) quiet(d time.Duration, keep func(client.Event) bool) {
	w.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev, ok := <-w.events:
			if !ok {
				return
			}
			if keep(ev) {
				w.t.Fatalf("unexpected event %s: %s", ev.Type, ev.Data)
			}
		case <-timeout:
			return
		}
	}
}

func decode[T any](t testing.TB, ev client.Event) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(ev.Data), &v); err != nil {
		t.Fatalf("decoding %s event %q: %v", ev.Type, ev.Data, err)
	}
	return v
}

func TestStreamHeadersAndFraming(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ana := s.user(t, "ana")
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/rooms/general/events", nil)
	resp, err := ana.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache",
		"X-Accel-Buffering": "no",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	// Read raw frames up to ready: retry first, and no id: line in any
	// frame but a message's, so that ephemeral events never move the
	// browser's Last-Event-ID.
	br := bufio.NewReader(resp.Body)
	var frames []string
	var cur strings.Builder
	for !strings.Contains(cur.String(), "event: ready") {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\n" {
			frames = append(frames, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	if frames[0] != "retry: 2000\n" {
		t.Fatalf("first frame %q, want the retry line", frames[0])
	}
	for _, f := range append(frames[1:], cur.String()) {
		if strings.Contains(f, "id: ") != strings.Contains(f, "event: message\n") {
			t.Fatalf("frame with a wrong id line:\n%s", f)
		}
	}
}

func TestTwoUsersConverse(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		s := newTestServer(t, store)
		ctx := ctxT(t)
		ana, bia := s.user(t, "ana"), s.user(t, "bia")
		wa := watch(t, ana, "general", "")
		wa.untilReady()
		wb := watch(t, bia, "general", "")
		wb.untilReady()
		// Ana sees Bia join, and the users list grow.
		join := wa.message(func(m client.Message) bool { return m.Kind == "system" && m.Username == "bia" })
		if join.Event != "join" || join.Message != "bia joined the chat" {
			t.Fatalf("join = %+v", join)
		}
		for {
			u := decode[app.UsersEvent](t, wa.next("users"))
			if slices.Equal(u.Users, []string{"ana", "bia"}) {
				break
			}
		}
		res, err := ana.Post(ctx, "general", "  hi Bia 👋  ")
		if err != nil || res.Status != 201 || res.Message.Message != "hi Bia 👋" || res.Message.ID == 0 {
			t.Fatalf("post = %+v, %v", res, err)
		}
		got := wb.message(func(m client.Message) bool { return m.Kind == "user" })
		if got != *res.Message {
			t.Fatalf("bia got %+v, want %+v", got, *res.Message)
		}
		reply, err := bia.Post(ctx, "general", "hello Ana\nhow are you?")
		if err != nil {
			t.Fatal(err)
		}
		if got := wa.message(func(m client.Message) bool { return m.Username == "bia" && m.Kind == "user" }); got.Message != "hello Ana\nhow are you?" || got.ID != reply.Message.ID {
			t.Fatalf("ana got %+v", got)
		}
		if wa.cursor != strconv.FormatInt(reply.Message.ID, 10) {
			t.Fatalf("Last-Event-ID = %q, want %d", wa.cursor, reply.Message.ID)
		}
	})
}

func TestBacklogIsTheNewest50InOrder(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		s := newTestServer(t, store)
		ctx := ctxT(t)
		poster := s.user(t, "poster")
		for i := 0; i < 60; i++ {
			if _, err := poster.Post(ctx, "general", fmt.Sprintf("message %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		reader := s.user(t, "reader")
		backlog, ready := watch(t, reader, "general", "").untilReady()
		if len(backlog) != 50 || ready.Replayed != 50 || ready.Resume != "new" {
			t.Fatalf("backlog of %d, ready %+v; want 50, new", len(backlog), ready)
		}
		stored := storedVisible(t, store, "general", 0)
		// The reader's own join may land before or after the backlog read.
		last := backlog[49].ID
		want := idsUpTo(stored, last)
		if got := ids(backlog); !slices.Equal(got, want[len(want)-50:]) {
			t.Fatalf("backlog ids %v, want %v", got, want[len(want)-50:])
		}
		if backlog[49].Kind == "user" && backlog[49].Message != "message 59" {
			t.Fatalf("newest in backlog: %+v", backlog[49])
		}
	})
}

func TestResumeUnderLoad(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		s := newTestServer(t, store)
		ctx := ctxT(t)
		reader := s.user(t, "reader")
		// The first stream opens before anyone posts, so its backlog (the
		// newest 50) is everything stored so far.
		first := watch(t, reader, "general", "")
		const writers, each = 5, 40
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			c := s.user(t, fmt.Sprintf("writer%d", w))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					if _, err := c.Post(ctx, "general", fmt.Sprintf("w%d m%d", w, i)); err != nil {
						t.Errorf("post: %v", err)
						return
					}
				}
			}()
		}
		posting := make(chan struct{})
		go func() { wg.Wait(); close(posting) }()

		// Four cuts at random moments while the writers post, then one
		// stream that stays until they are done.
		var received []int64
		cursor := ""
		rng := rand.New(rand.NewPCG(1, 2))
		for cut := 0; cut <= 4; cut++ {
			w := first
			if cut > 0 {
				w = watch(t, reader, "general", cursor)
			}
			backlog, _ := w.untilReady()
			received = append(received, ids(backlog)...)
			if cut < 4 {
				w.collect(5+rng.IntN(40), 2*time.Second, &received)
			} else {
				<-posting
				w.quietCollect(300*time.Millisecond, &received)
			}
			cursor = w.cursor
			w.close()
		}
		// A last resume picks up anything still in flight at the cut.
		backlog, ready := watch(t, reader, "general", cursor).untilReady()
		received = append(received, ids(backlog)...)
		if ready.Resume != "ok" {
			t.Fatalf("final resume: %+v", ready)
		}
		want := ids(toClient(storedVisible(t, store, "general", 0)))
		// The reader's own join message comes at its first connect; joins
		// of writers never happen (they have no stream), so every stored
		// message must have arrived exactly once, in order.
		if !slices.Equal(received, want) {
			t.Fatalf("received %d ids, stored %d\nmissing: %v\nextra or repeated: %v",
				len(received), len(want), missing(want, received), repeated(received))
		}
		if len(want) < writers*each {
			t.Fatalf("only %d messages stored", len(want))
		}
	})
}

// collect appends the ids of up to n live messages, waiting at most d for each.
func (w *watcher) collect(n int, d time.Duration, into *[]int64) {
	for n > 0 {
		ev, ok := w.take(d)
		if !ok {
			return
		}
		if ev.Type == "message" {
			*into = append(*into, decode[client.Message](w.t, ev).ID)
			n--
		}
	}
}

// quietCollect appends message ids that arrive within d.
func (w *watcher) quietCollect(d time.Duration, into *[]int64) {
	deadline := time.Now().Add(d)
	for {
		ev, ok := w.take(time.Until(deadline))
		if !ok {
			return
		}
		if ev.Type == "message" {
			*into = append(*into, decode[client.Message](w.t, ev).ID)
		}
	}
}

func TestCursorEdgeCases(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	ana := s.user(t, "ana")
	var last int64
	for i := 0; i < 5; i++ {
		res, err := ana.Post(ctx, "general", fmt.Sprintf("m%d", i))
		if err != nil {
			t.Fatal(err)
		}
		last = res.Message.ID
	}
	// A post is answered once stored; the hub takes it into its recent
	// ring a moment later, and a stream opened in between gets it live,
	// after ready, rather than in its backlog. This test counts backlogs.
	for deadline := time.Now().Add(5 * time.Second); s.App.Hub.LastDispatched() < last; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the hub never dispatched message %d", last)
		}
	}
	cases := []struct {
		cursor string
		resume string
		count  int
	}{
		{"garbage", "invalid", 5},
		{"-3", "invalid", 5},
		{"99999999999999999999999", "invalid", 5},
		{strconv.FormatInt(last+1000, 10), "invalid", 5},
		{strconv.FormatInt(last-2, 10), "ok", 2},
		{strconv.FormatInt(last, 10), "ok", 0},
		{"0", "ok", 5},
	}
	for _, tc := range cases {
		t.Run(tc.cursor, func(t *testing.T) {
			backlog, ready := watch(t, ana, "general", tc.cursor).untilReady()
			user := 0
			for _, m := range backlog {
				if m.Kind == "user" {
					user++
				}
			}
			if ready.Resume != tc.resume || user != tc.count {
				t.Fatalf("cursor %q: %d user messages, ready %+v; want %d, %s", tc.cursor, user, ready, tc.count, tc.resume)
			}
		})
	}
	// The query form works like the header.
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/rooms/general/events?last_event_id="+strconv.FormatInt(last-1, 10), nil)
	resp, err := ana.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := client.NewParser(resp.Body)
	for {
		ev, err := p.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == "message" {
			if m := decode[client.Message](t, ev); m.ID != last {
				t.Fatalf("first replayed id %d, want %d", m.ID, last)
			}
			break
		}
	}
}

func TestJoinLeaveGraceTabsAndReload(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	ana, bia := s.user(t, "ana"), s.user(t, "bia")
	wa := watch(t, ana, "general", "")
	wa.untilReady()
	isSystem := func(user, event string) func(client.Message) bool {
		return func(m client.Message) bool { return m.Kind == "system" && m.Username == user && m.Event == event }
	}

	tab1 := watch(t, bia, "general", "")
	tab1.untilReady()
	wa.message(isSystem("bia", "join"))
	tab2 := watch(t, bia, "general", "")
	tab2.untilReady()
	// Closing one of two tabs, and reloading within the grace, say nothing.
	tab1.close()
	tab2.close()
	reload := watch(t, bia, "general", "")
	reload.untilReady()
	wa.quiet(600*time.Millisecond, func(ev client.Event) bool {
		return ev.Type == "message" && strings.Contains(ev.Data, `"bia"`)
	})
	if users, _ := ana.Users(ctx, "general"); !slices.Equal(users, []string{"ana", "bia"}) {
		t.Fatalf("users = %v", users)
	}
	// Closing the last one posts the leave after the grace.
	reload.close()
	left := wa.message(isSystem("bia", "leave"))
	if left.Message != "bia left the chat" {
		t.Fatalf("leave = %+v", left)
	}
	for {
		if u := decode[app.UsersEvent](t, wa.next("users")); slices.Equal(u.Users, []string{"ana"}) {
			break
		}
	}
	// Both system messages are stored, once each.
	var joins, leaves int
	for _, m := range storedVisible(t, s.Store, "general", 0) {
		if m.Username == "bia" && m.Event == "join" {
			joins++
		}
		if m.Username == "bia" && m.Event == "leave" {
			leaves++
		}
	}
	if joins != 1 || leaves != 1 {
		t.Fatalf("bia: %d joins, %d leaves stored; want 1 and 1", joins, leaves)
	}
}

func TestTypingReachesOthersAndLapses(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	ana, bia := s.user(t, "ana"), s.user(t, "bia")
	wa := watch(t, ana, "general", "")
	wa.untilReady()
	wb := watch(t, bia, "general", "")
	wb.untilReady()
	if err := ana.Typing(ctx, "general", true); err != nil {
		t.Fatal(err)
	}
	got := decode[app.TypingEvent](t, wb.next("typing"))
	if got != (app.TypingEvent{Room: "general", Username: "ana", Typing: true}) {
		t.Fatalf("typing = %+v", got)
	}
	// Not renewed: it lapses (400ms in tests, 6s in production).
	got = decode[app.TypingEvent](t, wb.next("typing"))
	if got.Typing || got.Username != "ana" {
		t.Fatalf("lapse = %+v", got)
	}
	// An explicit stop, and posting, end typing too.
	_ = ana.Typing(ctx, "general", true)
	wb.next("typing")
	if _, err := ana.Post(ctx, "general", "done typing"); err != nil {
		t.Fatal(err)
	}
	if got = decode[app.TypingEvent](t, wb.next("typing")); got.Typing {
		t.Fatalf("after posting: %+v", got)
	}
	// The typist never hears of their own typing.
	wa.quiet(200*time.Millisecond, func(ev client.Event) bool { return ev.Type == "typing" })

	// Bad input.
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/rooms/general/typing", strings.NewReader(`{"typing":"maybe"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, body := request(t, ana.HTTP, req)
	assertError(t, resp, body, 400, "invalid_typing")
}

func TestHeartbeatArrives(t *testing.T) {
	s := newTestServer(t, storeSQLite(t), withHeartbeat(100*time.Millisecond))
	ana := s.user(t, "ana")
	st, err := ana.Open(context.Background(), "general", "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pinged := make(chan string, 1)
	st.OnComment = func(text string) {
		select {
		case pinged <- text:
		default:
		}
	}
	go func() {
		for {
			if _, err := st.Next(); err != nil {
				return
			}
		}
	}()
	select {
	case text := <-pinged:
		if text != " ping" {
			t.Fatalf("comment %q", text)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no heartbeat")
	}
}

func TestFramingSurvivesTrickyText(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	ana, bia := s.user(t, "ana"), s.user(t, "bia")
	wb := watch(t, bia, "general", "")
	wb.untilReady()
	cases := []struct{ sent, stored string }{
		{"line one\nline two", "line one\nline two"},
		{"crlf\r\nline", "crlf\nline"},
		{"lone\rcr", "lone\ncr"},
		{"data: injected\n\nevent: ready\nid: 99999", "data: injected\n\nevent: ready\nid: 99999"},
		{"id: 1\nretry: 1\n: comment", "id: 1\nretry: 1\n: comment"},
		{"tab\there", "tab\there"},
	}
	for _, tc := range cases {
		res, err := ana.Post(ctx, "general", tc.sent)
		if err != nil {
			t.Fatal(err)
		}
		got := wb.message(func(m client.Message) bool { return m.Kind == "user" })
		if got.Message != tc.stored || got.ID != res.Message.ID {
			t.Fatalf("sent %q, received %q (id %d, want %d)", tc.sent, got.Message, got.ID, res.Message.ID)
		}
	}
}

func TestLogoutClosesTheSessionsStreams(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	ana := s.user(t, "ana")
	w := watch(t, ana, "general", "")
	w.untilReady()
	other := s.client() // another session of the same user stays open
	if _, err := other.Login(ctx, "ana", "correct horse"); err != nil {
		t.Fatal(err)
	}
	wo := watch(t, other, "general", "")
	wo.untilReady()
	if err := ana.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the logged-out session's stream stayed open")
	}
	if _, err := ana.Open(ctx, "general", ""); status(err) != 401 {
		t.Fatalf("reopening after logout: %v, want 401", err)
	}
	if _, err := other.Post(ctx, "general", "still here"); err != nil {
		t.Fatal(err)
	}
	wo.message(func(m client.Message) bool { return m.Message == "still here" })
}

func TestRoomRoutesValidate(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	ana := s.user(t, "ana")
	for _, path := range []string{
		"/rooms/General/messages", "/rooms/" + strings.Repeat("a", 65) + "/users", "/rooms/a%20b/events",
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
		resp, body := request(t, ana.HTTP, req)
		assertError(t, resp, body, 400, "invalid_room")
	}
	for _, q := range []string{"limit=0", "limit=-1", "limit=abc", "before=0", "before=x"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/rooms/general/messages?"+q, nil)
		resp, body := request(t, ana.HTTP, req)
		if resp.StatusCode != 400 || !strings.Contains(body, `"code"`) {
			t.Fatalf("%s: %d %s", q, resp.StatusCode, body)
		}
	}
	for _, text := range []string{"", "   ", "bell\a", strings.Repeat("x", 2001)} {
		if _, err := ana.Post(ctx, "general", text); status(err) != 400 || code(err) != "invalid_message" {
			t.Fatalf("post %q: %v", text, err)
		}
	}
	if _, err := ana.Post(ctx, "general", strings.Repeat("é", 2000)); err != nil {
		t.Fatalf("2000 characters: %v", err)
	}
	if n := countMessages(t, s.Store); n != 1 {
		t.Fatalf("%d messages stored, want 1", n)
	}
	// Unauthenticated room routes answer 401.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/rooms/general/events", nil)
	resp, body := request(t, nil, req)
	assertError(t, resp, body, 401, "unauthorized")
}

func TestHistoryPaging(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		s := newTestServer(t, store)
		ctx := ctxT(t)
		ana := s.user(t, "ana")
		var posted []int64
		for i := 0; i < 120; i++ {
			res, err := ana.Post(ctx, "general", fmt.Sprintf("m%d", i))
			if err != nil {
				t.Fatal(err)
			}
			posted = append(posted, res.Message.ID)
		}
		if _, err := ana.Post(ctx, "elsewhere", "not here"); err != nil {
			t.Fatal(err)
		}
		page, err := ana.History(ctx, "general", 0, 0)
		if err != nil || !slices.Equal(ids(page), posted[70:]) {
			t.Fatalf("default page: %v, %v", ids(page), err)
		}
		page, _ = ana.History(ctx, "general", posted[70], 30)
		if !slices.Equal(ids(page), posted[40:70]) {
			t.Fatalf("before %d: %v", posted[70], ids(page))
		}
		page, _ = ana.History(ctx, "general", 0, 500)
		if len(page) != 120 {
			t.Fatalf("limit 500 gave %d (at most 200, and 120 exist)", len(page))
		}
		page, _ = ana.History(ctx, "general", posted[0], 10)
		if len(page) != 0 {
			t.Fatalf("before the first: %v", ids(page))
		}
	})
}

// --- helpers

func storedVisible(t testing.TB, store *models.Store, room string, userID int64) []models.Message {
	t.Helper()
	rows, err := store.VisibleAfter(context.Background(), models.Visibility{Room: room, UserID: userID}, 0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func toClient(rows []models.Message) []client.Message {
	out := make([]client.Message, len(rows))
	for i, r := range rows {
		out[i] = client.Message{ID: r.ID}
	}
	return out
}

func ids(msgs []client.Message) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

func idsUpTo(rows []models.Message, last int64) []int64 {
	var out []int64
	for _, r := range rows {
		if r.ID <= last {
			out = append(out, r.ID)
		}
	}
	return out
}

func missing(want, got []int64) []int64 {
	var out []int64
	for _, id := range want {
		if !slices.Contains(got, id) {
			out = append(out, id)
		}
	}
	return out
}

func repeated(got []int64) []int64 {
	seen := map[int64]bool{}
	var out []int64
	for i, id := range got {
		if seen[id] || (i > 0 && id < got[i-1]) {
			out = append(out, id)
		}
		seen[id] = true
	}
	return out
}

// TestPostAnswersWithTheStreamsMessage: the sender's answer carries the
// message exactly as every stream receives it, as JSON.
func TestPostAnswersWithTheStreamsMessage(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		s := newTestServer(t, store)
		ana := s.user(t, "ana")
		w := watch(t, ana, "general", "")
		w.untilReady()
		res, err := ana.HTTP.PostForm(s.URL+"/rooms/general/messages", map[string][]string{"message": {`<b>"quoted"</b> & 👋`}})
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var answer struct {
			Message json.RawMessage `json:"message"`
		}
		if err := json.NewDecoder(res.Body).Decode(&answer); err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusCreated || res.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Fatalf("answer %d %q", res.StatusCode, res.Header.Get("Content-Type"))
		}
		var posted client.Message
		if err := json.Unmarshal(answer.Message, &posted); err != nil || posted.Message != `<b>"quoted"</b> & 👋` || posted.ID == 0 {
			t.Fatalf("answered %s (%v)", answer.Message, err)
		}
		for {
			ev := w.next("message")
			if ev.ID == strconv.FormatInt(posted.ID, 10) {
				if ev.Data != string(answer.Message) {
					t.Fatalf("the stream carried\n%s\nthe answer\n%s", ev.Data, answer.Message)
				}
				return
			}
		}
	})
}

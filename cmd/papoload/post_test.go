package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeRoom answers POST /rooms/:room/messages the way papo does: 201 and
// the stored message with the next id, once it has checked what a real
// server would refuse.
type fakeRoom struct {
	nextID  atomic.Int64
	mu      sync.Mutex
	bodies  []string
	conns   atomic.Int64
	answer  func(w http.ResponseWriter, id int64) // nil: one JSON write with Content-Length
	closing bool                                  // answer with Connection: close
}

func (f *fakeRoom) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/rooms/lobby/messages" {
		http.Error(w, "wrong route "+r.Method+" "+r.URL.Path, http.StatusNotFound)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		http.Error(w, "content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	if c, err := r.Cookie("papo_session"); err != nil || c.Value != "s3cret" {
		http.Error(w, "no session", http.StatusUnauthorized)
		return
	}
	msg := r.PostFormValue("message")
	f.mu.Lock()
	f.bodies = append(f.bodies, msg)
	f.mu.Unlock()
	if f.closing {
		w.Header().Set("Connection", "close")
	}
	id := f.nextID.Add(1)
	if f.answer != nil {
		f.answer(w, id)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"message":{"id":%d,"room":"lobby","kind":"user","message":%q}}`, id, msg)
}

func (f *fakeRoom) start(t *testing.T) *url.URL {
	srv := httptest.NewUnstartedServer(f)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestPosterSendsMessagesAndReadsTheirIDs(t *testing.T) {
	chunked := func(w http.ResponseWriter, id int64) {
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"message":{"id":%d,`, id)
		w.(http.Flusher).Flush() // the rest goes as a second chunk
		fmt.Fprint(w, `"room":"lobby"}}`)
	}
	cases := []struct {
		name      string
		room      *fakeRoom
		wantConns int64
	}{
		{"keep-alive: one connection for every post", &fakeRoom{}, 1},
		{"the server closes after each answer", &fakeRoom{closing: true}, 3},
		{"a chunked answer", &fakeRoom{answer: chunked}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.room.start(t)
			p := newPoster(&config{size: 40})
			conns := newPostConns()
			defer conns.close()
			acct := account{Name: "ana", Cookie: "papo_session=s3cret"}
			for i := range 3 {
				r := p.post(context.Background(), conns, u, "lobby", acct, p.body(i))
				if r.err || r.status != http.StatusCreated || r.id != int64(i+1) {
					t.Fatalf("post %d: %+v, want status 201 and id %d", i, r, i+1)
				}
				if r.answered < r.sent {
					t.Errorf("post %d answered before it was sent: %+v", i, r)
				}
			}
			if got := tc.room.conns.Load(); got != tc.wantConns {
				t.Errorf("%d connections for 3 posts, want %d", got, tc.wantConns)
			}
			tc.room.mu.Lock()
			defer tc.room.mu.Unlock()
			if len(tc.room.bodies) != 3 || len(tc.room.bodies[2]) != 40 || tc.room.bodies[2][:12] != "papoload #2 " {
				t.Errorf("the server got %q, want three 40-byte messages numbered 0..2", tc.room.bodies)
			}
		})
	}
}

// TestPosterRedialsAConnectionTheServerDropped: a keep-alive connection
// the server closed while idle costs no post.
func TestPosterRedialsAConnectionTheServerDropped(t *testing.T) {
	room := &fakeRoom{}
	srv := httptest.NewServer(room)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	p := newPoster(&config{size: 20})
	conns := newPostConns()
	defer conns.close()
	acct := account{Cookie: "papo_session=s3cret"}
	if r := p.post(context.Background(), conns, u, "lobby", acct, p.body(0)); r.err || r.id != 1 {
		t.Fatalf("first post: %+v", r)
	}
	srv.CloseClientConnections()
	if r := p.post(context.Background(), conns, u, "lobby", acct, p.body(1)); r.err || r.id != 2 {
		t.Fatalf("post after the server dropped the connection: %+v", r)
	}
}

func TestPosterReportsRefusals(t *testing.T) {
	room := &fakeRoom{}
	u := room.start(t)
	p := newPoster(&config{size: 20})
	conns := newPostConns()
	defer conns.close()
	cases := []struct {
		cookie string
		room   string
		status int
	}{
		{"papo_session=wrong", "lobby", http.StatusUnauthorized},
		{"papo_session=s3cret", "elsewhere", http.StatusNotFound},
	}
	for _, c := range cases {
		r := p.post(context.Background(), conns, u, c.room, account{Cookie: c.cookie}, p.body(0))
		if !r.err || r.status != c.status || r.id != 0 {
			t.Errorf("post with %s to %s: %+v, want an error with status %d", c.cookie, c.room, r, c.status)
		}
	}
	// The refusals kept the connection: the next good post uses it.
	if r := p.post(context.Background(), conns, u, "lobby", account{Cookie: "papo_session=s3cret"}, p.body(1)); r.err || r.id != 1 {
		t.Fatalf("post after refusals: %+v", r)
	}
	if got := room.conns.Load(); got != 1 {
		t.Errorf("%d connections, want 1", got)
	}
}

package routes

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"papo/app"
	"papo/e2e/client"
	"papo/models"
	"papo/models/modelstest"
)

// testServer is papo's full HTTP stack on a real database, served by
// httptest.
type testServer struct {
	URL   string
	App   *app.App
	Store *models.Store
	srv   *httptest.Server
	h     *Handler
}

type serverOption func(*app.Config, *app.Options)

func withLimits(c *app.Config, _ *app.Options) {
	c.Limits.Enabled = true
}

func withHeartbeat(d time.Duration) serverOption {
	return func(c *app.Config, o *app.Options) { c.Heartbeat = d; o.Hub.Heartbeat = d }
}

func withQueue(n int) serverOption {
	return func(_ *app.Config, o *app.Options) { o.Hub.QueueSize = n }
}

func testLog() *slog.Logger {
	if os.Getenv("PAPO_TEST_LOG") == "1" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newTestServer starts papo on store. Limits are off unless an option
// turns them on; the leave grace is short.
func newTestServer(t testing.TB, store *models.Store, opts ...serverOption) *testServer {
	t.Helper()
	return startServer(t, store, store, false, opts...)
}

// startServer is newTestServer on appStore (store, or a wrapper of it),
// over HTTPS with HTTP/2 when h2 is set; its clients (s.client, s.user)
// then speak HTTP/2.
func startServer(t testing.TB, appStore app.Store, store *models.Store, h2 bool, opts ...serverOption) *testServer {
	t.Helper()
	cfg, err := app.LoadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.LeaveGrace = 300 * time.Millisecond
	cfg.Limits.Enabled = false
	o := app.Options{BcryptCost: 4, TypingLapse: 400 * time.Millisecond}
	for _, opt := range opts {
		opt(&cfg, &o)
	}
	ctx := context.Background()
	a, err := app.New(ctx, cfg, appStore, testLog(), o)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(ctx, a, os.DirFS(".."))
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	if h2 {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv.Start()
	}
	ts := &testServer{URL: srv.URL, App: a, Store: store, srv: srv, h: h}
	t.Cleanup(ts.Close)
	return ts
}

// Close stops streams first, as main does on SIGTERM.
func (s *testServer) Close() {
	s.App.StopStreams()
	s.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.h.Drain(ctx); err != nil {
		panic("streams did not end: " + err.Error())
	}
	s.App.Close()
}

// client is a fresh user agent that remembers the Set-Cookie headers it got.
func (s *testServer) client() *client.Client {
	c := client.New(s.URL, nil)
	c.HTTP.Transport = &cookieRecorder{next: c.HTTP.Transport, set: map[string]*http.Cookie{}}
	return c
}

// cookieRecorder keeps the last Set-Cookie of each name, flags included.
type cookieRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	set  map[string]*http.Cookie
}

func (r *cookieRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err == nil {
		r.mu.Lock()
		for _, ck := range resp.Cookies() {
			r.set[ck.Name] = ck
		}
		r.mu.Unlock()
	}
	return resp, err
}

func (r *cookieRecorder) last(name string) *http.Cookie {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.set[name]
}

// user registers a fresh user and returns its logged-in client.
func (s *testServer) user(t testing.TB, name string) *client.Client {
	t.Helper()
	c := s.client()
	if _, err := c.Register(context.Background(), name, "correct horse"); err != nil {
		t.Fatalf("registering %s: %v", name, err)
	}
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// request sends a raw request and returns the response with its body read.
func request(t testing.TB, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func modelstestOpen(t testing.TB, d models.Dialect) *models.Store { return modelstest.Open(t, d) }

// eachStore runs fn against SQLite and, when configured, MySQL.
func eachStore(t *testing.T, fn func(t *testing.T, store *models.Store)) {
	modelstest.Each(t, fn)
}

//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sseHandler serves a stream the way papo does over HTTP/1.1 (chunked,
// flushed per event): a backlog, users, ready (unless noReady); then, once
// live is closed, count messages one flush each; then it holds the stream
// open (until the client goes, or quit is closed), or ends it when end is
// set.
func sseHandler(status, count int, live, quit <-chan struct{}, end, noReady bool) http.HandlerFunc {
	hold := func(r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-quit:
		}
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if status != http.StatusOK {
			http.Error(w, `{"error":"not logged in"}`, status)
			return
		}
		if noReady {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "retry: 2000\n\n")
			w.(http.Flusher).Flush()
			hold(r)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		io.WriteString(w, "retry: 2000\n\n")
		for id := 1; id <= 3; id++ {
			io.WriteString(w, msg(id, "message", "backlog"))
		}
		io.WriteString(w, "event: users\ndata: {\"users\":[\"load1\"]}\n\n")
		io.WriteString(w, "event: ready\ndata: {}\n\n")
		fl.Flush()
		select {
		case <-live:
		case <-r.Context().Done():
			return
		}
		for i := 1; i <= count; i++ {
			io.WriteString(w, msg(1000+i, "message", fmt.Sprintf("papoload #%d", i)))
			fl.Flush()
		}
		if !end {
			hold(r)
		}
	}
}

func TestStreamsAgainstServer(t *testing.T) {
	const streams, count = 24, 100
	readers := []struct {
		name  string
		make  func(*streamSet) streamReader
		epoll bool
	}{
		{"epoll loops", newStreamReader, true},
		{"goroutine per stream", func(*streamSet) streamReader { return goroutineReader{} }, false},
	}
	tests := []struct {
		name    string
		status  int
		end     bool // the server ends each stream after the messages
		noReady bool // the server never sends ready
	}{
		{name: "messages", status: http.StatusOK},
		{name: "server ends the streams", status: http.StatusOK, end: true},
		{name: "not logged in", status: http.StatusUnauthorized},
		{name: "never ready", status: http.StatusOK, noReady: true},
	}
	for _, rd := range readers {
		for _, tc := range tests {
			t.Run(rd.name+"/"+tc.name, func(t *testing.T) {
				goroutines := runtime.NumGoroutine()

				live, quit := make(chan struct{}), make(chan struct{})
				srv := httptest.NewServer(sseHandler(tc.status, count, live, quit, tc.end, tc.noReady))
				fds := openFDs(t)
				u, err := url.Parse(srv.URL)
				if err != nil {
					t.Fatal(err)
				}
				cfg := &config{streams: streams, concurrency: 8, sources: []net.IP{net.IPv4(127, 0, 0, 1)}, bufSize: 16 << 10,
					readyTimeout: 300 * time.Millisecond, newReader: rd.make}
				if tc.noReady {
					// One round of connects: the epoll reader looks for late
					// streams only once a second.
					cfg.concurrency = streams
				}
				target := func(int) (*url.URL, string, string, account) {
					return u, "general", "", account{Cookie: "papo_session=x"}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				set, _ := openStreams(ctx, cfg, target, count+8, false)
				if _, isEpoll := set.reader.(*epollReader); isEpoll != rd.epoll {
					t.Fatalf("reader %T", set.reader)
				}

				switch {
				case tc.status != http.StatusOK:
					if set.ready.Load() != 0 || set.failed.Load() != streams {
						t.Errorf("%d ready, %d failed; want 0, %d", set.ready.Load(), set.failed.Load(), streams)
					}
					if errs := set.firstErrors(5); len(errs) != 1 || errs[0] != fmt.Sprintf("%dx HTTP 401", streams) {
						t.Errorf("errors %q", errs)
					}
				case tc.noReady:
					// Given up after readyTimeout, as the conn's deadline did.
					if set.ready.Load() != 0 || set.failed.Load() != streams {
						t.Errorf("%d ready, %d failed; want 0, %d", set.ready.Load(), set.failed.Load(), streams)
					}
					for _, st := range set.streams {
						if msg := fmt.Sprint(st.err); !strings.HasPrefix(msg, "stream ended before ready: read tcp 127.0.0.1:") || !strings.HasSuffix(msg, ": i/o timeout") {
							t.Fatalf("stream %d: error %q", st.idx, msg)
						}
					}
				default:
					if set.ready.Load() != streams {
						t.Fatalf("%d ready, want %d; errors %q", set.ready.Load(), streams, set.firstErrors(5))
					}
					set.record.Store(true)
					close(live)
					deadline := time.Now().Add(20 * time.Second)
					for (set.received.Load() < streams*count || tc.end && set.disconnects.Load() < streams) && time.Now().Before(deadline) {
						time.Sleep(time.Millisecond)
					}
					set.record.Store(false)
				}
				set.closeAll()
				// Every socket is closed, the server's ends too once its
				// handlers see the resets; the epoll reader owns duplicates
				// of the client ends, which must go as well.
				deadline := time.Now().Add(5 * time.Second)
				for openFDs(t) > fds && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if n := openFDs(t); n > fds {
					t.Errorf("%d open file descriptors after closing, %d before", n, fds)
				}
				close(quit)
				srv.Close()

				if tc.status == http.StatusOK && !tc.noReady {
					if got := set.received.Load(); got != streams*count {
						t.Errorf("received %d, want %d", got, streams*count)
					}
					for _, st := range set.streams {
						if len(st.recs) != count {
							t.Fatalf("stream %d: %d receipts, want %d", st.idx, len(st.recs), count)
						}
						for i, r := range st.recs {
							if r.id != int64(1001+i) || r.at < st.readyAt || i > 0 && r.at < st.recs[i-1].at {
								t.Fatalf("stream %d, receipt %d: %+v (ready at %d, previous %+v)", st.idx, i, r, st.readyAt, st.recs[max(0, i-1)])
							}
						}
					}
					wantDisc, wantErrs := int64(0), []string(nil)
					if tc.end {
						wantDisc, wantErrs = streams, []string{fmt.Sprintf("%dx %s", streams, errEndOfBody)}
					}
					if got := set.disconnects.Load(); got != wantDisc {
						t.Errorf("%d disconnects, want %d", got, wantDisc)
					}
					if errs := set.firstErrors(5); strings.Join(errs, "|") != strings.Join(wantErrs, "|") {
						t.Errorf("errors %q, want %q", errs, wantErrs)
					}
				}

				if r, ok := set.reader.(*epollReader); ok {
					for i, l := range r.loops {
						select {
						case <-l.exited:
						default:
							t.Errorf("loop %d still running after closeAll", i)
						}
					}
				}
				deadline = time.Now().Add(5 * time.Second)
				for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if n := runtime.NumGoroutine(); n > goroutines {
					buf := make([]byte, 1<<20)
					t.Errorf("%d goroutines after closing, %d before:\n%s", n, goroutines, buf[:runtime.Stack(buf, true)])
				}
			})
		}
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// A connect refused is told as Go's dialer tells it, by either reader, and
// leaves no socket behind.
func TestStreamsToAClosedPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	u := &url.URL{Scheme: "http", Host: addr}
	for _, rd := range []struct {
		name string
		make func(*streamSet) streamReader
	}{
		{"epoll loops", newStreamReader},
		{"goroutine per stream", func(*streamSet) streamReader { return goroutineReader{} }},
	} {
		t.Run(rd.name, func(t *testing.T) {
			fds := openFDs(t)
			cfg := &config{streams: 6, concurrency: 3, sources: []net.IP{net.IPv4(127, 0, 0, 1)}, bufSize: 4 << 10,
				readyTimeout: time.Second, newReader: rd.make}
			target := func(int) (*url.URL, string, string, account) { return u, "general", "", account{Cookie: "c=x"} }
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			set, _ := openStreams(ctx, cfg, target, 0, false)
			set.closeAll()
			if set.ready.Load() != 0 || set.failed.Load() != 6 {
				t.Errorf("%d ready, %d failed; want 0, 6", set.ready.Load(), set.failed.Load())
			}
			errs := set.firstErrors(5)
			if len(errs) != 1 || !strings.HasPrefix(errs[0], "6x dial tcp 127.0.0.1:0->"+addr+": connect: connection refused") {
				t.Errorf("errors %q", errs)
			}
			if n := openFDs(t); n > fds {
				t.Errorf("%d open file descriptors after closing, %d before", n, fds)
			}
		})
	}
}

// gatedListener accepts nothing until open is closed.
type gatedListener struct {
	net.Listener
	open chan struct{}
}

func (l gatedListener) Accept() (net.Conn, error) {
	<-l.open
	return l.Listener.Accept()
}

// When the server's accept queue is full, a connect is still under way
// when the epoll opener first tries to send; the loop sends the request
// once the handshake completes (here after the kernel's SYN retry), and
// the stream works as any other.
func TestOpenerSendsOnceConnected(t *testing.T) {
	// A backlog of 0 queues one connection; the other handshakes wait.
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	gate := gatedListener{Listener: ln, open: make(chan struct{})}
	live, quit := make(chan struct{}), make(chan struct{})
	srv := &httptest.Server{Listener: gate, Config: &http.Server{Handler: sseHandler(http.StatusOK, 5, live, quit, false, false)}}
	srv.Start()
	t.Cleanup(func() { close(quit); srv.Close() })
	u, _ := url.Parse(srv.URL)

	const streams = 4
	cfg := &config{streams: streams, concurrency: streams, sources: []net.IP{net.IPv4(127, 0, 0, 1)}, bufSize: 4 << 10,
		readyTimeout: 10 * time.Second, newReader: newStreamReader}
	target := func(int) (*url.URL, string, string, account) { return u, "general", "", account{Cookie: "c=x"} }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The gate opens once the connects are under way; openStreams returns
	// when every stream is ready.
	opened := time.AfterFunc(200*time.Millisecond, func() { close(gate.open) })
	defer opened.Stop()
	set, _ := openStreams(ctx, cfg, target, 8, false)
	defer set.closeAll()
	if set.ready.Load() != streams {
		t.Fatalf("%d ready, want %d; errors %q", set.ready.Load(), streams, set.firstErrors(5))
	}
	if set.lateSends.Load() == 0 {
		t.Errorf("every request was sent at once; want some sent once their connect finished")
	}
	set.record.Store(true)
	close(live)
	deadline := time.Now().Add(10 * time.Second)
	for set.received.Load() < streams*5 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := set.received.Load(); got != streams*5 {
		t.Errorf("received %d, want %d", got, streams*5)
	}
}

// Streams opened to record (the reconnect scenario's second set) keep
// their backlog's receipts as well as the live ones, and count only the
// live ones as received, with either reader.
func TestStreamsOpenedToRecordKeepTheirBacklog(t *testing.T) {
	const streams, count = 6, 5
	for _, rd := range []struct {
		name string
		make func(*streamSet) streamReader
	}{
		{"epoll loops", newStreamReader},
		{"goroutine per stream", func(*streamSet) streamReader { return goroutineReader{} }},
	} {
		t.Run(rd.name, func(t *testing.T) {
			live, quit := make(chan struct{}), make(chan struct{})
			close(live)
			srv := httptest.NewServer(sseHandler(http.StatusOK, count, live, quit, false, false))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(quit) })
			u, err := url.Parse(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			cfg := &config{streams: streams, concurrency: streams, sources: []net.IP{net.IPv4(127, 0, 0, 1)}, bufSize: 16 << 10,
				readyTimeout: 5 * time.Second, newReader: rd.make}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			set, _ := openStreams(ctx, cfg, func(int) (*url.URL, string, string, account) {
				return u, "general", "7", account{Cookie: "papo_session=x"}
			}, count+8, true)
			deadline := time.Now().Add(10 * time.Second)
			for set.received.Load() < streams*count && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			set.closeAll()
			if got, want := set.received.Load(), int64(streams*count); got != want {
				t.Errorf("received %d, want %d (the live messages alone)", got, want)
			}
			if got, want := set.replayed.Load(), int64(streams*3); got != want {
				t.Errorf("replayed %d, want %d", got, want)
			}
			want := []int64{1, 2, 3, 1001, 1002, 1003, 1004, 1005}
			for _, st := range set.streams {
				if got := idsOf(st.recs); !slices.Equal(got, want) {
					t.Errorf("stream %d kept %v, want %v", st.idx, got, want)
				}
			}
		})
	}
}

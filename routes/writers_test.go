//go:build linux

package routes

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"papo/app"
	"papo/e2e/client"
)

// A client that stops reading fills its socket, then the server's: the
// write that finds it full is finished by the stream's own goroutine while
// the rest of the room goes on. These tests stall a real TCP client, with
// a small receive buffer so that a few hundred kilobytes fill both sides.

// smallWindowUser registers name with a client whose connections have a
// 4 KiB receive buffer.
func smallWindowUser(t *testing.T, s *testServer, name string) *client.Client {
	t.Helper()
	c := s.user(t, name)
	rec := c.HTTP.Transport.(*cookieRecorder)
	tr := rec.next.(*http.Transport).Clone()
	d := &net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	tr.DialContext = d.DialContext
	rec.next = tr
	return c
}

// counter reads one counter from /metrics.
func (s *testServer) counter(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// postUntil posts large messages as writer until cond holds (checked every
// ten posts), then extra more, and returns the posted ids.
func postUntil(t *testing.T, ctx context.Context, writer *client.Client, cond func() bool, extra int) []int64 {
	t.Helper()
	text := strings.Repeat("lorem ipsum ", 160) // ~1.9 KB
	var ids []int64
	post := func(i int) {
		res, err := writer.Post(ctx, "general", fmt.Sprintf("%d %s", i, text))
		if err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
		ids = append(ids, res.Message.ID)
	}
	for i := 0; ; i++ {
		if i%10 == 0 && cond() {
			break
		}
		if i == 5000 {
			t.Fatalf("the condition did not hold after %d posts", i)
		}
		post(i)
	}
	t.Logf("the condition held after %d posts", len(ids))
	for i := range extra {
		post(len(ids) + i)
	}
	return ids
}

// fromUser reads st's message events from user until the stream ends or
// the last of want has arrived.
func fromUser(t *testing.T, st *client.Stream, user string, want []int64) (got []int64, err error) {
	t.Helper()
	for {
		if len(got) > 0 && got[len(got)-1] == want[len(want)-1] {
			return got, nil
		}
		ev, err := st.Next()
		if err != nil {
			return got, err
		}
		if ev.Type != "message" {
			continue
		}
		m, derr := client.DecodeMessage(ev)
		if derr != nil {
			t.Fatal(derr)
		}
		if m.Username == user {
			got = append(got, m.ID)
		}
	}
}

// stalledStream opens #general for a new user with a small receive window
// and reads it up to ready; the caller then leaves it unread.
func stalledStream(t *testing.T, s *testServer) (*client.Client, *client.Stream) {
	t.Helper()
	slow := smallWindowUser(t, s, "stalled")
	st, err := slow.Open(ctxT(t), "general", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.Backlog(); err != nil {
		t.Fatal(err)
	}
	return slow, st
}

func TestStalledStreamCatchesUpInOrder(t *testing.T) {
	s := newTestServer(t, storeSQLite(t), withQueue(1<<16))
	ctx := ctxT(t)
	_, st := stalledStream(t, s)
	// The stream is not read from here on.
	writer := s.user(t, "writer")
	posted := postUntil(t, ctx, writer, func() bool {
		return s.counter(t, "papo_stream_writes_blocked_total") > 0
	}, 30)

	got, err := fromUser(t, st, "writer", posted)
	if err != nil {
		t.Fatalf("the stream ended after %d of %d messages: %v", len(got), len(posted), err)
	}
	if !slices.Equal(got, posted) {
		t.Fatalf("got %d messages, posted %d; missing %v, repeated %v", len(got), len(posted), missing(posted, got), repeated(got))
	}
	if d := s.counter(t, "papo_events_dropped_total"); d != 0 {
		t.Fatalf("%v streams dropped; the queue was large enough for all", d)
	}
}

func TestStalledStreamIsDroppedWhileTheRoomGoesOn(t *testing.T) {
	s := newTestServer(t, storeSQLite(t), withQueue(4))
	ctx := ctxT(t)
	slow, st := stalledStream(t, s)
	fast := watch(t, s.user(t, "reader"), "general", "")
	fast.untilReady()

	writer := s.user(t, "writer")
	posted := postUntil(t, ctx, writer, func() bool {
		return s.counter(t, "papo_events_dropped_total") > 0
	}, 30)

	// The reader kept up with every message, in order.
	var seen []int64
	for len(seen) < len(posted) {
		m := fast.message(func(m client.Message) bool { return m.Username == "writer" })
		seen = append(seen, m.ID)
	}
	if !slices.Equal(seen, posted) {
		t.Fatalf("the reader got %d messages, %d posted; missing %v", len(seen), len(posted), missing(posted, seen))
	}

	// The stalled client, reading again, finds its stream ended cleanly
	// (the chunked body is closed), and a resume from its cursor gives
	// exactly the rest.
	got, err := fromUser(t, st, "writer", posted)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("the dropped stream ended with %v after %d messages, want a clean end", err, len(got))
	}
	if len(got) >= len(posted) {
		t.Fatalf("the dropped stream got all %d messages", len(got))
	}
	again, err := slow.Open(ctx, "general", st.LastID())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.Close() })
	replayed, err := again.Backlog()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range replayed {
		if m.Username == "writer" {
			got = append(got, m.ID)
		}
	}
	if !slices.Equal(got, posted) {
		t.Fatalf("stream and resume gave %d messages, %d posted; missing %v, repeated %v", len(got), len(posted), missing(posted, got), repeated(got))
	}
}

// BenchmarkFanoutOverTCP posts one message at a time to a room whose 1,000
// streams are real HTTP/1.1 connections on loopback, and waits until every
// stream has it: the whole stream path, hub to socket to a reader. Most of
// its time is the kernel's (one loopback send and one read per delivery),
// so compare runs on one machine only.
//
//	go test -run '^$' -bench FanoutOverTCP -benchtime 200x ./routes/
func BenchmarkFanoutOverTCP(b *testing.B) {
	const streams, users = 1000, 10
	s := newTestServer(b, storeSQLite(b), func(_ *app.Config, o *app.Options) { o.Hub.Coalesce = -1 })
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	got := make(chan struct{}, streams)
	for u := range users {
		c := s.user(b, fmt.Sprintf("reader%d", u))
		for range streams / users {
			st, err := c.Open(ctx, "general", "")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = st.Close() })
			if _, err := st.Backlog(); err != nil {
				b.Fatal(err)
			}
			go func() {
				for {
					ev, err := st.Next()
					if err != nil {
						return
					}
					if ev.Type == "message" && strings.Contains(ev.Data, `"username":"poster"`) {
						got <- struct{}{}
					}
				}
			}()
		}
	}
	poster := s.user(b, "poster")
	b.ResetTimer()
	for i := range b.N {
		if _, err := poster.Post(ctx, "general", "message "+strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
		for range streams {
			select {
			case <-got:
			case <-time.After(10 * time.Second):
				b.Fatal("a stream did not get the message within 10 s")
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*streams), "ns/delivery")
}

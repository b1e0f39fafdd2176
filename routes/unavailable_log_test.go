package routes

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"papo/app"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A burst of 503s (an outage) is one line; a lone 503 after a quiet
// spell is a line again, with the count of those left unlogged.
func TestUnavailableLogsOncePerBurst(t *testing.T) {
	b := newBurstLog(10 * time.Second)
	t0 := time.Unix(1_000_000, 0)
	logged := 0
	for i := range 100 { // one 503 every 200 ms for 20 s
		if ok, _ := b.take("unavailable", t0.Add(time.Duration(i)*200*time.Millisecond)); ok {
			logged++
		}
	}
	if logged != 1 {
		t.Fatalf("%d lines over a 20 s outage, want 1", logged)
	}
	// Another code is its own burst.
	if ok, _ := b.take("shutting_down", t0.Add(5*time.Second)); !ok {
		t.Fatal("the first 503 of another code was not logged")
	}
	// After 10 s without one, the next is logged, with the count.
	ok, unlogged := b.take("unavailable", t0.Add(20*time.Second+10*time.Second))
	if !ok || unlogged != 99 {
		t.Fatalf("a 503 after a quiet spell: logged %v, unlogged_before %d; want true, 99", ok, unlogged)
	}
}

// answerOf logs the first 503 of an outage, not every one, and still
// answers each 503.
func TestUnavailableOutageIsOneLogLine(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	code := "test_outage_" + strings.ReplaceAll(t.Name(), "/", "_")
	err := &app.Error{Kind: app.KindUnavailable, Code: code, Message: "down", Err: errors.New("connection refused")}
	bursts := newBurstLog(unavailableQuiet)
	for range 20 {
		c, _ := gin.CreateTestContext(httptest.NewRecorder())
		c.Set(ctxLog, requestLogger{log: log, id: "r1", unavailable: bursts})
		if _, status := answerOf(c, err); status != 503 {
			t.Fatalf("status %d, want 503", status)
		}
	}
	if n := strings.Count(buf.String(), "request failed: service unavailable"); n != 1 {
		t.Fatalf("%d lines for 20 503s in a row, want 1:\n%s", n, buf.String())
	}
}

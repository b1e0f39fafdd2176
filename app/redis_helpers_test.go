package app

// Helpers for the tests that need a real Redis: the shared one at
// 127.0.0.1:6379 (REDIS_URL overrides), a random key prefix per test, and
// a proxy in front of Redis that a test can cut and restore to play an
// outage while Redis keeps its data.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// requireRedis returns the URL of a Redis that answers. Without one the
// test is skipped, unless PAPO_TEST_STRICT=1, where a skip would hide a
// broken CI image.
func requireRedis(t *testing.T) string {
	t.Helper()
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("REDIS_URL %q: %v", url, err)
	}
	client := redis.NewClient(opt)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		msg := fmt.Sprintf("no Redis answers at %s (start redis-server, or point REDIS_URL at one): %v", url, err)
		if os.Getenv("PAPO_TEST_STRICT") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return url
}

// testPrefix returns a key prefix of this test alone, and deletes its keys
// when the test ends.
func testPrefix(t *testing.T, url string) string {
	t.Helper()
	prefix := "papotest:" + newOrigin() + ":"
	t.Cleanup(func() { deleteKeys(t, url, prefix) })
	return prefix
}

func deleteKeys(t *testing.T, url, prefix string) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return
	}
	client := redis.NewClient(opt)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	iter := client.Scan(ctx, 0, prefix+"*", 500).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Logf("cleaning up %s*: %v", prefix, err)
		return
	}
	if len(keys) > 0 {
		if err := client.Del(ctx, keys...).Err(); err != nil {
			t.Logf("cleaning up %s*: %v", prefix, err)
		}
	}
}

// testLog is a logger whose output the test can read; it is printed when
// the test fails.
type testLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func newTestLog(t *testing.T) (*slog.Logger, *testLog) {
	l := &testLog{}
	t.Cleanup(func() {
		if t.Failed() {
			l.mu.Lock()
			t.Logf("log:\n%s", l.buf.String())
			l.mu.Unlock()
		}
	})
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo})), l
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// count returns how many lines contain s.
func (l *testLog) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

// eventually polls cond every 20 ms until it holds, failing the test after
// timeout. Timeouts are generous: tests assert on what happens, not when.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flakyProxy forwards TCP to Redis until cut: then it drops every
// connection and refuses new ones, like a Redis that went away, until
// restored. Redis itself keeps its data throughout.
type flakyProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	hung  bool // bytes are held, as by a server that stopped answering
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newFlakyProxy(t *testing.T, redisURL string) (*flakyProxy, string) {
	t.Helper()
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &flakyProxy{ln: ln, target: opt.Addr, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p, fmt.Sprintf("redis://%s/%d", ln.Addr(), opt.DB)
}

func (p *flakyProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.pipe(c)
	}
}

func (p *flakyProxy) pipe(c net.Conn) {
	defer p.wg.Done()
	defer p.forget(c)
	up, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		up.Close()
		return
	}
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	defer p.forget(up)
	done := make(chan struct{}, 2)
	go func() { p.copy(up, c); done <- struct{}{} }()
	go func() { p.copy(c, up); done <- struct{}{} }()
	<-done
}

// copy forwards src to dst, holding what it read while the proxy hangs.
func (p *flakyProxy) copy(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for p.isHung() {
			time.Sleep(10 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *flakyProxy) isHung() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hung && !p.down
}

func (p *flakyProxy) hang(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hung = on
}

func (p *flakyProxy) forget(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *flakyProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *flakyProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

func (p *flakyProxy) close() {
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	l.Close()
	return addr, nil
}

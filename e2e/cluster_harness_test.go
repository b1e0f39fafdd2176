package e2e

// Helpers for the cluster tests: the real services they need (a fresh
// MariaDB database, Redis with a private key prefix, a private
// redis-server that a test may stop, nginx with the sample configuration),
// and a scripted reader of the event stream that follows the contract:
// it parses SSE over plain HTTP and reconnects with Last-Event-ID.
//
// A missing service skips the test with the reason, unless
// PAPO_TEST_STRICT=1, where it fails: in CI a skip would hide a broken
// image.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"papo/models"
	"papo/models/modelstest"
)

// missing skips, or fails under PAPO_TEST_STRICT=1.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("PAPO_TEST_STRICT") == "1" {
		t.Fatal(msg + " (PAPO_TEST_STRICT=1)")
	}
	t.Skip(msg)
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// ---------------------------------------------------------------------------
// MariaDB

// newMariaDB creates a database of its own for the test on the server that
// PAPO_TEST_MYSQL_URL names, drops it when the test ends, and returns its
// DATABASE_URL.
func newMariaDB(t testing.TB) string {
	t.Helper()
	return modelstest.URL(t, models.MySQL)
}

// ---------------------------------------------------------------------------
// Redis

// sharedRedis returns the URL of the shared Redis (REDIS_URL, by default
// 127.0.0.1:6379) and a key prefix of the test's own, whose keys are
// deleted when the test ends.
func sharedRedis(t testing.TB) (redisURL, prefix string) {
	t.Helper()
	redisURL = os.Getenv("REDIS_URL")
	if redisURL == "" {
		redisURL = "redis://127.0.0.1:6379/0"
	}
	client := redisClient(t, redisURL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		missing(t, "no Redis answers at %s (start redis-server, or set REDIS_URL): %v", redisURL, err)
	}
	prefix = randomName("papoe2e:") + ":"
	t.Cleanup(func() {
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var keys []string
		iter := client.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			client.Del(ctx, keys...)
		}
	})
	return redisURL, prefix
}

func redisClient(t testing.TB, redisURL string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatalf("REDIS_URL %q: %v", redisURL, err)
	}
	return redis.NewClient(opt)
}

// privateRedis is a redis-server of the test's own, without persistence,
// which the test may stop and start again on the same port.
type privateRedis struct {
	URL  string
	t    testing.TB
	path string
	port string
	dir  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func startPrivateRedis(t testing.TB) *privateRedis {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		missing(t, "no redis-server to run a private Redis (install redis-server): %v", err)
	}
	_, port, _ := net.SplitHostPort(freeAddr(t))
	r := &privateRedis{URL: "redis://127.0.0.1:" + port + "/0", t: t, path: path, port: port, dir: t.TempDir()}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start runs redis-server and waits until it answers.
func (r *privateRedis) Start() {
	r.t.Helper()
	cmd := exec.Command(r.path, "--port", r.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	cmd.Dir = r.dir
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	client := redisClient(r.t, r.URL)
	defer client.Close()
	waitFor(r.t, "the private redis-server to answer", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return client.Ping(ctx).Err() == nil
	})
}

// Stop ends redis-server (SIGTERM, then SIGKILL) and waits for it.
func (r *privateRedis) Stop() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// ---------------------------------------------------------------------------
// nginx with the sample configuration

// startNginx runs nginx in front of the instances with deploy/nginx.conf,
// changed only where it must be: the upstream's servers and the listen
// address. It returns nginx's base URL.
func startNginx(t testing.TB, instances ...*Server) string {
	t.Helper()
	path, err := exec.LookPath("nginx")
	if err != nil {
		if _, statErr := os.Stat("/usr/sbin/nginx"); statErr == nil {
			path = "/usr/sbin/nginx"
		} else {
			missing(t, "no nginx (apt-get install nginx-light): %v", err)
		}
	}
	sample, err := os.ReadFile(filepath.Join("..", "deploy", "nginx.conf"))
	if err != nil {
		t.Fatalf("reading the sample configuration: %v", err)
	}
	addr := freeAddr(t)
	site, err := siteConfig(string(sample), addr, instances)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, sub := range []string{"tmp", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n" // workers must reach the temp directories under the test's TempDir
	}
	main := fmt.Sprintf(`%sworker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/logs/error.log info;
events { worker_connections 1024; }
http {
    access_log %[2]s/logs/access.log;
    # As many sites do: compress text, event streams included, unless a
    # location says otherwise (the sample's events location must).
    gzip on;
    gzip_min_length 0;
    gzip_types text/plain text/event-stream application/json;
    client_body_temp_path %[2]s/tmp/body;
    proxy_temp_path %[2]s/tmp/proxy;
    fastcgi_temp_path %[2]s/tmp/fastcgi;
    uwsgi_temp_path %[2]s/tmp/uwsgi;
    scgi_temp_path %[2]s/tmp/scgi;
    include %[2]s/papo.conf;
}
`, user, dir)
	if err := os.WriteFile(filepath.Join(dir, "papo.conf"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	cmd := exec.Command(path, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "logs", "error.log"), "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // graceful: let open streams go
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			errLog, _ := os.ReadFile(filepath.Join(dir, "logs", "error.log"))
			saveArtifact(t, "nginx-error.log", append(out.Bytes(), errLog...))
			saveArtifact(t, "nginx-papo.conf", []byte(site))
		}
	})
	waitFor(t, "nginx to listen on "+addr, func() bool {
		select {
		case <-done:
			errLog, _ := os.ReadFile(filepath.Join(dir, "logs", "error.log"))
			t.Fatalf("nginx exited:\n%s\n%s", out.String(), errLog)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "http://" + addr
}

var (
	upstreamServer = regexp.MustCompile(`(?m)^(\s*)server 127\.0\.0\.1:\d+( [^;]*)?;\n`)
	listenLine     = regexp.MustCompile(`(?m)^(\s*)listen 80;`)
)

// siteConfig points the sample at the test's instances and address: the
// first upstream server line becomes one line per instance, the others go.
func siteConfig(sample, addr string, instances []*Server) (string, error) {
	first := upstreamServer.FindStringSubmatch(sample)
	if first == nil || listenLine.FindStringIndex(sample) == nil {
		return "", errors.New("deploy/nginx.conf: no upstream server lines or no 'listen 80;' to point at the test's instances")
	}
	var servers strings.Builder
	for _, s := range instances {
		fmt.Fprintf(&servers, "%sserver %s%s;\n", first[1], s.Addr, first[2])
	}
	replaced := false
	out := upstreamServer.ReplaceAllStringFunc(sample, func(string) string {
		if replaced {
			return ""
		}
		replaced = true
		return servers.String()
	})
	return listenLine.ReplaceAllString(out, "${1}listen "+addr+";"), nil
}

// ---------------------------------------------------------------------------
// Cluster helpers

// startCluster starts n instances that share db and Redis.
func startCluster(t testing.TB, n int, db, redisURL, prefix string, env ...string) []*Server {
	t.Helper()
	var servers []*Server
	for range n {
		all := append([]string{
			"DATABASE_URL=" + db,
			"REDIS_URL=" + redisURL,
			"PAPO_REDIS_PREFIX=" + prefix,
		}, env...)
		servers = append(servers, StartServer(t, all...))
	}
	return servers
}

// at returns a copy of c that talks to s.
func (c *Client) at(s *Server) *Client {
	cc := *c
	cc.BaseURL = s.URL
	return &cc
}

// waitFor polls cond every 50 ms for waitTimeout.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitForWithin(t, waitTimeout, what, cond)
}

func waitForWithin(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: still not true after %v", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readyz returns the status of the instance's /readyz.
func readyz(s *Server) int {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(s.URL + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// wireMessage is a Message as the contract sends it.
type wireMessage struct {
	ID       int64  `json:"id"`
	Room     string `json:"room"`
	Kind     string `json:"kind"`
	Username string `json:"username"`
	To       string `json:"to"`
	Event    string `json:"event"`
	Message  string `json:"message"`
}

// post sends a message and returns the stored message (zero for a
// command's 200) and the status.
func (c *Client) post(room, text string) (wireMessage, int, error) {
	resp, err := c.HTTP.PostForm(c.BaseURL+"/rooms/"+room+"/messages", url.Values{"message": {text}})
	if err != nil {
		return wireMessage{}, 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return wireMessage{}, resp.StatusCode, nil
	}
	var out struct {
		Message wireMessage `json:"message"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return wireMessage{}, resp.StatusCode, fmt.Errorf("decoding %s: %w", body, err)
	}
	return out.Message, resp.StatusCode, nil
}

// history returns every message of room visible to c's user, oldest first,
// through the paged history API.
func (c *Client) history(t testing.TB, room string) []wireMessage {
	t.Helper()
	var all []wireMessage
	before := int64(0)
	for range 10000 { // bounded: 200 per page
		path := fmt.Sprintf("/rooms/%s/messages?limit=200", room)
		if before > 0 {
			path += fmt.Sprintf("&before=%d", before)
		}
		status, body := c.Get(t, path)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, status, body)
		}
		var page struct {
			Messages []wireMessage `json:"messages"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if len(page.Messages) == 0 {
			break
		}
		all = append(slices.Clone(page.Messages), all...)
		before = page.Messages[0].ID
	}
	return all
}

// users returns the room's online list as the instance c talks to sees it.
func (c *Client) users(t testing.TB, room string) []string {
	t.Helper()
	status, body := c.Get(t, "/rooms/"+room+"/users")
	if status != http.StatusOK {
		t.Fatalf("GET users: %d %s", status, body)
	}
	var out struct {
		Users []string `json:"users"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out.Users
}

func ids(msgs []wireMessage) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

// ---------------------------------------------------------------------------
// A scripted reader of the event stream

// Reader follows a room's event stream over plain HTTP as the contract
// says a client should: it parses SSE, keeps the last id, and when the
// stream ends reconnects with Last-Event-ID, to the next instance in its
// list when its own does not answer.
type Reader struct {
	Name string
	room string
	http *http.Client
	urls []string
	// follow: reconnect when the stream ends. A reader that does not is a
	// tab that dies with its instance.
	follow bool

	mu       sync.Mutex
	ids      []int64
	recvAt   map[int64]time.Time
	messages map[int64]wireMessage
	lastID   string
	readies  int
	pings    int
	connects int
	current  string // the instance URL of the open stream
	problems []string
	users    []string
	typists  []string
	replies  []string
	changed  chan struct{} // closed and replaced on every event
	cancel   context.CancelFunc
	done     chan struct{}
}

// ReaderOptions tune a reader.
type ReaderOptions struct {
	// FromStart: the first connect asks for everything (last_event_id=0),
	// so what the reader receives can be compared with the whole history.
	FromStart bool
	// NoFollow: do not reconnect.
	NoFollow bool
}

// Stream starts a reader for c's user on room, connected to the
// instances in order (the first is its home).
func (c *Client) Stream(t testing.TB, room string, urls []string, opts ReaderOptions) *Reader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Reader{
		Name:     c.Username,
		room:     room,
		http:     &http.Client{Jar: c.HTTP.Jar}, // no timeout: a stream lasts
		urls:     urls,
		follow:   !opts.NoFollow,
		recvAt:   map[int64]time.Time{},
		messages: map[int64]wireMessage{},
		changed:  make(chan struct{}),
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	if opts.FromStart {
		r.lastID = "0"
	}
	go r.run(ctx)
	t.Cleanup(r.Close)
	return r
}

// Close ends the stream and waits for the reader to stop.
func (r *Reader) Close() {
	r.cancel()
	<-r.done
}

func (r *Reader) run(ctx context.Context) {
	defer close(r.done)
	next := 0
	for attempt := 0; attempt < 1000 && ctx.Err() == nil; attempt++ {
		target := r.urls[next%len(r.urls)]
		// A stream that fails or ends is retried, as EventSource would.
		established, _ := r.stream(ctx, target)
		if ctx.Err() != nil || !r.follow {
			return
		}
		if !established {
			next++ // that instance does not answer: try the next one
		}
		// The contract's retry is 2 s; a script may come back sooner.
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stream runs one connection; established tells whether it got a 200.
func (r *Reader) stream(ctx context.Context, base string) (established bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/rooms/"+r.room+"/events", nil)
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	last := r.lastID
	r.mu.Unlock()
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := r.http.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return false, fmt.Errorf("%s: %d %s", base, resp.StatusCode, body)
	}
	r.mu.Lock()
	r.connects++
	r.current = base
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.current = ""
		r.mu.Unlock()
	}()
	return true, r.parse(bufio.NewReader(resp.Body))
}

// parse reads SSE events until the stream ends.
func (r *Reader) parse(br *bufio.Reader) error {
	var id, event, data string
	hasID := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		switch {
		case line == "":
			if event != "" || data != "" {
				r.dispatch(id, hasID, event, data)
			}
			id, event, data, hasID = "", "", "", false
		case strings.HasPrefix(line, ":"):
			r.mu.Lock()
			r.pings++
			r.mu.Unlock()
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				id, hasID = value, true
			case "event":
				event = value
			case "data":
				if data != "" {
					data += "\n"
				}
				data += value
			}
		}
	}
}

func (r *Reader) dispatch(id string, hasID bool, event, data string) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	defer func() {
		close(r.changed)
		r.changed = make(chan struct{})
	}()
	if hasID {
		r.lastID = id
	}
	switch event {
	case "message":
		var m wireMessage
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			r.problems = append(r.problems, fmt.Sprintf("bad message data %q: %v", data, err))
			return
		}
		if n, err := strconv.ParseInt(id, 10, 64); err != nil || n != m.ID {
			r.problems = append(r.problems, fmt.Sprintf("message %d came with id: %q", m.ID, id))
		}
		if k := len(r.ids); k > 0 && m.ID <= r.ids[k-1] {
			r.problems = append(r.problems, fmt.Sprintf("message %d after %d: repeated or out of order", m.ID, r.ids[k-1]))
			return
		}
		r.ids = append(r.ids, m.ID)
		r.recvAt[m.ID] = now
		r.messages[m.ID] = m
	case "ready":
		r.readies++
	case "users":
		var u struct {
			Users []string `json:"users"`
		}
		if err := json.Unmarshal([]byte(data), &u); err == nil {
			r.users = u.Users
		}
	case "typing":
		var ty struct {
			Username string `json:"username"`
			Typing   bool   `json:"typing"`
		}
		if err := json.Unmarshal([]byte(data), &ty); err == nil && ty.Typing {
			r.typists = append(r.typists, ty.Username)
		}
	case "reply":
		var rep struct {
			Command string `json:"command"`
		}
		if err := json.Unmarshal([]byte(data), &rep); err == nil {
			r.replies = append(r.replies, rep.Command)
		}
	}
}

// Users is the last users event's list.
func (r *Reader) Users() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.users)
}

// Typists lists who was reported typing, in order.
func (r *Reader) Typists() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.typists)
}

// Replies lists the commands whose replies arrived, in order.
func (r *Reader) Replies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.replies)
}

// IDs returns the message ids received, in order.
func (r *Reader) IDs() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids)
}

// Problems returns the protocol violations seen.
func (r *Reader) Problems() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.problems)
}

// Readies counts the ready events (one per connection that went live).
func (r *Reader) Readies() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.readies
}

// Current is the instance the stream is open on, or "".
func (r *Reader) Current() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

// ReceivedAt returns when message id arrived.
func (r *Reader) ReceivedAt(id int64) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.recvAt[id]
	return at, ok
}

// WaitUntil waits for cond on the reader, checked after every event.
func (r *Reader) WaitUntil(t testing.TB, what string, cond func(r *Reader) bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		if cond(r) {
			return
		}
		select {
		case <-changed:
		case <-time.After(200 * time.Millisecond): // for conditions on other state
		case <-deadline.C:
			r.mu.Lock()
			n, connects := len(r.ids), r.connects
			r.mu.Unlock()
			t.Fatalf("%s: waiting for %s: not after %v (%d messages, %d connects, problems %v)",
				r.Name, what, waitTimeout, n, connects, r.Problems())
		}
	}
}

// WaitReady waits for the n-th ready event.
func (r *Reader) WaitReady(t testing.TB, n int) {
	t.Helper()
	r.WaitUntil(t, fmt.Sprintf("ready #%d", n), func(r *Reader) bool { return r.Readies() >= n })
}

// WaitFor waits until the reader has received message id.
func (r *Reader) WaitFor(t testing.TB, id int64) {
	t.Helper()
	r.WaitUntil(t, fmt.Sprintf("message %d", id), func(r *Reader) bool {
		ids := r.IDs()
		return len(ids) > 0 && ids[len(ids)-1] >= id
	})
}

// CheckAgainstHistory waits until the reader has everything its user may
// see, then requires exactly that: every stored visible id once, in order.
func (r *Reader) CheckAgainstHistory(t testing.TB, c *Client) {
	t.Helper()
	want := ids(c.history(t, r.room))
	if len(want) == 0 {
		t.Fatalf("%s: no history to compare with", r.Name)
	}
	r.WaitFor(t, want[len(want)-1])
	got := r.IDs()
	if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
		missing, extra := diff(want, got)
		t.Fatalf("%s received %d messages, history has %d visible: missing %v, not in history %v",
			r.Name, len(got), len(want), head(missing), head(extra))
	}
	if p := r.Problems(); len(p) > 0 {
		t.Fatalf("%s: %d protocol problems, first %q", r.Name, len(p), p[0])
	}
}

func diff(want, got []int64) (missing, extra []int64) {
	in := func(s []int64, v int64) bool { _, ok := slices.BinarySearch(s, v); return ok }
	sortedGot := slices.Sorted(slices.Values(got))
	for _, id := range want {
		if !in(sortedGot, id) {
			missing = append(missing, id)
		}
	}
	for _, id := range got {
		if !in(want, id) && id <= want[len(want)-1] {
			extra = append(extra, id)
		}
	}
	return missing, extra
}

func head(s []int64) []int64 {
	if len(s) > 20 {
		return s[:20]
	}
	return s
}

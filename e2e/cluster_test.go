package e2e

// Several instances as one server: real MariaDB, Redis and nginx, real
// papo processes, and scripted clients that read the event stream the way
// the contract says (see cluster_harness_test.go). Every wait has a
// generous deadline; no assertion is on timing. The figures the tests log
// (latencies, messages per second) are for the README, not assertions.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"papo/e2e/client"
)

// registerAll registers users name0…name(n-1), user i on instance i%len,
// concurrently (bcrypt makes registering a user cost real time).
func registerAll(t *testing.T, servers []*Server, prefix string, n int) []*Client {
	t.Helper()
	clients := make([]*Client, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s := servers[i%len(servers)]
			jar, _ := cookiejar.New(nil)
			c := &Client{BaseURL: s.URL, Username: fmt.Sprintf("%s%02d", prefix, i), HTTP: insecureClient(30 * time.Second)}
			c.HTTP.Jar = jar
			resp, err := c.HTTP.PostForm(s.URL+"/register", url.Values{"username": {c.Username}, "password": {testPassword}})
			if err != nil {
				errs[i] = err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				errs[i] = fmt.Errorf("register %s: %d %s", c.Username, resp.StatusCode, body)
			}
			clients[i] = c
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return clients
}

// urlsFrom lists the instances' URLs starting at home: a reader's
// failover order.
func urlsFrom(servers []*Server, home int) []string {
	var out []string
	for i := range servers {
		out = append(out, servers[(home+i)%len(servers)].URL)
	}
	return out
}

func names(clients []*Client) []string {
	var out []string
	for _, c := range clients {
		out = append(out, c.Username)
	}
	slices.Sort(out)
	return out
}

// samePresence waits until every instance reports want as the room's users.
func samePresence(t *testing.T, c *Client, servers []*Server, room string, want []string) {
	t.Helper()
	var last []string
	waitFor(t, "every instance to report the same presence", func() bool {
		for _, s := range servers {
			last = c.at(s).users(t, room)
			if !slices.Equal(last, want) {
				return false
			}
		}
		return true
	})
}

// posting is a set of writers that post concurrently until stopped.
type posting struct {
	mu     sync.Mutex
	sentAt map[int64]time.Time
	via    map[int64]string // the instance URL each message was posted to
	errors []string
	posted atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup
}

func newPosting() *posting {
	return &posting{sentAt: map[int64]time.Time{}, via: map[int64]string{}, stop: make(chan struct{})}
}

// write starts a writer: c posts up to max messages, the k-th through
// targets[k%len], with every tenth a private message to privateTo (when
// set), until Stop.
func (p *posting) write(c *Client, targets []*Server, max int, pause time.Duration, privateTo string) {
	p.wg.Go(func() {
		for k := 0; k < max; k++ {
			select {
			case <-p.stop:
				return
			default:
			}
			s := targets[k%len(targets)]
			text := fmt.Sprintf("%s says %d", c.Username, k)
			private := privateTo != "" && k%10 == 9
			if private {
				text = fmt.Sprintf("/msg %s psst %d", privateTo, k)
			}
			sent := time.Now()
			m, status, err := c.at(s).post("general", text)
			switch {
			case err != nil:
				p.fail(fmt.Sprintf("%s posting through %s: %v", c.Username, s.URL, err))
			case private && status != http.StatusOK, !private && status != http.StatusCreated:
				p.fail(fmt.Sprintf("%s posting %q through %s: status %d", c.Username, text, s.URL, status))
			case !private:
				p.mu.Lock()
				p.sentAt[m.ID] = sent
				p.via[m.ID] = s.URL
				p.mu.Unlock()
			}
			p.posted.Add(1)
			if pause > 0 {
				select {
				case <-p.stop:
					return
				case <-time.After(pause):
				}
			}
		}
	})
}

func (p *posting) fail(msg string) {
	p.mu.Lock()
	p.errors = append(p.errors, msg)
	p.mu.Unlock()
}

// Stop ends the writers and waits for them.
func (p *posting) Stop() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
}

// Wait waits for the writers to finish by themselves.
func (p *posting) Wait() { p.wg.Wait() }

func (p *posting) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errors) > 0 {
		t.Fatalf("%d posts failed; first: %s", len(p.errors), p.errors[0])
	}
}

// waitPosted waits until n more messages have been posted.
func (p *posting) waitPosted(t *testing.T, n int64) {
	t.Helper()
	target := p.posted.Load() + n
	waitFor(t, fmt.Sprintf("%d more posts", n), func() bool { return p.posted.Load() >= target })
}

// latencies reports how long posted messages took to reach readers, for
// readers on the instance they were posted to and for readers elsewhere.
func (p *posting) latencies(t *testing.T, readers []*Reader, home func(i int) string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var same, cross []time.Duration
	for i, r := range readers {
		for id, sent := range p.sentAt {
			at, ok := r.ReceivedAt(id)
			if !ok {
				continue
			}
			if p.via[id] == home(i) {
				same = append(same, at.Sub(sent))
			} else {
				cross = append(cross, at.Sub(sent))
			}
		}
	}
	t.Logf("delivery from POST to stream, same instance: %s", percentiles(same))
	t.Logf("delivery from POST to stream, across instances (Redis): %s", percentiles(cross))

	// What the hop through Redis adds: for each message, how much later a
	// reader elsewhere had it than the first reader on its own instance.
	var hop []time.Duration
	for id := range p.sentAt {
		var first time.Time
		for i, r := range readers {
			if at, ok := r.ReceivedAt(id); ok && p.via[id] == home(i) && (first.IsZero() || at.Before(first)) {
				first = at
			}
		}
		if first.IsZero() {
			continue
		}
		for i, r := range readers {
			if at, ok := r.ReceivedAt(id); ok && p.via[id] != home(i) {
				hop = append(hop, at.Sub(first))
			}
		}
	}
	t.Logf("added by the hop to another instance (vs the first reader on the posting one): %s", percentiles(hop))
}

func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	at := func(q float64) time.Duration {
		return ds[min(len(ds)-1, int(q*float64(len(ds))))].Round(100 * time.Microsecond)
	}
	return fmt.Sprintf("n=%d p50=%v p90=%v p99=%v max=%v", len(ds), at(0.5), at(0.9), at(0.99), ds[len(ds)-1].Round(100*time.Microsecond))
}

// hasSystem tells whether the history c sees holds user's join or leave.
func hasSystem(t *testing.T, c *Client, user, event string) int {
	n := 0
	for _, m := range c.history(t, "general") {
		if m.Kind == "system" && m.Event == event && m.Username == user {
			n++
		}
	}
	return n
}

// Three instances share MariaDB and Redis; thirty clients are spread over
// them. While six of them post through all three instances at once, every
// client receives every message it may see exactly once and in id order,
// which is exactly the stored history it may see; and every instance
// reports the same presence.
func TestClusterThreeInstancesDeliverEveryMessageOnce(t *testing.T) {
	db := newMariaDB(t)
	redisURL, prefix := sharedRedis(t)
	servers := startCluster(t, 3, db, redisURL, prefix)

	const n = 30
	clients := registerAll(t, servers, "user", n)
	readers := make([]*Reader, n)
	for i, c := range clients {
		readers[i] = c.Stream(t, "general", urlsFrom(servers, i%3), ReaderOptions{FromStart: true})
	}
	for _, r := range readers {
		r.WaitReady(t, 1)
	}
	samePresence(t, clients[0], servers, "general", names(clients))
	// The users events of joins decided anywhere reached every reader.
	for _, r := range readers {
		r.WaitUntil(t, "a users event with everyone", func(r *Reader) bool { return slices.Equal(r.Users(), names(clients)) })
	}

	// Typing and replies cross instances too: user00 types on instance 0,
	// and user01, whose stream is on instance 1, asks /who through
	// instance 2.
	if status, body := clients[0].at(servers[0]).Post(t, "/rooms/general/typing", url.Values{"typing": {"true"}}); status != http.StatusNoContent {
		t.Fatalf("typing: %d %s", status, body)
	}
	for _, r := range readers[1:3] {
		r.WaitUntil(t, "user00 typing", func(r *Reader) bool { return slices.Contains(r.Typists(), clients[0].Username) })
	}
	if status, body := clients[1].at(servers[2]).Post(t, "/rooms/general/messages", url.Values{"message": {"/who"}}); status != http.StatusOK {
		t.Fatalf("/who: %d %s", status, body)
	}
	readers[1].WaitUntil(t, "the reply to /who", func(r *Reader) bool { return slices.Contains(r.Replies(), "who") })

	const writers, each = 6, 50
	p := newPosting()
	start := time.Now()
	for w := range writers {
		// Every writer posts through all three instances in turn, and
		// sends a private message to a reader on another instance now
		// and then.
		p.write(clients[w], []*Server{servers[w%3], servers[(w+1)%3], servers[(w+2)%3]}, each, 0, clients[w+10].Username)
	}
	p.Wait()
	elapsed := time.Since(start)
	p.check(t)

	for i, r := range readers {
		r.CheckAgainstHistory(t, clients[i])
	}
	allDone := time.Since(start)
	samePresence(t, clients[0], servers, "general", names(clients))
	reconnects := 0
	for _, r := range readers {
		reconnects += r.Readies() - 1 // a reader too slow for its queue is cut off, and resumes
	}

	total := writers * each
	t.Logf("%d messages (%d private) posted by %d writers through 3 instances in %v: %.0f messages/s stored; "+
		"all %d readers had everything %v after the first post (%d reconnects)",
		total, total/10, writers, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), n, allDone.Round(time.Millisecond), reconnects)
	p.latencies(t, readers, func(i int) string { return servers[i%3].URL })
}

// kill -9 of one instance: its clients reconnect to the others and resume
// with nothing lost or repeated; its users leave within the bound, unless
// they are still connected elsewhere.
func TestClusterSurvivesKill9OfAnInstance(t *testing.T) {
	db := newMariaDB(t)
	redisURL, prefix := sharedRedis(t)
	servers := startCluster(t, 3, db, redisURL, prefix)
	a, b, c := servers[0], servers[1], servers[2]

	clients := registerAll(t, servers, "kill", 12)
	followers := clients[:9] // three per instance, failing over to the others
	ghost := clients[9]      // on c alone, and gone with it: a tab that dies
	twin := clients[10]      // on c, and on a as well
	writer := clients[11]    // posts, streams nowhere

	var readers []*Reader
	for i, cl := range followers {
		readers = append(readers, cl.Stream(t, "general", urlsFrom(servers, i%3), ReaderOptions{FromStart: true}))
	}
	ghostReader := ghost.Stream(t, "general", []string{c.URL}, ReaderOptions{NoFollow: true})
	twinOnC := twin.Stream(t, "general", []string{c.URL}, ReaderOptions{NoFollow: true})
	twinOnA := twin.Stream(t, "general", []string{a.URL}, ReaderOptions{FromStart: true})
	for _, r := range append(readers, ghostReader, twinOnC, twinOnA) {
		r.WaitReady(t, 1)
	}
	samePresence(t, writer, servers, "general", names(clients[:11]))

	p := newPosting()
	p.write(writer, []*Server{a, b}, 100000, 5*time.Millisecond, "")
	p.write(followers[0], []*Server{b, a}, 100000, 5*time.Millisecond, "")
	p.waitPosted(t, 50)

	c.Kill()
	killed := time.Now()
	for i, r := range readers {
		if i%3 == 2 {
			r.WaitUntil(t, "a stream on a surviving instance", func(r *Reader) bool {
				cur := r.Current()
				return r.Readies() >= 2 && cur != "" && cur != c.URL
			})
		}
	}
	p.waitPosted(t, 50)
	p.Stop()
	p.check(t)

	for i, r := range readers {
		r.CheckAgainstHistory(t, followers[i].at(a)) // c is gone
	}
	twinOnA.CheckAgainstHistory(t, twin.at(a))

	waitForWithin(t, 30*time.Second, "the ghost's leave (the bound is 30 s)", func() bool {
		return hasSystem(t, writer.at(a), ghost.Username, "leave") == 1
	})
	t.Logf("the users of the killed instance left %v after kill -9", time.Since(killed).Round(100*time.Millisecond))
	// Everyone but the ghost: the twin is still on a.
	samePresence(t, writer, []*Server{a, b}, "general", names(append(slices.Clone(followers), twin)))
	time.Sleep(time.Second) // room for a wrong leave to show up
	for _, cl := range append(slices.Clone(followers), twin) {
		if n := hasSystem(t, writer.at(a), cl.Username, "leave"); n != 0 {
			t.Errorf("%s left, but is still connected", cl.Username)
		}
	}
	if n := hasSystem(t, writer.at(a), ghost.Username, "leave"); n != 1 {
		t.Errorf("the ghost left %d times", n)
	}
}

// Redis stopped and started mid-run: posts keep answering 201, /readyz is
// 503 while it is down, streams still open, no stored message is lost to
// any reader, and the instances recover without a restart. Redis comes
// back empty (it keeps nothing on disk), and the user who closed their
// tab during the outage is announced leaving, once, to every stream.
func TestClusterSurvivesARedisRestart(t *testing.T) {
	db := newMariaDB(t)
	rds := startPrivateRedis(t)
	servers := startCluster(t, 3, db, rds.URL, "papo:")

	clients := registerAll(t, servers, "outage", 11)
	leaver := clients[10]
	var readers []*Reader
	for i, cl := range clients[:9] {
		readers = append(readers, cl.Stream(t, "general", urlsFrom(servers, i%3), ReaderOptions{FromStart: true}))
	}
	leaverTab := leaver.Stream(t, "general", []string{servers[2].URL}, ReaderOptions{NoFollow: true})
	for _, r := range append(readers, leaverTab) {
		r.WaitReady(t, 1)
	}
	samePresence(t, clients[0], servers, "general", names(append(slices.Clone(clients[:9]), leaver)))

	p := newPosting()
	for w := range 3 {
		p.write(clients[w], []*Server{servers[w]}, 100000, 10*time.Millisecond, "")
	}
	p.waitPosted(t, 30)
	for _, s := range servers {
		if up, ok := s.Metric(t, "papo_redis_up"); !ok || up != 1 {
			t.Fatalf("%s: papo_redis_up %v (reported: %v) before the outage", s.URL, up, ok)
		}
	}

	rds.Stop()
	down := time.Now()
	for _, s := range servers {
		waitFor(t, s.URL+"/readyz to answer 503", func() bool { return readyz(s) == http.StatusServiceUnavailable })
		s.WaitMetric(t, "papo_redis_up", 0)
	}
	t.Logf("/readyz answered 503 everywhere %v after Redis stopped", time.Since(down).Round(time.Millisecond))
	// A stream still opens while Redis is down.
	late := clients[9].Stream(t, "general", []string{servers[1].URL}, ReaderOptions{FromStart: true})
	late.WaitReady(t, 1)
	leaverTab.Close()
	p.waitPosted(t, 150) // long enough for every retry loop to go round a few times

	rds.Start()
	up := time.Now()
	for _, s := range servers {
		waitFor(t, s.URL+"/readyz to answer 200", func() bool { return readyz(s) == http.StatusOK })
		s.WaitMetric(t, "papo_redis_up", 1)
	}
	t.Logf("/readyz answered 200 everywhere %v after Redis started", time.Since(up).Round(time.Millisecond))
	p.waitPosted(t, 60)
	p.Stop()
	p.check(t)

	for i, r := range readers {
		r.CheckAgainstHistory(t, clients[i])
	}
	late.CheckAgainstHistory(t, clients[9])
	samePresence(t, clients[0], servers, "general", names(clients[:10]))
	waitForWithin(t, 30*time.Second, "the leave of the tab closed during the outage", func() bool {
		return hasSystem(t, clients[0], leaver.Username, "leave") == 1
	})
	for _, r := range append(readers, late) {
		r.WaitUntil(t, "a users event without the leaver", func(r *Reader) bool {
			return len(r.Users()) > 0 && !slices.Contains(r.Users(), leaver.Username)
		})
	}
	time.Sleep(time.Second) // room for a wrong announcement to show up
	if n := hasSystem(t, clients[0], leaver.Username, "leave"); n != 1 {
		t.Errorf("the leaver left %d times", n)
	}
	for _, cl := range clients[:10] {
		if n := hasSystem(t, clients[0], cl.Username, "leave"); n != 0 {
			t.Errorf("%s left, but is still connected", cl.Username)
		}
		if n := hasSystem(t, clients[0], cl.Username, "join"); n != 1 {
			t.Errorf("%s joined %d times", cl.Username, n)
		}
	}
	// One outage, one line each for its start and its end, per component,
	// not one per message. (Two are let through: on a loaded machine a
	// slow answer from the restarted Redis may look like a second blip.)
	for _, s := range servers {
		log := s.Log()
		for _, line := range []string{
			"redis broker: Redis unavailable", "redis broker: subscription restored",
			"presence: Redis unavailable", "presence: Redis is back",
			"writer: publishing to other instances failed",
		} {
			if n := strings.Count(log, line); n < 1 || n > 2 {
				t.Errorf("%s logged %q %d times, want once", s.URL, line, n)
			}
		}
	}
}

// Through nginx with deploy/nginx.conf: the stream is not buffered (ready
// arrives before the first heartbeat, uncompressed even where gzip is on),
// a WebSocket upgrade is refused, and a whole conversation works.
func TestClusterBehindNginx(t *testing.T) {
	db := newMariaDB(t)
	redisURL, prefix := sharedRedis(t)
	servers := startCluster(t, 2, db, redisURL, prefix, "PAPO_HEARTBEAT=30s", "PAPO_TRUSTED_PROXIES=127.0.0.1")
	front := &Server{URL: startNginx(t, servers...)}

	ana := front.Register(t, "ana")
	bia := front.Register(t, "bia")

	t.Run("first event before the heartbeat", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, front.URL+"/rooms/general/events", nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Accept-Encoding", "gzip") // set by hand: the body stays as nginx sent it
		client := &http.Client{Jar: ana.HTTP.Jar, Timeout: 20 * time.Second}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("no answer through nginx: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if enc := resp.Header.Get("Content-Encoding"); enc != "" {
			t.Fatalf("the stream is compressed (%s): compression buffers it", enc)
		}
		// The heartbeat is 30 s and the client gives up after 20: ready
		// must come through on its own, not pushed out by the next ping.
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("ready did not come through before the client gave up (the proxy buffers the stream?): %v", err)
			}
			if strings.HasPrefix(line, ":") {
				t.Fatalf("a heartbeat came before ready: the proxy held the stream back")
			}
			if strings.TrimSpace(line) == "event: ready" {
				return
			}
		}
	})

	t.Run("a WebSocket upgrade is refused", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, front.URL+"/rooms/general/events", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		client := &http.Client{Jar: ana.HTTP.Jar, Timeout: 10 * time.Second}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("upgrade answered %d %s, want 403", resp.StatusCode, body)
		}
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != "upgrade_refused" {
			t.Fatalf("upgrade refusal body %s: want the contract's error form", body)
		}
	})

	t.Run("a conversation", func(t *testing.T) {
		proxy := []string{front.URL}
		ar := ana.Stream(t, "general", proxy, ReaderOptions{FromStart: true})
		br := bia.Stream(t, "general", proxy, ReaderOptions{FromStart: true})
		ar.WaitReady(t, 1)
		br.WaitReady(t, 1)
		waitFor(t, "both online through nginx", func() bool {
			return slices.Equal(ana.users(t, "general"), []string{"ana", "bia"})
		})

		hello, status, err := ana.post("general", "hello bia, through nginx")
		if err != nil || status != http.StatusCreated {
			t.Fatalf("post: %d %v", status, err)
		}
		br.WaitFor(t, hello.ID)
		ar.WaitFor(t, hello.ID)

		status, body := bia.Post(t, "/rooms/general/messages", url.Values{"message": {"/msg ana psst"}})
		if status != http.StatusOK || !strings.Contains(string(body), `"ok":true`) {
			t.Fatalf("/msg: %d %s", status, body)
		}
		ar.WaitUntil(t, "bia's private message", func(r *Reader) bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, m := range r.messages {
				if m.Kind == "private" && m.Username == "bia" && m.To == "ana" && m.Message == "psst" {
					return true
				}
			}
			return false
		})
		status, body = ana.Post(t, "/rooms/general/messages", url.Values{"message": {"/who"}})
		if status != http.StatusOK || !strings.Contains(string(body), "ana, bia") {
			t.Fatalf("/who: %d %s", status, body)
		}
		ar.CheckAgainstHistory(t, ana)
		br.CheckAgainstHistory(t, bia)

		// A reconnect through nginx, maybe to the other instance, resumes.
		ar.Close()
		again := ana.Stream(t, "general", proxy, ReaderOptions{FromStart: true})
		again.WaitReady(t, 1)
		again.CheckAgainstHistory(t, ana)
	})
}

// A load run for the README's figures, not for CI: PAPO_E2E_MEASURE=1.
// Many writers post at once through three instances while every reader
// must still end up with exactly the stored history.
func TestClusterThroughput(t *testing.T) {
	if os.Getenv("PAPO_E2E_MEASURE") != "1" {
		t.Skip("a measurement; set PAPO_E2E_MEASURE=1 to run it")
	}
	db := newMariaDB(t)
	redisURL, prefix := sharedRedis(t)
	servers := startCluster(t, 3, db, redisURL, prefix)
	const n, writers, each = 60, 30, 100
	clients := registerAll(t, servers, "load", n)
	readers := make([]*Reader, n)
	for i, c := range clients {
		readers[i] = c.Stream(t, "general", urlsFrom(servers, i%3), ReaderOptions{FromStart: true})
	}
	for _, r := range readers {
		r.WaitReady(t, 1)
	}
	p := newPosting()
	start := time.Now()
	for w := range writers {
		p.write(clients[w], []*Server{servers[w%3], servers[(w+1)%3], servers[(w+2)%3]}, each, 0, "")
	}
	p.Wait()
	elapsed := time.Since(start)
	p.check(t)
	for i, r := range readers {
		r.CheckAgainstHistory(t, clients[i])
	}
	var lastAt time.Time
	for _, r := range readers {
		ids := r.IDs()
		if at, _ := r.ReceivedAt(ids[len(ids)-1]); at.After(lastAt) {
			lastAt = at
		}
	}
	total := writers * each
	t.Logf("%d writers posted %d messages through 3 instances in %v: %.0f messages/s stored; "+
		"%d readers received %d events in all, the last %v after the first post (%.0f events/s delivered)",
		writers, total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(),
		n, total*n, lastAt.Sub(start).Round(time.Millisecond), float64(total*n)/lastAt.Sub(start).Seconds())
	p.latencies(t, readers, func(i int) string { return servers[i%3].URL })
}

// TestClusterStreamCapsAreShared: with Redis, a user's stream cap counts
// the streams on every instance, and a closed stream frees its slot for
// any instance.
func TestClusterStreamCapsAreShared(t *testing.T) {
	db := newMariaDB(t)
	redisURL, prefix := sharedRedis(t)
	servers := startCluster(t, 2, db, redisURL, prefix, "PAPO_LIMITS=on", "PAPO_STREAMS_PER_USER=2")
	a, b := servers[0], servers[1]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)

	ana := client.New(a.URL, nil)
	if _, err := ana.Register(ctx, "capped", testPassword); err != nil {
		t.Fatal(err)
	}
	open := func(s *Server) (*client.Stream, error) {
		ana.Base = s.URL // the session cookie is good on every instance
		st, err := ana.Open(ctx, "general", "")
		if err == nil {
			t.Cleanup(func() { _ = st.Close() })
			_, err = st.Backlog()
		}
		return st, err
	}
	if _, err := open(a); err != nil {
		t.Fatal(err)
	}
	onB, err := open(b)
	if err != nil {
		t.Fatal(err)
	}
	_, err = open(a)
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusTooManyRequests || apiErr.Code != "too_many_streams" || apiErr.RetryAfter == "" {
		t.Fatalf("a third stream, on a, with one on each instance: %v; want 429 too_many_streams with Retry-After", err)
	}
	_ = onB.Close()
	waitFor(t, "the slot freed on b to be taken on a", func() bool {
		_, err := open(a)
		return err == nil
	})
}

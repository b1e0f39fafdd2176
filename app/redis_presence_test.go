package app

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"
)

const testGrace = 300 * time.Millisecond

// changeLog records the presence changes of every instance of a test, in
// the order each instance announced them.
type changeLog struct {
	mu      sync.Mutex
	changes []instanceChange
}

type instanceChange struct {
	instance string
	PresenceChange
}

func (l *changeLog) notifier(instance string) func(PresenceChange) {
	return func(c PresenceChange) {
		l.mu.Lock()
		l.changes = append(l.changes, instanceChange{instance, c})
		l.mu.Unlock()
	}
}

// of returns the changes about user name, in announcement order.
func (l *changeLog) of(name string) []instanceChange {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []instanceChange
	for _, c := range l.changes {
		if c.User.Name == name {
			out = append(out, c)
		}
	}
	return out
}

func (l *changeLog) count(name string, joined bool) int {
	n := 0
	for _, c := range l.of(name) {
		if c.Joined == joined {
			n++
		}
	}
	return n
}

type presenceOpts struct {
	url       string
	prefix    string
	grace     time.Duration // 0: testGrace
	heartbeat time.Duration
	ttl       time.Duration
	log       *slog.Logger
}

func startPresence(t *testing.T, o presenceOpts, name string, changes *changeLog) *RedisPresence {
	t.Helper()
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	p, err := NewRedisPresence(context.Background(), RedisPresenceOptions{
		URL: o.url, Prefix: o.prefix, Origin: name + "-" + newOrigin(), Grace: cmp.Or(o.grace, testGrace),
		Heartbeat: o.heartbeat, TTL: o.ttl,
	}, changes.notifier(name), o.log)
	if err != nil {
		t.Fatalf("presence %s: %v", name, err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func online(t *testing.T, p *RedisPresence, room string) []string {
	t.Helper()
	names, err := p.Online(context.Background(), room)
	if err != nil {
		t.Fatalf("online: %v", err)
	}
	return names
}

func equalNames(a, b []string) bool { return slices.Equal(a, b) }

// A user with streams on two instances joins once, stays while either
// stream is open, and leaves once when the last one has been closed for
// the grace.
func TestRedisPresenceJoinsOnceAcrossInstances(t *testing.T) {
	url := requireRedis(t)
	o := presenceOpts{url: url, prefix: testPrefix(t, url)}
	var changes changeLog
	a := startPresence(t, o, "a", &changes)
	b := startPresence(t, o, "b", &changes)
	ctx := context.Background()
	ana := UserRef{ID: 1, Name: "ana"}
	bia := UserRef{ID: 2, Name: "bia"}

	must(t, a.Connect(ctx, "general", ana))
	must(t, b.Connect(ctx, "general", ana))
	must(t, b.Connect(ctx, "general", bia))
	if got := changes.of("ana"); len(got) != 1 || !got[0].Joined || got[0].instance != "a" {
		t.Fatalf("ana's changes: %+v, want one join announced by a", got)
	}
	for _, p := range []*RedisPresence{a, b} {
		if got := online(t, p, "general"); !equalNames(got, []string{"ana", "bia"}) {
			t.Fatalf("online: %v", got)
		}
	}

	a.Disconnect(ctx, "general", ana)
	time.Sleep(3 * testGrace) // she is still connected on b: no leave may come
	if n := changes.count("ana", false); n != 0 {
		t.Fatalf("ana left while connected on b")
	}
	b.Disconnect(ctx, "general", ana)
	eventually(t, 10*time.Second, "ana leaves", func() bool { return changes.count("ana", false) == 1 })
	time.Sleep(3 * testGrace)
	if got := changes.of("ana"); len(got) != 2 {
		t.Fatalf("ana's changes: %+v, want a join and one leave", got)
	}
	for _, p := range []*RedisPresence{a, b} {
		if got := online(t, p, "general"); !equalNames(got, []string{"bia"}) {
			t.Fatalf("online after ana left: %v", got)
		}
	}
	rooms, err := a.Rooms(ctx)
	must(t, err)
	if len(rooms) != 1 || rooms[0] != (RoomCount{Room: "general", Users: 1}) {
		t.Fatalf("rooms: %+v", rooms)
	}
}

// A reload that reconnects within the grace, on another instance, is
// neither a leave nor a join.
func TestRedisPresenceReloadInsideGrace(t *testing.T) {
	url := requireRedis(t)
	o := presenceOpts{url: url, prefix: testPrefix(t, url)}
	var changes changeLog
	a := startPresence(t, o, "a", &changes)
	b := startPresence(t, o, "b", &changes)
	ctx := context.Background()
	ana := UserRef{ID: 1, Name: "ana"}

	must(t, a.Connect(ctx, "general", ana))
	a.Disconnect(ctx, "general", ana)
	must(t, b.Connect(ctx, "general", ana))
	time.Sleep(3 * testGrace)
	if got := changes.of("ana"); len(got) != 1 || !got[0].Joined {
		t.Fatalf("ana's changes: %+v, want the first join alone", got)
	}
}

// Many streams opening and closing at once on three instances: each join
// and each leave is decided, and announced, exactly once.
func TestRedisPresenceConcurrentDecisionsAreExactlyOnce(t *testing.T) {
	url := requireRedis(t)
	o := presenceOpts{url: url, prefix: testPrefix(t, url)}
	var changes changeLog
	insts := []*RedisPresence{
		startPresence(t, o, "a", &changes),
		startPresence(t, o, "b", &changes),
		startPresence(t, o, "c", &changes),
	}
	ctx := context.Background()
	const users = 40
	type stream struct {
		p    *RedisPresence
		room string
		user UserRef
	}
	var streams []stream
	for i := range users {
		u := UserRef{ID: int64(i + 1), Name: fmt.Sprintf("user%02d", i)}
		for j := range 1 + rand.IntN(5) {
			room := []string{"general", "random"}[j%2]
			streams = append(streams, stream{insts[rand.IntN(len(insts))], room, u})
		}
	}
	run := func(f func(s stream)) {
		var wg sync.WaitGroup
		for _, s := range streams {
			wg.Go(func() { f(s) })
		}
		wg.Wait()
	}

	run(func(s stream) { must(t, s.p.Connect(ctx, s.room, s.user)) })
	wantRooms := map[string][]string{}
	for _, s := range streams {
		if !slices.Contains(wantRooms[s.room], s.user.Name) {
			wantRooms[s.room] = append(wantRooms[s.room], s.user.Name)
		}
	}
	for room, names := range wantRooms {
		slices.Sort(names)
		for _, p := range insts {
			if got := online(t, p, room); !equalNames(got, names) {
				t.Fatalf("online in %s: %v, want %v", room, got, names)
			}
		}
	}
	joins := func(room string) int {
		n := 0
		for i := range users {
			for _, c := range changes.of(fmt.Sprintf("user%02d", i)) {
				if c.Joined && c.Room == room {
					n++
				}
			}
		}
		return n
	}
	for room, names := range wantRooms {
		if got := joins(room); got != len(names) {
			t.Fatalf("%d joins in %s for %d users", got, room, len(names))
		}
	}

	run(func(s stream) { s.p.Disconnect(ctx, s.room, s.user) })
	want := len(wantRooms["general"]) + len(wantRooms["random"])
	leaves := func() int {
		n := 0
		for i := range users {
			n += changes.count(fmt.Sprintf("user%02d", i), false)
		}
		return n
	}
	eventually(t, 15*time.Second, "everyone leaves", func() bool { return leaves() >= want })
	time.Sleep(3 * testGrace)
	if got := leaves(); got != want {
		t.Fatalf("%d leaves, want %d", got, want)
	}
	for i := range users {
		cs := changes.of(fmt.Sprintf("user%02d", i))
		for _, room := range []string{"general", "random"} {
			var seq []bool
			for _, c := range cs {
				if c.Room == room {
					seq = append(seq, c.Joined)
				}
			}
			if len(seq) != 0 && !slices.Equal(seq, []bool{true, false}) {
				t.Fatalf("user%02d in %s: %v, want a join then a leave", i, room, seq)
			}
		}
	}
	// Every decision has a stamp of its own, and a join's is below its
	// leave's: what the database uses to store them in decided order.
	stamps := map[int64]bool{}
	for i := range users {
		last := map[string]int64{}
		for _, c := range changes.of(fmt.Sprintf("user%02d", i)) {
			if c.Stamp <= 0 || stamps[c.Stamp] {
				t.Fatalf("%+v: stamp missing or given twice", c)
			}
			stamps[c.Stamp] = true
			if c.Stamp <= last[c.Room] {
				t.Fatalf("%+v: stamp not above the decision before it (%d)", c, last[c.Room])
			}
			last[c.Room] = c.Stamp
		}
	}
	for _, p := range insts {
		rooms, err := p.Rooms(ctx)
		must(t, err)
		if len(rooms) != 0 {
			t.Fatalf("rooms after everyone left: %+v", rooms)
		}
	}
}

// An instance that dies without a word (kill -9) stops beating; a live
// sibling reaps it, and its users leave within the bound unless they are
// connected elsewhere.
func TestRedisPresenceReapsACrashedInstance(t *testing.T) {
	url := requireRedis(t)
	log, logs := newTestLog(t)
	o := presenceOpts{url: url, prefix: testPrefix(t, url), heartbeat: 200 * time.Millisecond, ttl: 1500 * time.Millisecond, log: log}
	var changes changeLog
	a := startPresence(t, o, "a", &changes)
	b := startPresence(t, o, "b", &changes)
	ctx := context.Background()
	ana := UserRef{ID: 1, Name: "ana"}
	bia := UserRef{ID: 2, Name: "bia"}
	must(t, a.Connect(ctx, "general", ana))
	must(t, a.Connect(ctx, "general", bia))
	must(t, b.Connect(ctx, "general", bia))
	time.Sleep(2 * o.ttl) // b must have been healthy for a TTL before it reaps

	crashed := time.Now()
	a.abandon()
	// The bound for these timings: TTL + heartbeat + grace + a sweep.
	eventually(t, 10*time.Second, "ana leaves", func() bool { return changes.count("ana", false) == 1 })
	t.Logf("ana left %v after the crash (bound %v)", time.Since(crashed).Round(time.Millisecond), o.ttl+o.heartbeat+testGrace+testGrace/4)
	if got := changes.of("ana"); got[len(got)-1].instance != "b" {
		t.Fatalf("the leave was announced by %s", got[len(got)-1].instance)
	}
	time.Sleep(3 * testGrace)
	if n := changes.count("bia", false); n != 0 {
		t.Fatal("bia left, but she is still connected on b")
	}
	if got := online(t, b, "general"); !equalNames(got, []string{"bia"}) {
		t.Fatalf("online: %v", got)
	}
	if logs.count("presence: instances stopped beating") != 1 {
		t.Error("the reaping was not logged once")
	}
}

// While Redis is away, streams still open (counted locally), and when it
// is back the joins and leaves that happened meanwhile are decided.
func TestRedisPresenceDegradesAndCatchesUp(t *testing.T) {
	url := requireRedis(t)
	proxy, proxied := newFlakyProxy(t, url)
	prefix := testPrefix(t, url)
	log, logs := newTestLog(t)
	var changes changeLog
	a := startPresence(t, presenceOpts{url: proxied, prefix: prefix, log: log}, "a", &changes)
	b := startPresence(t, presenceOpts{url: url, prefix: prefix}, "b", &changes)
	ctx := context.Background()
	ana := UserRef{ID: 1, Name: "ana"}
	bia := UserRef{ID: 2, Name: "bia"}
	must(t, a.Connect(ctx, "general", ana))

	proxy.cut()
	start := time.Now()
	must(t, a.Connect(ctx, "general", bia)) // fails over to local counting
	a.Disconnect(ctx, "general", ana)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("presence calls took %v while Redis is away", d)
	}
	if got := online(t, a, "general"); !equalNames(got, []string{"bia"}) {
		t.Fatalf("a's degraded view: %v", got)
	}
	if got := online(t, b, "general"); !equalNames(got, []string{"ana"}) {
		t.Fatalf("b's view while a is cut off: %v", got)
	}

	proxy.restore()
	eventually(t, 15*time.Second, "bia's join is caught up", func() bool { return changes.count("bia", true) == 1 })
	eventually(t, 15*time.Second, "ana's leave is caught up", func() bool { return changes.count("ana", false) == 1 })
	for _, p := range []*RedisPresence{a, b} {
		if got := online(t, p, "general"); !equalNames(got, []string{"bia"}) {
			t.Fatalf("online after the outage: %v", got)
		}
	}
	if got := changes.of("bia"); len(got) != 1 || got[0].instance != "a" {
		t.Fatalf("bia's changes: %+v", got)
	}
	if n := logs.count("presence: Redis unavailable"); n != 1 {
		t.Errorf("the outage was logged %d times, want once", n)
	}
	if n := logs.count("presence: Redis is back"); n != 1 {
		t.Errorf("the recovery was logged %d times, want once", n)
	}
}

// A Redis restarted without its data: every instance writes its record
// again, quietly, since its users never left.
func TestRedisPresenceRebuildsAfterRedisLostItsData(t *testing.T) {
	requireRedis(t) // the shared one says Redis is installed at all
	srv := startRedisServer(t)
	o := presenceOpts{url: srv.url, prefix: "papotest:"}
	var changes changeLog
	a := startPresence(t, o, "a", &changes)
	b := startPresence(t, o, "b", &changes)
	ctx := context.Background()
	ana := UserRef{ID: 1, Name: "ana"}
	bia := UserRef{ID: 2, Name: "bia"}
	must(t, a.Connect(ctx, "general", ana))
	must(t, b.Connect(ctx, "general", bia))

	srv.restart(t)
	eventually(t, 15*time.Second, "both records are back", func() bool {
		return equalNames(online(t, a, "general"), []string{"ana", "bia"}) &&
			equalNames(online(t, b, "general"), []string{"ana", "bia"}) &&
			a.usable() && b.usable()
	})
	time.Sleep(3 * testGrace)
	for _, name := range []string{"ana", "bia"} {
		if got := changes.of(name); len(got) != 1 {
			t.Fatalf("%s's changes: %+v, want the first join alone", name, got)
		}
	}
	// Decisions work as before.
	a.Disconnect(ctx, "general", ana)
	eventually(t, 10*time.Second, "ana leaves", func() bool { return changes.count("ana", false) == 1 })
	// Her leave's stamp is above her join's, given before Redis lost its
	// data: a stamp the database holds as a mark must not stop the
	// decisions that follow it from being stored.
	if got := changes.of("ana"); got[1].Stamp <= got[0].Stamp {
		t.Fatalf("stamps after the loss start over: join %d, leave %d", got[0].Stamp, got[1].Stamp)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// redisServer is a private redis-server without persistence, for tests
// that stop it.
type redisServer struct {
	url  string
	port string
	cmd  *exec.Cmd
	done chan struct{}
}

func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "no redis-server binary to run a private Redis: " + err.Error()
		if os.Getenv("PAPO_TEST_STRICT") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	addr, err := closedAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	s := &redisServer{url: "redis://" + addr + "/0", port: port}
	s.start(t, path)
	t.Cleanup(func() { s.stop() })
	return s
}

func (s *redisServer) start(t *testing.T, path string) {
	t.Helper()
	s.cmd = exec.Command(path, "--port", s.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	s.cmd.Dir = t.TempDir()
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
	eventually(t, 10*time.Second, "redis-server answers", func() bool {
		c, err := newRedisClient(s.url, "papotest:", slog.New(slog.DiscardHandler))
		if err != nil {
			return false
		}
		defer c.Close()
		return c.Ping(context.Background()).Err() == nil
	})
}

func (s *redisServer) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

func (s *redisServer) restart(t *testing.T) {
	t.Helper()
	s.stop()
	s.start(t, s.cmd.Path)
}

// TestRedisPresenceOnlineListsAreStamped: every change to a room's online
// list, decided on any instance, gives the list a higher stamp; a list
// read again unchanged, on any instance, has the same one. That is what
// lets every hub keep the newer of two lists (Hub.newerUsers).
func TestRedisPresenceOnlineListsAreStamped(t *testing.T) {
	url := requireRedis(t)
	o := presenceOpts{url: url, prefix: testPrefix(t, url)}
	var changes changeLog
	a := startPresence(t, o, "a", &changes)
	b := startPresence(t, o, "b", &changes)
	ctx := context.Background()
	ana := UserRef{ID: 1, Name: "ana"}
	bia := UserRef{ID: 2, Name: "bia"}
	read := func(p *RedisPresence, want ...string) int64 {
		t.Helper()
		names, stamp, err := p.OnlineStamped(ctx, "general")
		must(t, err)
		if !slices.Equal(names, want) {
			t.Fatalf("online %v, want %v", names, want)
		}
		return stamp
	}
	s0 := read(a)
	must(t, a.Connect(ctx, "general", ana))
	s1 := read(a, "ana")
	if s1 <= s0 {
		t.Fatalf("ana's join left the stamp at %d (was %d)", s1, s0)
	}
	if s := read(b, "ana"); s != s1 {
		t.Fatalf("the same list read on b has stamp %d, on a %d", s, s1)
	}
	must(t, b.Connect(ctx, "general", bia))
	must(t, a.Connect(ctx, "general", bia)) // a second tab: no change
	s2 := read(b, "ana", "bia")
	if s2 <= s1 {
		t.Fatalf("bia's join left the stamp at %d (was %d)", s2, s1)
	}
	a.Disconnect(ctx, "general", ana)
	eventually(t, 10*time.Second, "ana leaves", func() bool { return changes.count("ana", false) == 1 })
	if s3 := read(b, "bia"); s3 <= s2 {
		t.Fatalf("ana's leave left the stamp at %d (was %d)", s3, s2)
	}
}

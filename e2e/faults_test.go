package e2e

// Faults: the database goes away and comes back; papo is killed with -9.
// Both with real processes: a private MariaDB server of the test's own (so
// stopping it disturbs no other test), and the built papo binary.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"papo/e2e/client"
	"papo/models"
	"papo/models/modelstest"
)

// mariaDB is a private MariaDB server in a temporary directory.
type mariaDB struct {
	t       testing.TB
	dir     string
	port    string
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

// startMariaDB initialises a data directory and starts a server on a free
// port. A machine without MariaDB's binaries skips (or fails when strict).
func startMariaDB(t testing.TB) *mariaDB {
	t.Helper()
	for _, bin := range []string{"mariadb-install-db", "mariadbd"} {
		if _, err := exec.LookPath(bin); err != nil {
			if _, err2 := os.Stat("/usr/sbin/" + bin); err2 != nil {
				skipOrFail(t, bin+" is not installed: the database outage test needs a MariaDB server of its own")
			}
		}
	}
	dir := t.TempDir()
	install := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+filepath.Join(dir, "data"),
		"--user=root", "--skip-test-db", "--auth-root-authentication-method=normal")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	_, port, _ := strings.Cut(freeAddr(t), ":")
	m := &mariaDB{t: t, dir: dir, port: port, logPath: filepath.Join(dir, "mariadb.log")}
	m.start()
	t.Cleanup(m.stop)
	return m
}

func (m *mariaDB) url(db string) string { return "mysql://root@127.0.0.1:" + m.port + "/" + db }

func (m *mariaDB) start() {
	m.t.Helper()
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		m.t.Fatal(err)
	}
	mariadbd := "mariadbd"
	if _, err := exec.LookPath(mariadbd); err != nil {
		mariadbd = "/usr/sbin/mariadbd"
	}
	m.cmd = exec.Command(mariadbd, "--no-defaults", "--datadir="+filepath.Join(m.dir, "data"),
		"--port="+m.port, "--bind-address=127.0.0.1", "--socket="+filepath.Join(m.dir, "sock"),
		"--user=root", "--skip-grant-tables", "--skip-log-bin", "--innodb-buffer-pool-size=32M",
		"--pid-file="+filepath.Join(m.dir, "pid"))
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	m.exited = make(chan struct{})
	go func() { _ = m.cmd.Wait(); logf.Close(); close(m.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		target, _ := models.ParseDatabaseURL(m.url("mysql"))
		s, err := models.Open(ctx, target, nil)
		cancel()
		if err == nil {
			_ = s.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(m.logPath)
			m.t.Fatalf("MariaDB did not start: %v\n%s", err, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (m *mariaDB) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	select {
	case <-m.exited:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(30 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}

func (m *mariaDB) exec(t testing.TB, sql string) {
	t.Helper()
	target, _ := models.ParseDatabaseURL(m.url("mysql"))
	s, err := models.Open(context.Background(), target, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.DB().Exec(sql).Error; err != nil {
		t.Fatal(err)
	}
}

func skipOrFail(t testing.TB, reason string) {
	t.Helper()
	modelstest.SkipOrFail(t, reason)
}

// TestDatabaseOutage: MariaDB stops mid-run. POSTs answer 503 with nothing
// stored, open streams stay up, /readyz says 503; when MariaDB is back,
// everything recovers by itself.
func TestDatabaseOutage(t *testing.T) {
	db := startMariaDB(t)
	db.exec(t, "CREATE DATABASE papo CHARACTER SET utf8mb4")
	srv := StartServer(t, "DATABASE_URL="+db.url("papo"), "PAPO_HEARTBEAT=300ms")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ana, bia := client.New(srv.URL, nil), client.New(srv.URL, nil)
	for _, u := range []struct {
		c    *client.Client
		name string
	}{{ana, "ana"}, {bia, "bia"}} {
		if _, err := u.c.Register(ctx, u.name, "correct horse"); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := bia.Open(ctx, "general", "")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	events := make(chan client.Event, 1000)
	pings := make(chan struct{}, 1000)
	stream.OnComment = func(string) {
		select {
		case pings <- struct{}{}:
		default:
		}
	}
	go func() {
		defer close(events)
		for {
			ev, err := stream.Next()
			if err != nil {
				return
			}
			events <- ev
		}
	}()
	waitText := func(text string) {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("the stream ended while waiting for %q", text)
				}
				if m, _ := client.DecodeMessage(ev); ev.Type == "message" && m.Message == text {
					return
				}
			case <-timeout:
				t.Fatalf("%q never arrived", text)
			}
		}
	}
	if _, err := ana.Post(ctx, "general", "before the outage"); err != nil {
		t.Fatal(err)
	}
	waitText("before the outage")

	db.stop()
	for i := 0; i < 3; i++ {
		_, err := ana.Post(ctx, "general", fmt.Sprintf("during the outage %d", i))
		var apiErr *client.APIError
		if !errors.As(err, &apiErr) || apiErr.Status != 503 {
			t.Fatalf("post during the outage: %v, want 503", err)
		}
	}
	if code := get(t, srv.URL+"/readyz"); code != 503 {
		t.Fatalf("/readyz during the outage: %d", code)
	}
	// The stream is still up: heartbeats keep coming.
	drain(pings)
	select {
	case <-pings:
	case <-time.After(10 * time.Second):
		t.Fatal("no heartbeat on the open stream during the outage")
	}

	db.start()
	deadline := time.Now().Add(90 * time.Second)
	for get(t, srv.URL+"/readyz") != 200 {
		if time.Now().After(deadline) {
			t.Fatal("/readyz never recovered")
		}
		time.Sleep(200 * time.Millisecond)
	}
	var res client.PostResult
	for {
		res, err = ana.Post(ctx, "general", "after the outage")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("posting never recovered: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitText("after the outage")
	// Nothing of the refused posts was stored, and ids have no hole.
	history, err := ana.History(ctx, "general", 0, 200)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range history {
		if strings.HasPrefix(m.Message, "during the outage") {
			t.Fatalf("a refused post was stored: %+v", m)
		}
		if i > 0 && m.ID != history[i-1].ID+1 {
			t.Fatalf("ids jump from %d to %d", history[i-1].ID, m.ID)
		}
	}
	if history[len(history)-1].ID != res.Message.ID {
		t.Fatalf("history ends at %d, want %d", history[len(history)-1].ID, res.Message.ID)
	}
}

// TestDatabaseGoneReadOnly: MariaDB keeps answering but refuses every
// write, as a primary demoted to a read-only replica does. Posts answer
// 503 with nothing stored, and /readyz says 503 and why, though the
// database answers a ping; once it takes writes again, /readyz finds out
// by itself, before any post, and posting works.
func TestDatabaseGoneReadOnly(t *testing.T) {
	db := startMariaDB(t)
	// Privileges on, so that read_only binds papo's account (never root).
	db.exec(t, "FLUSH PRIVILEGES")
	db.exec(t, "CREATE DATABASE papo CHARACTER SET utf8mb4")
	db.exec(t, "CREATE USER 'papo'@'%' IDENTIFIED BY 'papo-secret'")
	db.exec(t, "GRANT ALL ON papo.* TO 'papo'@'%'")
	srv := StartServer(t, "DATABASE_URL=mysql://papo:papo-secret@127.0.0.1:"+db.port+"/papo")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ana := client.New(srv.URL, nil)
	if _, err := ana.Register(ctx, "ana", "correct horse"); err != nil {
		t.Fatal(err)
	}
	if _, err := ana.Post(ctx, "general", "before"); err != nil {
		t.Fatal(err)
	}
	readyz := func() (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	db.exec(t, "SET GLOBAL read_only = 1")
	t.Cleanup(func() { db.exec(t, "SET GLOBAL read_only = 0") })
	_, err := ana.Post(ctx, "general", "refused")
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 503 {
		t.Fatalf("post to a read-only database: %v, want 503", err)
	}
	if code, body := readyz(); code != 503 || !strings.Contains(body, "read-only") {
		t.Fatalf("/readyz with a read-only database: %d %s, want 503 naming read-only", code, body)
	}

	db.exec(t, "SET GLOBAL read_only = 0")
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := readyz()
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz once the database takes writes again: %d %s, want 200", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res, err := ana.Post(ctx, "general", "after")
	if err != nil {
		t.Fatalf("post once the database takes writes again: %v", err)
	}
	history, err := ana.History(ctx, "general", 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for i, m := range history {
		if m.Kind == "user" {
			texts = append(texts, m.Message)
		}
		if i > 0 && m.ID != history[i-1].ID+1 {
			t.Fatalf("ids jump from %d to %d", history[i-1].ID, m.ID)
		}
	}
	if got := strings.Join(texts, ","); got != "before,after" || history[len(history)-1].ID != res.Message.ID {
		t.Fatalf("history: %s ending at id %d, want before,after ending at %d", got, history[len(history)-1].ID, res.Message.ID)
	}
}

// TestKillLosesNoAnsweredMessage: papo is killed with -9 while four users
// post; every message that was answered 201 is there after a restart.
func TestKillLosesNoAnsweredMessage(t *testing.T) {
	for _, d := range modelstest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			srv := StartServer(t, "DATABASE_URL="+modelstest.URL(t, d))
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			var (
				mu       sync.Mutex
				answered = map[int64]string{}
				wg       sync.WaitGroup
			)
			posters := make([]*client.Client, 4)
			for i := range posters {
				posters[i] = client.New(srv.URL, nil)
				if _, err := posters[i].Register(ctx, fmt.Sprintf("poster%d", i), "correct horse"); err != nil {
					t.Fatal(err)
				}
			}
			stop := make(chan struct{})
			for i, c := range posters {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; n < 10000; n++ {
						select {
						case <-stop:
							return
						default:
						}
						text := fmt.Sprintf("p%d n%d", i, n)
						res, err := c.Post(ctx, "general", text)
						if err != nil {
							return // the server is gone
						}
						mu.Lock()
						answered[res.Message.ID] = text
						mu.Unlock()
					}
				}()
			}
			// Kill once a good number of posts have been answered.
			deadline := time.Now().Add(60 * time.Second)
			for {
				mu.Lock()
				n := len(answered)
				mu.Unlock()
				if n >= 200 || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			srv.Kill()
			close(stop)
			wg.Wait()
			srv.Restart()

			reader := client.New(srv.URL, nil)
			if _, err := reader.Login(ctx, "poster0", "correct horse"); err != nil {
				t.Fatal(err)
			}
			history, err := reader.AllHistory(ctx, "general")
			if err != nil {
				t.Fatal(err)
			}
			stored := map[int64]string{}
			for _, m := range history {
				stored[m.ID] = m.Message
			}
			if len(answered) < 50 {
				t.Fatalf("only %d posts answered before the kill", len(answered))
			}
			for id, text := range answered {
				if stored[id] != text {
					t.Fatalf("message %d (%q) was answered 201 but is %q after the restart", id, text, stored[id])
				}
			}
			t.Logf("%d answered, %d stored after kill -9 and restart", len(answered), len(stored))
		})
	}
}

func get(t testing.TB, url string) int {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func drain(ch chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// TestGracefulShutdown: on SIGTERM, open streams end cleanly (a whole
// frame, then EOF), posts in flight finish, and nothing answered 201 is
// lost; the client resumes after the restart from its cursor.
func TestGracefulShutdown(t *testing.T) {
	srv := StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reader, poster := client.New(srv.URL, nil), client.New(srv.URL, nil)
	if _, err := reader.Register(ctx, "reader", "correct horse"); err != nil {
		t.Fatal(err)
	}
	if _, err := poster.Register(ctx, "poster", "correct horse"); err != nil {
		t.Fatal(err)
	}
	stream, err := reader.Open(ctx, "general", "")
	if err != nil {
		t.Fatal(err)
	}
	received := map[int64]bool{}
	streamErr := make(chan error, 1)
	go func() {
		for {
			ev, err := stream.Next()
			if err != nil {
				streamErr <- err
				return
			}
			if ev.Type == "message" {
				m, _ := client.DecodeMessage(ev)
				received[m.ID] = true
			}
		}
	}()
	var answered []int64
	posted := make(chan struct{})
	go func() {
		defer close(posted)
		for i := 0; i < 5000; i++ {
			res, err := poster.Post(ctx, "general", fmt.Sprint("m", i))
			if err != nil {
				return
			}
			answered = append(answered, res.Message.ID)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	srv.Stop()
	<-posted
	select {
	case err := <-streamErr:
		// io.EOF: the server ended the response at a frame boundary.
		if !errors.Is(err, io.EOF) {
			t.Fatalf("the stream ended with %v, not a clean EOF", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not end on SIGTERM")
	}
	if !strings.Contains(srv.Log(), "stopped") {
		t.Fatalf("no clean stop in the log:\n%s", srv.Log())
	}
	cursor := stream.LastID()
	srv.Restart()
	// Resume from the cursor: together with what came before, every
	// answered message arrives exactly once.
	resumed, err := reader.Open(ctx, "general", cursor)
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	replayed, err := resumed.Backlog()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range replayed {
		if received[m.ID] {
			t.Fatalf("message %d repeated after resume", m.ID)
		}
		received[m.ID] = true
	}
	if len(answered) == 0 {
		t.Fatal("nothing was posted before the stop")
	}
	for _, id := range answered {
		if !received[id] {
			t.Fatalf("message %d was answered 201 but never reached the reader", id)
		}
	}
	t.Logf("%d posts answered before SIGTERM; all delivered once across the restart", len(answered))
}

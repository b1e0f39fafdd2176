package models_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"papo/models"
	"papo/models/modelstest"
)

// cutter is a TCP forwarder to MySQL that, once armed, cuts the connection
// that sends a given client packet: it forwards that packet or not, then
// closes both sides without forwarding the server's answer.
type cutter struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	trigger []byte // the packet payload to cut on; nil while disarmed
	forward bool   // forward the triggering packet before cutting
	all     bool   // on the cut, also close every connection and stop accepting
	silent  bool   // on the cut, fall silent instead, the server's side left open
	conns   []net.Conn
	cut     chan struct{}
}

func newCutter(t *testing.T, target string) *cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln, target: target, cut: make(chan struct{})}
	go c.accept()
	t.Cleanup(func() { c.closeAll() })
	return c
}

// arm makes the next client packet whose payload starts with prefix cut
// its connection.
func (c *cutter) arm(prefix string, forward, all bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trigger, c.forward, c.all, c.silent = []byte(prefix), forward, all, false
}

// armSilence makes the next client packet whose payload starts with
// prefix go unforwarded, and its connection silent both ways from then
// on, the server's side left open until the test ends: a partition that
// drops packets, as the server sees it.
func (c *cutter) armSilence(prefix string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trigger, c.forward, c.all, c.silent = []byte(prefix), false, false, true
}

func (c *cutter) accept() {
	for {
		client, err := c.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", c.target)
		if err != nil {
			client.Close()
			continue
		}
		c.mu.Lock()
		c.conns = append(c.conns, client, server)
		c.mu.Unlock()
		l := &link{}
		go l.answers(client, server)
		go c.pump(client, server, l)
	}
}

// link is one proxied connection. Once cut, nothing more of the server's
// reaches the client: cut is set before the triggering packet goes out,
// so its answer cannot slip through before the close.
type link struct {
	mu  sync.Mutex
	cut bool
}

func (l *link) sever() {
	l.mu.Lock()
	l.cut = true
	l.mu.Unlock()
}

// answers copies the server's bytes to the client until the link is cut.
func (l *link) answers(client, server net.Conn) {
	defer client.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			l.mu.Lock()
			cut := l.cut
			if !cut {
				_, err = client.Write(buf[:n])
			}
			l.mu.Unlock()
			if cut {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// pump forwards client packets to the server, one MySQL packet (3-byte
// length, sequence number, payload) at a time.
func (c *cutter) pump(client, server net.Conn, l *link) {
	silenced := false
	defer func() {
		if !silenced {
			server.Close()
		}
	}()
	defer client.Close()
	head := make([]byte, 4)
	for {
		if _, err := io.ReadFull(client, head); err != nil {
			return
		}
		n := int(head[0]) | int(head[1])<<8 | int(head[2])<<16
		payload := make([]byte, n)
		if _, err := io.ReadFull(client, payload); err != nil {
			return
		}
		c.mu.Lock()
		hit := c.trigger != nil && bytes.HasPrefix(payload, c.trigger)
		forward, all, silent := c.forward, c.all, c.silent
		if hit {
			c.trigger = nil
		}
		c.mu.Unlock()
		if hit {
			l.sever()
		}
		if !hit || forward {
			if _, err := server.Write(append(head, payload...)); err != nil {
				return
			}
		}
		if hit && silent {
			silenced = true
			close(c.cut)
			_, _ = io.Copy(io.Discard, client) // until the client gives up
			return
		}
		if hit {
			if all {
				c.closeAll()
			}
			close(c.cut)
			return // the deferred closes cut both sides
		}
	}
}

func (c *cutter) closeAll() {
	c.ln.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
}

// cutStores returns a store on a fresh MySQL database, one on the same
// database through a cutter, and the cutter.
func cutStores(t *testing.T) (direct, proxied *models.Store, c *cutter) {
	t.Helper()
	return cutStoresWith(t, "")
}

// cutStoresWith is cutStores with query added to the proxied store's URL.
func cutStoresWith(t *testing.T, query string) (direct, proxied *models.Store, c *cutter) {
	t.Helper()
	raw := modelstest.URL(t, models.MySQL)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(raw string) *models.Store {
		target, err := models.ParseDatabaseURL(raw)
		if err != nil {
			t.Fatal(err)
		}
		s, err := models.Open(ctx, target, quiet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	direct = open(raw)
	if err := direct.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	c = newCutter(t, u.Host)
	u.Host = c.ln.Addr().String()
	if query != "" && u.RawQuery != "" {
		query = "&" + query
	}
	u.RawQuery += query
	return direct, open(u.String()), c
}

func batchOf(u *models.User, bodies ...string) []*models.Message {
	var msgs []*models.Message
	for _, b := range bodies {
		msgs = append(msgs, &models.Message{Room: "general", Kind: models.KindUser, UserID: u.ID, Username: u.Username, Body: b, CreatedAt: time.Now().UTC()})
	}
	return msgs
}

// storedBodies returns the bodies of every stored message by id, and the
// sender's count.
func storedBodies(t *testing.T, s *models.Store, u *models.User) (map[int64]string, int64) {
	t.Helper()
	ctx := context.Background()
	all, err := s.MessagesAfter(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]string{}
	for _, m := range all {
		got[m.ID] = m.Body
	}
	user, err := s.UserByID(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got, user.MessageCount
}

// The connection is lost after COMMIT reached the server, before its
// answer came back: the batch is stored, so InsertMessages must say so,
// with the ids it gave; a 503 would make the client send it again.
func TestCommitAnswerLostIsStored(t *testing.T) {
	direct, proxied, c := cutStores(t)
	ctx := context.Background()
	u := newUser(t, direct, "ana")
	if err := proxied.InsertMessages(ctx, batchOf(u, "before")); err != nil {
		t.Fatal(err)
	}
	c.arm("\x03COMMIT", true, false)
	msgs := batchOf(u, "one", "two", "three")
	if err := proxied.InsertMessages(ctx, msgs); err != nil {
		t.Fatalf("a batch the server committed was reported as failed: %v", err)
	}
	select {
	case <-c.cut:
	default:
		t.Fatal("the connection was never cut: the test did not test the lost answer")
	}
	got, count := storedBodies(t, direct, u)
	want := map[int64]string{1: "before", 2: "one", 3: "two", 4: "three"}
	if len(got) != len(want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
	for id, body := range want {
		if got[id] != body {
			t.Fatalf("stored %v, want %v", got, want)
		}
	}
	for i, m := range msgs {
		if m.ID != int64(2+i) {
			t.Fatalf("message %d has id %d, want %d", i, m.ID, 2+i)
		}
	}
	if count != 4 {
		t.Fatalf("message_count %d, want 4", count)
	}
	// The store works on: the next batch gets the next id.
	next := batchOf(u, "after")
	if err := proxied.InsertMessages(ctx, next); err != nil || next[0].ID != 5 {
		t.Fatalf("next batch: id %d, %v; want 5", next[0].ID, err)
	}
}

// The connection is lost before COMMIT was sent (on the INSERT): nothing
// is stored, and InsertMessages says it failed.
func TestConnectionLostBeforeCommitStoresNothing(t *testing.T) {
	direct, proxied, c := cutStores(t)
	ctx := context.Background()
	u := newUser(t, direct, "ana")
	c.arm("\x03INSERT INTO messages", false, false)
	msgs := batchOf(u, "one", "two")
	err := proxied.InsertMessages(ctx, msgs)
	if err == nil {
		t.Fatal("a batch whose INSERT never reached the server was reported stored")
	}
	if errors.Is(err, models.ErrOutcomeUnknown) {
		t.Fatalf("a failure before COMMIT was reported as of unknown outcome: %v", err)
	}
	for _, m := range msgs {
		if m.ID != 0 {
			t.Fatalf("a failed message kept id %d", m.ID)
		}
	}
	got, count := storedBodies(t, direct, u)
	if len(got) != 0 || count != 0 {
		t.Fatalf("stored %v with count %d after a failed batch", got, count)
	}
	// Its ids were rolled back with it.
	next := batchOf(u, "after")
	if err := direct.InsertMessages(ctx, next); err != nil || next[0].ID != 1 {
		t.Fatalf("next batch: id %d, %v; want 1", next[0].ID, err)
	}
}

// The answer to COMMIT is lost and the database cannot be reached to check:
// the outcome is unknown, and InsertMessages says so rather than claiming
// nothing was stored.
func TestCommitAnswerLostUncheckableIsUnknown(t *testing.T) {
	direct, proxied, c := cutStores(t)
	ctx := context.Background()
	u := newUser(t, direct, "ana")
	c.arm("\x03COMMIT", true, true)
	err := proxied.InsertMessages(ctx, batchOf(u, "one"))
	if !errors.Is(err, models.ErrOutcomeUnknown) {
		t.Fatalf("InsertMessages = %v, want ErrOutcomeUnknown", err)
	}
	// (It was in fact committed.) The next batch waits on the sequence row
	// until the cut transaction has ended.
	next := batchOf(u, "after")
	if err := direct.InsertMessages(ctx, next); err != nil || next[0].ID != 2 {
		t.Fatalf("next batch: id %d, %v; want 2", next[0].ID, err)
	}
	if got, count := storedBodies(t, direct, u); len(got) != 2 || count != 2 {
		t.Fatalf("stored %v with count %d; the server had the COMMIT", got, count)
	}
}

// An instance cut off in the middle of a commit, by a partition that drops
// packets rather than resets the connection, leaves its transaction open
// on the server, holding the sequence's row lock: no instance can store
// until the server ends that session. papo gives its sessions a wait
// timeout (60 s unless the URL says otherwise; 3 s here), so the others
// store again after it, and nothing of the lost batch is kept.
func TestAPartitionMidCommitEndsAtTheSessionsWaitTimeout(t *testing.T) {
	direct, proxied, c := cutStoresWith(t, "wait_timeout=3")
	ctx := context.Background()
	var session int
	if err := direct.DB().WithContext(ctx).Raw("SELECT @@session.wait_timeout").Scan(&session).Error; err != nil {
		t.Fatal(err)
	}
	if session != 60 {
		t.Fatalf("a session of papo's waits %d s for a silent client, want 60", session)
	}
	u := newUser(t, direct, "ana")
	if err := direct.InsertMessages(ctx, batchOf(u, "before")); err != nil {
		t.Fatal(err)
	}
	// The sequence is advanced (its row locked), then the INSERT is lost.
	c.armSilence("\x03INSERT INTO messages")
	lost := make(chan error, 1)
	go func() { lost <- proxied.InsertMessages(ctx, batchOf(u, "lost")) }()
	select {
	case <-c.cut:
	case err := <-lost:
		t.Fatalf("the batch ended (%v) before its INSERT was lost: the test did not test the partition", err)
	}
	// Waiting on the row lock: within the lock wait (50 s by default) only
	// if the server ended the silent session.
	start := time.Now()
	after := batchOf(u, "after")
	if err := direct.InsertMessages(ctx, after); err != nil {
		t.Fatalf("another instance could not store while a partitioned commit held the sequence: %v (after %v)", err, time.Since(start).Round(time.Millisecond))
	}
	if after[0].ID != 2 {
		t.Fatalf("the next batch got id %d, want 2: the lost batch's ids were not rolled back", after[0].ID)
	}
	if err := <-lost; err == nil {
		t.Fatal("a batch whose INSERT never reached the server was reported stored")
	}
	got, count := storedBodies(t, direct, u)
	if len(got) != 2 || got[1] != "before" || got[2] != "after" || count != 2 {
		t.Fatalf("stored %v with count %d, want before and after", got, count)
	}
	// The cut-off instance stores again once it can reach the server.
	again := batchOf(u, "again")
	if err := proxied.InsertMessages(ctx, again); err != nil || again[0].ID != 3 {
		t.Fatalf("the partitioned store afterwards: id %d, %v; want 3", again[0].ID, err)
	}
}

// A batch with a message whose sender or recipient is no user breaks a
// foreign key: it is refused whole, its ids are taken back, and the store
// goes on (on SQLite the keys are checked at COMMIT, whose failure leaves
// the transaction open until InsertMessages rolls it back).
func TestABatchThatBreaksAForeignKeyIsRefusedWhole(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, s *models.Store) {
		ctx := context.Background()
		ana := newUser(t, s, "ana")
		ghost := int64(999999)
		for _, bad := range []*models.Message{
			{Room: "general", Kind: models.KindUser, UserID: ghost, Username: "ghost", Body: "from no one", CreatedAt: time.Now().UTC()},
			{Room: "general", Kind: models.KindPrivate, UserID: ana.ID, Username: "ana", ToUserID: &ghost, ToUsername: "ghost", Body: "to no one", CreatedAt: time.Now().UTC()},
		} {
			batch := append(batchOf(ana, "before it"), bad)
			batch = append(batch, batchOf(ana, "after it")...)
			if err := s.InsertMessages(ctx, batch); err == nil {
				t.Fatalf("a batch with %q was stored", bad.Body)
			}
			for _, m := range batch {
				if m.ID != 0 {
					t.Fatalf("a refused message kept id %d", m.ID)
				}
			}
		}
		if got, count := storedBodies(t, s, ana); len(got) != 0 || count != 0 {
			t.Fatalf("stored %v with count %d after refused batches", got, count)
		}
		// No connection was left inside a refused transaction: on SQLite
		// it would hold the write lock, and the next batches would wait on
		// it and fail.
		for i := range 20 {
			next := batchOf(ana, "next")
			if err := s.InsertMessages(ctx, next); err != nil || next[0].ID != int64(i+1) {
				t.Fatalf("batch %d after the refused ones: id %d, %v; want %d", i, next[0].ID, err, i+1)
			}
		}
	})
}

package models_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"papo/models"
	"papo/models/modelstest"
)

func newUser(t *testing.T, s *models.Store, name string) *models.User {
	t.Helper()
	u := &models.User{Username: name, PasswordHash: "x", CreatedAt: time.Now().UTC()}
	if err := s.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestParseDatabaseURL(t *testing.T) {
	cases := []struct {
		in      string
		dialect models.Dialect
		wantErr bool
	}{
		{"", models.SQLite, false},
		{"sqlite:/tmp/x.db", models.SQLite, false},
		{"sqlite:", "", true},
		{"mysql://root@127.0.0.1:3306/papo", models.MySQL, false},
		{"mysql://root:p%40ss@db/papo?tls=false", models.MySQL, false},
		{"mysql://root@127.0.0.1:3306/", "", true},
		{"postgres://x/y", "", true},
		{"papo.db", "", true},
	}
	for _, tc := range cases {
		got, err := models.ParseDatabaseURL(tc.in)
		if (err != nil) != tc.wantErr || got.Dialect != tc.dialect {
			t.Errorf("ParseDatabaseURL(%q) = %+v, %v", tc.in, got, err)
		}
	}
	got, _ := models.ParseDatabaseURL("mysql://root:p%40ss@db/papo")
	for _, want := range []string{"root:p@ss@tcp(db:3306)/papo", "parseTime=true", "charset=utf8mb4", "interpolateParams=true"} {
		if !strings.Contains(got.DSN, want) {
			t.Errorf("DSN %q lacks %q", got.DSN, want)
		}
	}
	got, _ = models.ParseDatabaseURL("mysql://root@db/papo?interpolateParams=false")
	if strings.Contains(got.DSN, "interpolateParams") {
		t.Errorf("DSN %q interpolates though the URL said not to", got.DSN)
	}
	// A hung database fails queries in bounded time, and the server gives
	// up on a silent session of papo's, unless the URL says otherwise.
	for url, want := range map[string][]string{
		"mysql://root@db/papo":                                {"readTimeout=15s", "writeTimeout=15s", "timeout=5s", "wait_timeout=60"},
		"mysql://root@db/papo?wait_timeout=600":               {"wait_timeout=600"},
		"mysql://root@db/papo?readTimeout=2m&timeout=1s":      {"readTimeout=2m0s", "writeTimeout=15s", "timeout=1s"},
		"mysql://root@db/papo?readTimeout=0&writeTimeout=90s": {"writeTimeout=1m30s"},
	} {
		got, err := models.ParseDatabaseURL(url)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		for _, w := range want {
			if !strings.Contains(got.DSN, w) {
				t.Errorf("%s: DSN %q lacks %q", url, got.DSN, w)
			}
		}
		if strings.Contains(url, "readTimeout=0") && strings.Contains(got.DSN, "readTimeout") {
			t.Errorf("%s: DSN %q still has a read timeout", url, got.DSN)
		}
	}
	if _, err := models.ParseDatabaseURL("mysql://root@db/papo?readTimeout=soon"); err == nil {
		t.Error("a read timeout that is not a duration was taken")
	}
}

// A MySQL server that accepts connections and then says nothing (paused,
// or behind a partition) makes opening fail after the read timeout,
// rather than hang: requests then answer 503 in bounded time.
func TestHungMySQLFailsInBoundedTime(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // accepted, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	target, err := models.ParseDatabaseURL("mysql://root@" + ln.Addr().String() + "/papo?readTimeout=300ms")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		s, err := models.Open(ctx, target, nil)
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("opened a database that never answered")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("opening a database that never answers did not give up (the test's bound is 20 s, the read timeout 300 ms)")
	}
}

// TestMigrationsAreIdempotentAndConcurrent: several instances starting at
// once on one database all succeed, and the schema is usable.
func TestMigrationsAreIdempotentAndConcurrent(t *testing.T) {
	for _, d := range modelstest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			target := modelstest.Target(t, d)
			ctx := context.Background()
			var wg sync.WaitGroup
			errs := make([]error, 4)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s, err := models.Open(ctx, target, nil)
					if err != nil {
						errs[i] = err
						return
					}
					defer s.Close()
					errs[i] = s.Migrate(ctx)
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			s, err := models.Open(ctx, target, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Migrate(ctx); err != nil {
				t.Fatalf("a second migration: %v", err)
			}
			last, err := s.LastMessageID(ctx)
			if err != nil || last != 0 {
				t.Fatalf("sequence = %d, %v", last, err)
			}
		})
	}
}

func TestUnicodeRoundTrips(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, s *models.Store) {
		u := newUser(t, s, "ana")
		// Quotes, backslashes and placeholders matter on MySQL, where the
		// driver writes the arguments into the statement itself.
		texts := []string{"emoji 👋🏽🇧🇷", "CJK 𠜎𠝹 (4-byte)", "RTL \u202eevil\u202c", "zero\u200bwidth", "combining e\u0301", "tab\tnew\nline",
			`it's "quoted" \' \\ back\slash`, "'); DELETE FROM messages; --", "? ?? $1 :name %s %% _"}
		var msgs []*models.Message
		for _, text := range texts {
			msgs = append(msgs, &models.Message{Room: "general", Kind: models.KindUser, UserID: u.ID, Username: u.Username, Body: text, CreatedAt: time.Now().UTC()})
		}
		if err := s.InsertMessages(context.Background(), msgs); err != nil {
			t.Fatal(err)
		}
		back, err := s.Newest(context.Background(), models.Visibility{Room: "general", UserID: u.ID}, 50)
		if err != nil {
			t.Fatal(err)
		}
		if len(back) != len(texts) {
			t.Fatalf("read back %d messages, want %d", len(back), len(texts))
		}
		for i, m := range back {
			if m.Body != texts[i] {
				t.Errorf("stored %q, read back %q", texts[i], m.Body)
			}
		}
	})
}

// TestMissingSequenceStoresNothing: without its sequence row the store
// refuses batches rather than hand out ids it cannot vouch for (on MySQL,
// LAST_INSERT_ID would answer with the connection's last value).
func TestMissingSequenceStoresNothing(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, s *models.Store) {
		ctx := context.Background()
		u := newUser(t, s, "ana")
		msg := func() []*models.Message {
			return []*models.Message{{Room: "general", Kind: models.KindUser, UserID: u.ID, Username: "ana", Body: "hi", CreatedAt: time.Now().UTC()}}
		}
		if err := s.InsertMessages(ctx, msg()); err != nil {
			t.Fatal(err)
		}
		if err := s.DB().Exec("DELETE FROM sequences").Error; err != nil {
			t.Fatal(err)
		}
		batch := msg()
		if err := s.InsertMessages(ctx, batch); err == nil {
			t.Fatalf("a batch was stored without the sequence row, with id %d", batch[0].ID)
		}
		if batch[0].ID != 0 {
			t.Errorf("the refused message kept id %d", batch[0].ID)
		}
		var stored int64
		if err := s.DB().Model(&models.Message{}).Count(&stored).Error; err != nil || stored != 1 {
			t.Errorf("%d messages stored (%v), want the first one alone", stored, err)
		}
	})
}

// TestInsertedRowsReadBackWhole: every column the writer inserts comes
// back as it was given, for each kind of message.
func TestInsertedRowsReadBackWhole(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, s *models.Store) {
		ctx := context.Background()
		ana, bia := newUser(t, s, "ana"), newUser(t, s, "bia")
		at := time.Date(2026, 11, 28, 21, 4, 5, 123_000_000, time.UTC)
		want := []models.Message{
			{Room: "general", Kind: models.KindSystem, Event: "join", UserID: ana.ID, Username: "ana", Body: "ana joined the chat", CreatedAt: at},
			{Room: "general", Kind: models.KindUser, UserID: ana.ID, Username: "ana", Body: "hello", CreatedAt: at.Add(time.Millisecond)},
			{Room: "general", Kind: models.KindPrivate, UserID: ana.ID, Username: "ana", ToUserID: &bia.ID, ToUsername: "bia", Body: "psst", CreatedAt: at.Add(2 * time.Millisecond)},
			{Room: "general", Kind: models.KindAction, UserID: bia.ID, Username: "bia", Body: "waves", CreatedAt: at.Add(3 * time.Millisecond)},
			// Words the app never makes, so that the ones the insert cannot
			// write into its text are bound, and still come back whole.
			{Room: "sala'); DROP TABLE users; --", Kind: models.KindUser, UserID: bia.ID, Username: `o'brien\`, Body: "?", CreatedAt: at.Add(4 * time.Millisecond)},
			{Room: "café ?", Kind: models.KindPrivate, UserID: bia.ID, Username: "bia", ToUserID: &ana.ID, ToUsername: "ána's", Event: "'", Body: "''", CreatedAt: at.Add(5 * time.Millisecond)},
		}
		msgs := make([]*models.Message, len(want))
		for i := range want {
			m := want[i]
			msgs[i] = &m
		}
		if err := s.InsertMessages(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		back, err := s.MessagesAfter(ctx, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(back) != len(want) {
			t.Fatalf("read back %d messages, want %d", len(back), len(want))
		}
		for i, got := range back {
			w := want[i]
			w.ID = msgs[i].ID
			if w.ID != int64(i+1) {
				t.Errorf("message %d got id %d, want %d", i, w.ID, i+1)
			}
			got.CreatedAt = got.CreatedAt.UTC()
			if fmt.Sprint(deref(got)) != fmt.Sprint(deref(w)) {
				t.Errorf("message %d read back\n%+v\nwant\n%+v", i, deref(got), deref(w))
			}
		}
		for _, c := range []struct {
			user *models.User
			want int64
		}{{ana, 2}, {bia, 3}} {
			u, err := s.UserByName(ctx, c.user.Username)
			if err != nil {
				t.Fatal(err)
			}
			if u.MessageCount != c.want {
				t.Errorf("%s has message_count %d, want %d", u.Username, u.MessageCount, c.want)
			}
		}
	})
}

// deref shows a message with its recipient's id rather than a pointer.
func deref(m models.Message) string {
	to := "nil"
	if m.ToUserID != nil {
		to = fmt.Sprint(*m.ToUserID)
	}
	return fmt.Sprintf("id=%d room=%s kind=%s event=%s user=%d/%s to=%s/%s body=%q at=%s",
		m.ID, m.Room, m.Kind, m.Event, m.UserID, m.Username, to, m.ToUsername, m.Body, m.CreatedAt.Format(time.RFC3339Nano))
}

// BenchmarkInsertMessages is the writer's commit: batches of 50 messages,
// each to one of 1,000 rooms, as under the store load.
func BenchmarkInsertMessages(b *testing.B) {
	for _, d := range modelstest.Dialects {
		b.Run(string(d), func(b *testing.B) { benchmarkInsertMessages(b, modelstest.Open(b, d)) })
	}
}

func benchmarkInsertMessages(b *testing.B, s *models.Store) {
	ctx := context.Background()
	var users []*models.User
	for i := range 100 {
		u := &models.User{Username: fmt.Sprintf("user%03d", i), PasswordHash: "x", CreatedAt: time.Now().UTC()}
		if err := s.CreateUser(ctx, u); err != nil {
			b.Fatal(err)
		}
		users = append(users, u)
	}
	const batch = 50
	msgs := make([]*models.Message, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for j := range msgs {
			n := i*batch + j
			u := users[n%len(users)]
			msgs[j] = &models.Message{Room: fmt.Sprintf("room%d", n%1000), Kind: models.KindUser, UserID: u.ID, Username: u.Username,
				Body: "a message of an ordinary length, about as long as people write", CreatedAt: time.Now().UTC()}
		}
		if err := s.InsertMessages(ctx, msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch)/1000, "µs/message")
}

// TestSequenceIsGaplessInCommitOrder: concurrent batches from several
// writers (as several instances would) get ids 1..N with no gap and no
// repeat, and each batch's ids are consecutive; counts are exact.
func TestSequenceIsGaplessInCommitOrder(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, s *models.Store) {
		ctx := context.Background()
		users := []*models.User{newUser(t, s, "a1"), newUser(t, s, "b2"), newUser(t, s, "c3")}
		const writers, batches, size = 4, 10, 5
		var wg sync.WaitGroup
		var mu sync.Mutex
		var all []int64
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := 0; b < batches; b++ {
					msgs := make([]*models.Message, size)
					for i := range msgs {
						u := users[(w+i)%len(users)]
						msgs[i] = &models.Message{Room: "general", Kind: models.KindUser, UserID: u.ID, Username: u.Username, Body: fmt.Sprint(w, b, i), CreatedAt: time.Now().UTC()}
					}
					if err := s.InsertMessages(ctx, msgs); err != nil {
						t.Error(err)
						return
					}
					for i := 1; i < size; i++ {
						if msgs[i].ID != msgs[i-1].ID+1 {
							t.Errorf("batch ids not consecutive: %d then %d", msgs[i-1].ID, msgs[i].ID)
						}
					}
					mu.Lock()
					for _, m := range msgs {
						all = append(all, m.ID)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		slices.Sort(all)
		for i, id := range all {
			if id != int64(i+1) {
				t.Fatalf("ids not 1..N: position %d holds %d", i, id)
			}
		}
		last, _ := s.LastMessageID(ctx)
		if last != writers*batches*size {
			t.Fatalf("last id %d", last)
		}
		var total int64
		for _, u := range users {
			got, _ := s.UserByID(ctx, u.ID)
			total += got.MessageCount
		}
		if total != writers*batches*size {
			t.Fatalf("counts add up to %d", total)
		}
	})
}

// TestFailedBatchStoresNothing: a batch that fails (here, a sender that
// does not exist) leaves no message, no count and no used id behind.
func TestFailedBatchStoresNothing(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, s *models.Store) {
		ctx := context.Background()
		u := newUser(t, s, "ana")
		bad := []*models.Message{
			{Room: "general", Kind: models.KindUser, UserID: u.ID, Username: "ana", Body: "ok", CreatedAt: time.Now().UTC()},
			{Room: "general", Kind: models.KindUser, UserID: 999999, Username: "ghost", Body: "no such user", CreatedAt: time.Now().UTC()},
		}
		if err := s.InsertMessages(ctx, bad); err == nil {
			t.Fatal("a batch with a missing sender was stored")
		}
		if last, _ := s.LastMessageID(ctx); last != 0 {
			t.Fatalf("the failed batch used ids up to %d", last)
		}
		if got, _ := s.UserByID(ctx, u.ID); got.MessageCount != 0 {
			t.Fatalf("count %d after a failed batch", got.MessageCount)
		}
		good := []*models.Message{{Room: "general", Kind: models.KindUser, UserID: u.ID, Username: "ana", Body: "ok", CreatedAt: time.Now().UTC()}}
		if err := s.InsertMessages(ctx, good); err != nil || good[0].ID != 1 {
			t.Fatalf("next id %d, %v; want 1", good[0].ID, err)
		}
	})
}

func TestUsernamesAreUniqueWithoutCase(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, s *models.Store) {
		newUser(t, s, "Ana")
		err := s.CreateUser(context.Background(), &models.User{Username: "aNA", PasswordHash: "x", CreatedAt: time.Now().UTC()})
		if !errors.Is(err, models.ErrUsernameTaken) {
			t.Fatalf("err = %v", err)
		}
		u, err := s.UserByName(context.Background(), "ANA")
		if err != nil || u.Username != "Ana" {
			t.Fatalf("lookup: %+v, %v", u, err)
		}
	})
}

func TestEnsureSettingAgreesUnderRace(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, s *models.Store) {
		var wg sync.WaitGroup
		got := make([]string, 6)
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := s.EnsureSetting(context.Background(), "secret", func() (string, error) { return fmt.Sprint("value-", i), nil })
				if err != nil {
					t.Error(err)
				}
				got[i] = v
			}()
		}
		wg.Wait()
		for _, v := range got {
			if v != got[0] || v == "" {
				t.Fatalf("instances disagree: %v", got)
			}
		}
	})
}

// TestLargeBatchStoresEveryRow: a batch longer than one INSERT statement
// takes stores every row once, in order, and counts each.
func TestLargeBatchStoresEveryRow(t *testing.T) {
	modelstest.Each(t, func(t *testing.T, s *models.Store) {
		ctx := context.Background()
		ana := newUser(t, s, "ana")
		const n = 150
		msgs := make([]*models.Message, n)
		for i := range msgs {
			msgs[i] = &models.Message{Room: fmt.Sprintf("room-%d", i%7), Kind: models.KindUser, UserID: ana.ID, Username: "ana",
				Body: fmt.Sprintf("message %d", i), CreatedAt: time.Now().UTC()}
		}
		if err := s.InsertMessages(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		back, err := s.MessagesAfter(ctx, 0, 2*n)
		if err != nil {
			t.Fatal(err)
		}
		if len(back) != n {
			t.Fatalf("read back %d messages, want %d", len(back), n)
		}
		for i, m := range back {
			if m.ID != int64(i+1) || m.Body != fmt.Sprintf("message %d", i) || m.Room != fmt.Sprintf("room-%d", i%7) {
				t.Fatalf("row %d read back as id=%d room=%s body=%q", i, m.ID, m.Room, m.Body)
			}
		}
		u, err := s.UserByName(ctx, "ana")
		if err != nil {
			t.Fatal(err)
		}
		if u.MessageCount != n {
			t.Errorf("message_count %d, want %d", u.MessageCount, n)
		}
	})
}

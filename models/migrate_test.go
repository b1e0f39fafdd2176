package models

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A database made before the messages' foreign keys were deferred, with
// messages in it, is migrated to deferred keys: every message, index and
// count stays, the keys still hold, and migrating again changes nothing.
func TestMigrateDefersTheMessageKeysOfAnOlderDatabase(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, sqliteTarget(filepath.Join(t.TempDir(), "old.db")), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	// The schema as earlier versions left it: GORM's, keys immediate.
	if err := s.db.Transaction(migrate); err != nil {
		t.Fatal(err)
	}
	if ddl := tableSQL(t, s, "messages"); strings.Contains(ddl, deferred) || !strings.Contains(ddl, "ON DELETE CASCADE") {
		t.Fatalf("the older schema is not what the test means to migrate: %s", ddl)
	}
	ana := &User{Username: "ana", PasswordHash: "x", CreatedAt: time.Now().UTC()}
	bo := &User{Username: "bo", PasswordHash: "x", CreatedAt: time.Now().UTC()}
	for _, u := range []*User{ana, bo} {
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	var before []*Message
	for i := range 300 {
		m := &Message{Room: "general", Kind: KindUser, UserID: ana.ID, Username: "ana", Body: "message " + string(rune('a'+i%26)), CreatedAt: time.Now().UTC()}
		if i%10 == 0 {
			m.Kind, m.ToUserID, m.ToUsername = KindPrivate, &bo.ID, "bo"
		}
		before = append(before, m)
	}
	if err := s.InsertMessages(ctx, before); err != nil {
		t.Fatal(err)
	}
	indexes := func() []string {
		var names []string
		if err := s.db.Raw("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages' AND sql IS NOT NULL ORDER BY name").Scan(&names).Error; err != nil {
			t.Fatal(err)
		}
		return names
	}
	indexesBefore := indexes()

	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ddl := tableSQL(t, s, "messages")
	if strings.Count(ddl, "ON DELETE CASCADE"+deferred) != 2 {
		t.Fatalf("the keys to users are not deferred: %s", ddl)
	}
	if got := indexes(); strings.Join(got, ",") != strings.Join(indexesBefore, ",") {
		t.Fatalf("indexes %v after the migration, %v before", got, indexesBefore)
	}
	after, err := s.MessagesAfter(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("%d messages after the migration, %d before", len(after), len(before))
	}
	for i, m := range after {
		b := before[i]
		if m.ID != b.ID || m.Body != b.Body || m.Kind != b.Kind || (m.ToUserID == nil) != (b.ToUserID == nil) || !m.CreatedAt.Equal(b.CreatedAt) {
			t.Fatalf("message %d changed: %+v, was %+v", i, m, b)
		}
	}
	var problems []struct{ Table string }
	if err := s.db.Raw("PRAGMA foreign_key_check").Scan(&problems).Error; err != nil || len(problems) != 0 {
		t.Fatalf("foreign_key_check: %v, %v", problems, err)
	}
	// The keys hold, and messages go on from where they were.
	ghost := int64(999999)
	if err := s.InsertMessages(ctx, []*Message{{Room: "general", Kind: KindUser, UserID: ghost, Username: "ghost", Body: "x", CreatedAt: time.Now().UTC()}}); err == nil {
		t.Fatal("a message of no user was stored after the migration")
	}
	next := []*Message{{Room: "general", Kind: KindUser, UserID: bo.ID, Username: "bo", Body: "next", CreatedAt: time.Now().UTC()}}
	if err := s.InsertMessages(ctx, next); err != nil || next[0].ID != int64(len(before)+1) {
		t.Fatalf("the next message: id %d, %v; want %d", next[0].ID, err, len(before)+1)
	}
	// Deleting a user still deletes their messages at once.
	if err := s.DeleteUser(ctx, bo.ID); err != nil {
		t.Fatal(err)
	}
	left, err := s.MessagesAfter(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(before) - len(before)/10; len(left) != want {
		t.Fatalf("%d messages after deleting bo, want %d (his private ones and his own gone)", len(left), want)
	}

	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if again := tableSQL(t, s, "messages"); again != ddl {
		t.Fatalf("migrating again changed the table:\n%s\nwas\n%s", again, ddl)
	}
}

func tableSQL(t *testing.T, s *Store, name string) string {
	t.Helper()
	var ddl string
	if err := s.db.Raw("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", name).Scan(&ddl).Error; err != nil {
		t.Fatal(err)
	}
	return ddl
}

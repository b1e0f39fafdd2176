// Package modelstest opens fresh, migrated databases for tests: a SQLite
// file always, and a MariaDB/MySQL database whenever PAPO_TEST_MYSQL_URL
// names a server (mysql://root@127.0.0.1:3306/test). Each MySQL test gets a
// database of its own, created for it and dropped after it.
package modelstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"papo/models"
)

// MySQLEnv names the variable holding the MySQL server URL for tests.
const MySQLEnv = "PAPO_TEST_MYSQL_URL"

// Strict reports whether a missing service must fail a test rather than
// skip it (PAPO_TEST_STRICT=1, as CI sets).
func Strict() bool { return os.Getenv("PAPO_TEST_STRICT") == "1" }

// SkipOrFail skips with reason, or fails under PAPO_TEST_STRICT=1.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if Strict() {
		t.Fatalf("%s (PAPO_TEST_STRICT=1: a missing service fails the test)", reason)
	}
	t.Skip(reason)
}

// Dialects are the databases a test runs against.
var Dialects = []models.Dialect{models.SQLite, models.MySQL}

// Each runs fn once per dialect as a subtest, each with a fresh database.
func Each(t *testing.T, fn func(t *testing.T, s *models.Store)) {
	for _, d := range Dialects {
		t.Run(string(d), func(t *testing.T) {
			fn(t, Open(t, d))
		})
	}
}

// Open returns a migrated store on a fresh database of dialect d, closed
// and removed at the end of the test.
func Open(t testing.TB, d models.Dialect) *models.Store {
	t.Helper()
	target := Target(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := models.Open(ctx, target, quietLog())
	if err != nil {
		t.Fatalf("opening %s: %v", d, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrating %s: %v", d, err)
	}
	return s
}

// Target returns a fresh, empty database of dialect d, and its URL in the
// DATABASE_URL form through TargetURL.
func Target(t testing.TB, d models.Dialect) models.Target {
	t.Helper()
	target, err := models.ParseDatabaseURL(URL(t, d))
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// URL makes a fresh, empty database of dialect d and returns its
// DATABASE_URL; it is removed at the end of the test.
func URL(t testing.TB, d models.Dialect) string {
	t.Helper()
	switch d {
	case models.SQLite:
		return "sqlite:" + filepath.Join(t.TempDir(), "papo.db")
	case models.MySQL:
		return mysqlDatabase(t)
	}
	t.Fatalf("unknown dialect %q", d)
	return ""
}

func mysqlDatabase(t testing.TB) string {
	t.Helper()
	server := os.Getenv(MySQLEnv)
	if server == "" {
		SkipOrFail(t, MySQLEnv+" is not set (e.g. mysql://root@127.0.0.1:3306/test): MySQL tests skipped")
	}
	admin, err := models.ParseDatabaseURL(server)
	if err != nil {
		t.Fatalf("%s: %v", MySQLEnv, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := models.Open(ctx, admin, quietLog())
	if err != nil {
		SkipOrFail(t, fmt.Sprintf("MySQL at %s does not answer: %v", MySQLEnv, err))
	}
	defer s.Close()
	name := "papo_t_" + randomHex(6)
	if err := s.DB().WithContext(ctx).Exec("CREATE DATABASE `" + name + "` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin").Error; err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s, err := models.Open(ctx, admin, quietLog())
		if err != nil {
			t.Logf("dropping %s: %v", name, err)
			return
		}
		defer s.Close()
		if err := s.DB().WithContext(ctx).Exec("DROP DATABASE IF EXISTS `" + name + "`").Error; err != nil {
			t.Logf("dropping %s: %v", name, err)
		}
	})
	u, _ := url.Parse(server)
	u.Path = "/" + name
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func quietLog() *slog.Logger {
	if os.Getenv("PAPO_TEST_LOG") == "1" {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

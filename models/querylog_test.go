package models_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"papo/models"
	"papo/models/modelstest"
)

// lockedBuffer is a log destination the pool's goroutines may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The statements papo logs (failed or slow) never carry their values:
// password hashes, session ids and messages stay out of the logs. A taken
// username is an answer, not a fault, and is not logged at all.
func TestQueryLogsCarryNoValues(t *testing.T) {
	for _, d := range modelstest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			var logs lockedBuffer
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := models.Open(ctx, modelstest.Target(t, d), slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			const hash = "$2a$11$secret-hash-of-a-password"
			if err := s.CreateUser(ctx, &models.User{Username: "ana", PasswordHash: hash, CreatedAt: time.Now().UTC()}); err != nil {
				t.Fatal(err)
			}
			err = s.CreateUser(ctx, &models.User{Username: "ANA", PasswordHash: hash, CreatedAt: time.Now().UTC()})
			if !errors.Is(err, models.ErrUsernameTaken) {
				t.Fatalf("duplicate: %v", err)
			}
			if got := logs.String(); got != "" {
				t.Fatalf("a taken username was logged:\n%s", got)
			}

			// A statement that fails for real (a session of no user
			// breaks its foreign key) is logged, without its values.
			const sid, data = "secret-session-id", "secret session data"
			ghost := int64(999999)
			sess := &models.Session{ID: sid, UserID: &ghost, Data: []byte(data), ExpiresAt: time.Now().Add(time.Hour).UTC()}
			if err := s.SaveSession(ctx, sess); err == nil {
				t.Fatal("a session of no user was stored")
			}
			got := logs.String()
			if !strings.Contains(got, "level=ERROR") {
				t.Errorf("the failed insert was not logged:\n%s", got)
			}
			for _, secret := range []string{hash, sid, data} {
				if strings.Contains(got, secret) {
					t.Errorf("the log carries %q:\n%s", secret, got)
				}
			}
		})
	}
}

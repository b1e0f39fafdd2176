package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"papo/models"
)

// SessionStore is the part of the store that sessions need.
type SessionStore interface {
	LoadSession(ctx context.Context, id string) (*models.Session, error)
	SaveSession(ctx context.Context, s *models.Session) error
	DeleteSession(ctx context.Context, id string) error
	DeleteExpiredSessions(ctx context.Context) (int64, error)
	EnsureSetting(ctx context.Context, name string, generate func() (string, error)) (string, error)
}

// ErrNoSession means the session does not exist (anymore).
var ErrNoSession = errors.New("no such session")

// Sessions keeps login sessions in the database, so that every instance
// sharing it agrees on them, and a deleted one is dead everywhere.
type Sessions struct {
	store SessionStore
	hub   *Hub
}

// NewSessions builds the service.
func NewSessions(store SessionStore, hub *Hub) *Sessions {
	return &Sessions{store: store, hub: hub}
}

// NewSessionID returns 256 random bits, hex-encoded.
func NewSessionID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// Load returns the session's data and user, or ErrNoSession.
func (s *Sessions) Load(ctx context.Context, id string) (data []byte, userID int64, err error) {
	row, err := s.store.LoadSession(ctx, id)
	if errors.Is(err, models.ErrNotFound) {
		return nil, 0, ErrNoSession
	}
	if err != nil {
		return nil, 0, unavailable(err)
	}
	if row.UserID != nil {
		userID = *row.UserID
	}
	return row.Data, userID, nil
}

// Save stores the session's data until expires.
func (s *Sessions) Save(ctx context.Context, id string, userID int64, data []byte, expires time.Time) error {
	row := &models.Session{ID: id, Data: data, ExpiresAt: expires.UTC()}
	if userID != 0 {
		row.UserID = &userID
	}
	if err := s.store.SaveSession(ctx, row); err != nil {
		return unavailable(err)
	}
	return nil
}

// Delete ends a session: its row goes, and its open streams close on
// every instance.
func (s *Sessions) Delete(ctx context.Context, id string, userID int64) error {
	if err := s.store.DeleteSession(ctx, id); err != nil {
		return unavailable(err)
	}
	if userID != 0 {
		_ = s.hub.EndSession(ctx, userID, id)
	}
	return nil
}

// Secret returns the configured secret, or the one kept in the database,
// generating it on first use, so restarts and sibling instances agree.
func (s *Sessions) Secret(ctx context.Context, configured string) ([]byte, error) {
	if configured != "" {
		return []byte(configured), nil
	}
	secret, err := s.store.EnsureSetting(ctx, "session_secret", func() (string, error) {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b), nil
	})
	if err != nil {
		return nil, err
	}
	return []byte(secret), nil
}

// Sweep deletes expired sessions every interval until ctx ends.
func (s *Sessions) Sweep(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = s.store.DeleteExpiredSessions(ctx)
		}
	}
}

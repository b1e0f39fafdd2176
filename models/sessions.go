package models

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm/clause"
)

// LoadSession returns the live session with this id, or ErrNotFound when it
// never existed, was deleted, or has expired.
func (s *Store) LoadSession(ctx context.Context, id string) (*Session, error) {
	var rows []Session
	err := s.db.WithContext(ctx).
		Where("id = ? AND expires_at > ?", id, time.Now().UTC()).
		Limit(1).Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("loading session: %w", err)
	}
	if len(rows) == 0 {
		return nil, ErrNotFound
	}
	return &rows[0], nil
}

// SaveSession inserts the session or replaces its data and expiry.
func (s *Store) SaveSession(ctx context.Context, sess *Session) error {
	now := time.Now().UTC()
	if sess.CreatedAt.IsZero() {
		sess.CreatedAt = now
	}
	sess.UpdatedAt = now
	err := s.db.WithContext(ctx).Omit("User").Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "id"}},
		DoUpdates: clause.AssignmentColumns([]string{"user_id", "data", "expires_at", "updated_at"}),
	}).Create(sess).Error
	if err != nil {
		return fmt.Errorf("saving session: %w", err)
	}
	return nil
}

// DeleteSession ends a session everywhere at once.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	if err := s.db.WithContext(ctx).Where("id = ?", id).Delete(&Session{}).Error; err != nil {
		return fmt.Errorf("deleting session: %w", err)
	}
	return nil
}

// DeleteExpiredSessions removes sessions past their expiry and reports how many.
func (s *Store) DeleteExpiredSessions(ctx context.Context) (int64, error) {
	res := s.db.WithContext(ctx).Where("expires_at <= ?", time.Now().UTC()).Delete(&Session{})
	if res.Error != nil {
		return 0, fmt.Errorf("deleting expired sessions: %w", res.Error)
	}
	return res.RowsAffected, nil
}

// LiveSessionIDs reports which of ids name a session that exists and has
// not expired: the returned set holds those, and only those. It asks in
// one query per 500 ids, so a caller may pass any number.
func (s *Store) LiveSessionIDs(ctx context.Context, ids []string) (map[string]bool, error) {
	const batch = 500
	live := make(map[string]bool, len(ids))
	now := time.Now().UTC()
	for start := 0; start < len(ids); start += batch {
		part := ids[start:min(start+batch, len(ids))]
		var found []string
		err := s.db.WithContext(ctx).Model(&Session{}).
			Where("id IN ? AND expires_at > ?", part, now).
			Pluck("id", &found).Error
		if err != nil {
			return nil, fmt.Errorf("checking sessions: %w", err)
		}
		for _, id := range found {
			live[id] = true
		}
	}
	return live, nil
}

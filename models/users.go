package models

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

var (
	// ErrNotFound means the row asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUsernameTaken means another account has this name, in any case.
	ErrUsernameTaken = errors.New("username taken")
)

// UsernameKey is the form under which names are unique.
func UsernameKey(username string) string { return strings.ToLower(username) }

// CreateUser inserts u. Of two concurrent registrations of one name, the
// unique index lets exactly one win; the other gets ErrUsernameTaken.
func (s *Store) CreateUser(ctx context.Context, u *User) error {
	u.UsernameKey = UsernameKey(u.Username)
	err := s.db.WithContext(ctx).Omit("MessageCount").Create(u).Error
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return ErrUsernameTaken
	}
	if err != nil {
		return fmt.Errorf("creating user: %w", err)
	}
	return nil
}

// DeleteUser deletes a user, and through the foreign keys their sessions
// and messages. papo uses it only to take back a registration that could
// not be completed, before the user has anything.
func (s *Store) DeleteUser(ctx context.Context, id int64) error {
	if err := s.db.WithContext(ctx).Delete(&User{}, id).Error; err != nil {
		return fmt.Errorf("deleting user: %w", err)
	}
	return nil
}

// UserByName finds a user by name, without regard to case.
func (s *Store) UserByName(ctx context.Context, username string) (*User, error) {
	return s.findUser(ctx, "username_key = ?", UsernameKey(username))
}

// UserByID finds a user by id.
func (s *Store) UserByID(ctx context.Context, id int64) (*User, error) {
	return s.findUser(ctx, "id = ?", id)
}

func (s *Store) findUser(ctx context.Context, where string, arg any) (*User, error) {
	var users []User
	if err := s.db.WithContext(ctx).Where(where, arg).Limit(1).Find(&users).Error; err != nil {
		return nil, fmt.Errorf("finding user: %w", err)
	}
	if len(users) == 0 {
		return nil, ErrNotFound
	}
	return &users[0], nil
}

// CountUsers is for tests and operations.
func (s *Store) CountUsers(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Model(&User{}).Count(&n).Error
	return n, err
}

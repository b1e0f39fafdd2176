package models

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// migrationLock names the MySQL advisory lock that serializes migrations,
// so two instances starting at the same moment do not race on DDL.
const migrationLock = "papo_migrate"

// Migrate creates or updates the schema and seeds the rows papo needs. It is
// idempotent, and safe when several instances run it at the same moment:
// on MySQL, where DDL commits implicitly, a named lock serializes them; on
// SQLite the whole migration is one immediate transaction.
func (s *Store) Migrate(ctx context.Context) error {
	db := s.db.WithContext(ctx)
	switch s.dialect {
	case MySQL:
		return db.Connection(func(conn *gorm.DB) error {
			var got int
			if err := conn.Raw("SELECT GET_LOCK(?, 60)", migrationLock).Scan(&got).Error; err != nil {
				return fmt.Errorf("taking the migration lock: %w", err)
			}
			if got != 1 {
				return errors.New("timed out waiting for the migration lock held by another instance")
			}
			defer conn.Exec("SELECT RELEASE_LOCK(?)", migrationLock)
			conn = conn.Set("gorm:table_options", "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin")
			return migrate(conn)
		})
	default:
		return db.Transaction(migrate)
	}
}

func migrate(db *gorm.DB) error {
	if err := db.AutoMigrate(&User{}, &Message{}, &Session{}, &Setting{}, &Sequence{}); err != nil {
		return fmt.Errorf("migrating tables: %w", err)
	}
	seed := Sequence{Name: messageSequence, Value: 0}
	if err := db.Clauses(clause.OnConflict{DoNothing: true}).Create(&seed).Error; err != nil {
		return fmt.Errorf("seeding the message sequence: %w", err)
	}
	return nil
}

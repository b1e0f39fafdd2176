package models

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

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
		return db.Transaction(func(tx *gorm.DB) error {
			if err := migrate(tx); err != nil {
				return err
			}
			return deferMessageKeys(tx)
		})
	}
}

func migrate(db *gorm.DB) error {
	if err := db.AutoMigrate(&User{}, &Message{}, &Session{}, &Setting{}, &Sequence{}, &PresenceMark{}); err != nil {
		return fmt.Errorf("migrating tables: %w", err)
	}
	seed := Sequence{Name: messageSequence, Value: 0}
	if err := db.Clauses(clause.OnConflict{DoNothing: true}).Create(&seed).Error; err != nil {
		return fmt.Errorf("seeding the message sequence: %w", err)
	}
	return nil
}

// deferMessageKeys has SQLite check the messages table's foreign keys at
// COMMIT rather than at each statement. A multi-row INSERT that may abort
// half-way (an immediate foreign key check can) must keep a statement
// journal: a copy of every page it touches, so that it can undo itself
// and leave the rest of its transaction standing. A batch touches a page
// or more per message in the room and sender indexes, and the copies
// grow with the database: past 100,000 messages they took a quarter to a
// third of the server's CPU per stored message (BENCHMARKS.md, change 22). Deferred, the keys still hold: a batch
// that would break one fails at COMMIT, whole (InsertMessages rolls it
// back), and ON DELETE CASCADE acts at once as before.
//
// SQLite cannot alter a constraint, so the table is rebuilt as its
// documented procedure for other schema changes goes: a copy with the
// new definition, the rows, the old table dropped, the copy renamed, the
// indexes made again; all inside the migration's transaction. Once done
// (and on a new database, where the table is still empty) it is a check
// of the schema's text.
func deferMessageKeys(tx *gorm.DB) error {
	var ddl string
	if err := tx.Raw("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'messages'").Scan(&ddl).Error; err != nil {
		return fmt.Errorf("reading the messages table's schema: %w", err)
	}
	if strings.Contains(ddl, deferred) {
		return nil
	}
	rebuilt, n := immediateUserKey.ReplaceAllString(ddl, "${0}"+deferred), len(immediateUserKey.FindAllString(ddl, -1))
	if n != 2 || !strings.HasPrefix(rebuilt, "CREATE TABLE `messages` (") {
		return fmt.Errorf("the messages table is not as papo made it (%d keys to users): %s", n, ddl)
	}
	rebuilt = "CREATE TABLE `messages_rebuilt` (" + strings.TrimPrefix(rebuilt, "CREATE TABLE `messages` (")
	var indexes []string
	if err := tx.Raw("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages' AND sql IS NOT NULL").Scan(&indexes).Error; err != nil {
		return fmt.Errorf("reading the messages table's indexes: %w", err)
	}
	steps := append([]string{
		rebuilt,
		"INSERT INTO `messages_rebuilt` SELECT * FROM `messages`",
		"DROP TABLE `messages`",
		"ALTER TABLE `messages_rebuilt` RENAME TO `messages`",
	}, indexes...)
	for _, sql := range steps {
		if err := tx.Exec(sql).Error; err != nil {
			return fmt.Errorf("rebuilding the messages table with deferred keys: %w", err)
		}
	}
	return nil
}

const deferred = " DEFERRABLE INITIALLY DEFERRED"

// immediateUserKey is a foreign key clause to users as GORM writes it,
// with its actions.
var immediateUserKey = regexp.MustCompile("REFERENCES `users`\\(`id`\\)(?: ON (?:DELETE|UPDATE) (?:CASCADE|SET NULL|SET DEFAULT|RESTRICT|NO ACTION))*")

package models

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// EnsureSetting returns the value stored under name. When there is none it
// stores generate()'s value first. Of several instances racing here, the
// first insert wins and every instance reads that one back.
func (s *Store) EnsureSetting(ctx context.Context, name string, generate func() (string, error)) (string, error) {
	db := s.db.WithContext(ctx)
	var existing Setting
	if err := db.Where("name = ?", name).Limit(1).Find(&existing).Error; err != nil {
		return "", fmt.Errorf("reading setting %s: %w", name, err)
	}
	if existing.Name != "" {
		return existing.Value, nil
	}
	value, err := generate()
	if err != nil {
		return "", err
	}
	if err := db.Clauses(clause.OnConflict{DoNothing: true}).Create(&Setting{Name: name, Value: value}).Error; err != nil {
		return "", fmt.Errorf("storing setting %s: %w", name, err)
	}
	if err := db.Where("name = ?", name).Take(&existing).Error; err != nil {
		return "", fmt.Errorf("reading setting %s: %w", name, err)
	}
	return existing.Value, nil
}

// PutSetting stores value under name, replacing what was there.
func (s *Store) PutSetting(ctx context.Context, name, value string) error {
	err := s.db.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "name"}},
		DoUpdates: clause.AssignmentColumns([]string{"value"}),
	}).Create(&Setting{Name: name, Value: value}).Error
	if err != nil {
		return fmt.Errorf("storing setting %s: %w", name, err)
	}
	return nil
}

// ProbeWrite stores the time under the setting write_probe: a commit that
// no user sees, made to learn whether the database takes writes at all.
func (s *Store) ProbeWrite(ctx context.Context) error {
	return s.PutSetting(ctx, "write_probe", time.Now().UTC().Format(time.RFC3339Nano))
}

// TakeSetting returns the value stored under name and deletes it, so that
// only one reader gets it. ok is false when there was none.
func (s *Store) TakeSetting(ctx context.Context, name string) (value string, ok bool, err error) {
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var st Setting
		if err := tx.Where("name = ?", name).Limit(1).Find(&st).Error; err != nil {
			return err
		}
		if st.Name == "" {
			return nil
		}
		res := tx.Where("name = ?", name).Delete(&Setting{})
		if res.Error != nil {
			return res.Error
		}
		// Another instance took it between the read and the delete.
		value, ok = st.Value, res.RowsAffected == 1
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("taking setting %s: %w", name, err)
	}
	return value, ok, nil
}

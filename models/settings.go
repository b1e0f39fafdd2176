package models

import (
	"context"
	"fmt"

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

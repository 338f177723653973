package store

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/aihigress/aihigress/models"
)

// CreateAPIKey inserts k, assigning an ID when it has none.
func (s *Store) CreateAPIKey(ctx context.Context, k *models.APIKey) error {
	if k.ID == "" {
		k.ID = uuid.NewString()
	}
	if err := s.DB.WithContext(ctx).Create(k).Error; err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("create API key %q: %w", k.Name, ErrConflict)
		}
		return fmt.Errorf("create API key %q: %w", k.Name, err)
	}
	return nil
}

// APIKeyByHash finds a key by the HMAC of its secret.
func (s *Store) APIKeyByHash(ctx context.Context, hash string) (*models.APIKey, error) {
	var k models.APIKey
	if err := s.DB.WithContext(ctx).Where("key_hash = ?", hash).First(&k).Error; err != nil {
		return nil, notFound(err)
	}
	return &k, nil
}

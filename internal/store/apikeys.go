package store

import (
	"context"
	"fmt"
	"time"

	"github.com/aihigress/aihigress/models"
)

// Values of api_keys.disabled_reason. It is "" while a key is active.
const (
	APIKeyDisabledExpired = "expired"
	APIKeyDisabledByUser  = "disabled_by_user"
	// APIKeyDisabledErrorRate marks a key that the worker's error rate job
	// disabled because most of its recent requests were client errors.
	APIKeyDisabledErrorRate = "error_rate"
)

// CreateAPIKey inserts k, assigning a UUIDv7 ID when it has none so that
// listings sort by creation time.
func (s *Store) CreateAPIKey(ctx context.Context, k *models.APIKey) error {
	if k.ID == "" {
		k.ID = newID()
	}
	if err := s.DB.WithContext(ctx).Create(k).Error; err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("create API key %q: %w", k.Name, ErrConflict)
		}
		return fmt.Errorf("create API key %q: %w", k.Name, err)
	}
	return nil
}

// APIKeyByHash finds a key by the HMAC of its secret and reports whether
// the account that owns it is active.
func (s *Store) APIKeyByHash(ctx context.Context, hash string) (*models.APIKey, bool, error) {
	var row struct {
		models.APIKey
		OwnerActive bool
	}
	err := s.DB.WithContext(ctx).Table("api_keys").
		Select("api_keys.*, users.is_active AS owner_active").
		Joins("JOIN users ON users.id = api_keys.user_id").
		Where("api_keys.key_hash = ?", hash).
		Take(&row).Error
	if err != nil {
		return nil, false, notFound(err)
	}
	return &row.APIKey, row.OwnerActive, nil
}

// APIKeyHashes returns the key hashes of every key of the user.
func (s *Store) APIKeyHashes(ctx context.Context, userID string) ([]string, error) {
	var hashes []string
	err := s.DB.WithContext(ctx).Model(&models.APIKey{}).Where("user_id = ?", userID).Pluck("key_hash", &hashes).Error
	if err != nil {
		return nil, fmt.Errorf("list API key hashes of user %s: %w", userID, err)
	}
	return hashes, nil
}

// APIKey returns the user's key id. A key of another user is ErrNotFound.
func (s *Store) APIKey(ctx context.Context, userID, id string) (*models.APIKey, error) {
	if !validUUID(id) {
		return nil, ErrNotFound
	}
	var k models.APIKey
	if err := s.DB.WithContext(ctx).Where("id = ? AND user_id = ?", id, userID).First(&k).Error; err != nil {
		return nil, notFound(err)
	}
	return &k, nil
}

// APIKeyByID returns the key id of any user.
func (s *Store) APIKeyByID(ctx context.Context, id string) (*models.APIKey, error) {
	if !validUUID(id) {
		return nil, ErrNotFound
	}
	var k models.APIKey
	if err := s.DB.WithContext(ctx).Where("id = ?", id).First(&k).Error; err != nil {
		return nil, notFound(err)
	}
	return &k, nil
}

// DisableAPIKey marks the key id inactive with reason unless it is
// inactive already or its updated_at is after notChangedSince. It reports
// whether it changed the key.
func (s *Store) DisableAPIKey(ctx context.Context, id, reason string, notChangedSince time.Time) (bool, error) {
	res := s.DB.WithContext(ctx).Model(&models.APIKey{}).
		Where("id = ? AND is_active = ? AND updated_at <= ?", id, true, notChangedSince.UTC()).
		Updates(map[string]any{"is_active": false, "disabled_reason": reason, "updated_at": s.DB.NowFunc()})
	if res.Error != nil {
		return false, fmt.Errorf("disable API key %s: %w", id, res.Error)
	}
	return res.RowsAffected > 0, nil
}

// ListAPIKeys returns one page of the user's keys, newest first, and the
// cursor of the next page ("" on the last page).
func (s *Store) ListAPIKeys(ctx context.Context, userID string, page Page) ([]models.APIKey, string, error) {
	q := s.DB.WithContext(ctx).Where("user_id = ?", userID)
	return pageByID(q, page, func(k models.APIKey) string { return k.ID }, "API keys")
}

// UpdateAPIKey writes the columns in changes (column name to value) to the
// user's key id and sets updated_at.
func (s *Store) UpdateAPIKey(ctx context.Context, userID, id string, changes map[string]any) error {
	if !validUUID(id) {
		return ErrNotFound
	}
	changes["updated_at"] = s.DB.NowFunc()
	res := s.DB.WithContext(ctx).Model(&models.APIKey{}).
		Where("id = ? AND user_id = ?", id, userID).
		Updates(changes)
	if res.Error != nil {
		return fmt.Errorf("update API key %s: %w", id, res.Error)
	}
	if res.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteAPIKey removes the user's key id. Runs started with it keep their
// rows, with api_key_id set to NULL by the foreign key.
func (s *Store) DeleteAPIKey(ctx context.Context, userID, id string) error {
	return s.deleteOwned(ctx, &models.APIKey{}, userID, id)
}

// ExpiredAPIKey is a key that ExpireAPIKeys marked inactive.
type ExpiredAPIKey struct {
	ID      string
	KeyHash string
}

// ExpireAPIKeys marks at most limit active keys whose expires_at is not
// after now as inactive with disabled_reason "expired", and returns them.
// Call it again while it returns limit keys.
func (s *Store) ExpireAPIKeys(ctx context.Context, now time.Time, limit int) ([]ExpiredAPIKey, error) {
	now = now.UTC()
	var due []ExpiredAPIKey
	err := s.DB.WithContext(ctx).Model(&models.APIKey{}).
		Select("id", "key_hash").
		Where("is_active = ? AND expires_at IS NOT NULL AND expires_at <= ?", true, now).
		Order("expires_at").Limit(limit).
		Scan(&due).Error
	if err != nil {
		return nil, fmt.Errorf("find expired API keys: %w", err)
	}
	if len(due) == 0 {
		return nil, nil
	}

	ids := make([]string, len(due))
	for i, k := range due {
		ids[i] = k.ID
	}
	// The WHERE clause repeats is_active, so a key that another API process
	// swept in the meantime is left alone. Such a key is still returned,
	// which only costs a redundant cache invalidation.
	err = s.DB.WithContext(ctx).Model(&models.APIKey{}).
		Where("id IN ? AND is_active = ?", ids, true).
		Updates(map[string]any{"is_active": false, "disabled_reason": APIKeyDisabledExpired, "updated_at": now}).Error
	if err != nil {
		return nil, fmt.Errorf("mark expired API keys inactive: %w", err)
	}
	return due, nil
}

// TouchAPIKeys sets last_used_at to usedAt on the keys ids, unless a key
// already has a later time.
func (s *Store) TouchAPIKeys(ctx context.Context, ids []string, usedAt time.Time) error {
	usedAt = usedAt.UTC()
	err := s.DB.WithContext(ctx).Model(&models.APIKey{}).
		Where("id IN ? AND (last_used_at IS NULL OR last_used_at < ?)", ids, usedAt).
		UpdateColumn("last_used_at", usedAt).Error
	if err != nil {
		return fmt.Errorf("update last_used_at of %d API keys: %w", len(ids), err)
	}
	return nil
}

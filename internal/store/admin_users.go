package store

import (
	"context"
	"fmt"

	"github.com/aihigress/aihigress/models"
)

// ListUsers returns one page of all users by descending ID, which is newest
// first for users that CreateUser gave a UUIDv7, and the cursor of the next
// page ("" on the last page).
func (s *Store) ListUsers(ctx context.Context, page Page) ([]models.User, string, error) {
	return pageByID(s.DB.WithContext(ctx), page, func(u models.User) string { return u.ID }, "users")
}

// UserFlags are the account flags that an administrator can change. A nil
// field stays as it is.
type UserFlags struct {
	IsActive    *bool
	IsSuperuser *bool
}

// UpdateUserFlags sets the non-nil flags of user id and returns the updated
// user, or ErrNotFound.
func (s *Store) UpdateUserFlags(ctx context.Context, id string, flags UserFlags) (*models.User, error) {
	if !validUUID(id) {
		return nil, ErrNotFound
	}
	changes := map[string]any{"updated_at": s.DB.NowFunc()}
	if flags.IsActive != nil {
		changes["is_active"] = *flags.IsActive
	}
	if flags.IsSuperuser != nil {
		changes["is_superuser"] = *flags.IsSuperuser
	}

	res := s.DB.WithContext(ctx).Model(&models.User{}).Where("id = ?", id).Updates(changes)
	if res.Error != nil {
		return nil, fmt.Errorf("update user %s: %w", id, res.Error)
	}
	if res.RowsAffected == 0 {
		return nil, ErrNotFound
	}
	return s.UserByID(ctx, id)
}

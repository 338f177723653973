package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/aihigress/aihigress/models"
)

// CreateUser inserts u, assigning an ID when it has none. A taken username
// or email returns ErrConflict.
func (s *Store) CreateUser(ctx context.Context, u *models.User) error {
	if u.ID == "" {
		u.ID = newID()
	}
	u.Email = strings.ToLower(u.Email)
	if err := s.DB.WithContext(ctx).Create(u).Error; err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("create user %q: %w", u.Username, ErrConflict)
		}
		return fmt.Errorf("create user %q: %w", u.Username, err)
	}
	return nil
}

// UserByLogin finds a user by username or email, case-insensitively.
func (s *Store) UserByLogin(ctx context.Context, login string) (*models.User, error) {
	var u models.User
	login = strings.ToLower(strings.TrimSpace(login))
	err := s.DB.WithContext(ctx).
		Where("lower(username) = ? OR lower(email) = ?", login, login).
		First(&u).Error
	if err != nil {
		return nil, notFound(err)
	}
	return &u, nil
}

// UserByID finds a user by ID.
func (s *Store) UserByID(ctx context.Context, id string) (*models.User, error) {
	if !validUUID(id) {
		return nil, ErrNotFound
	}
	var u models.User
	if err := s.DB.WithContext(ctx).Where("id = ?", id).First(&u).Error; err != nil {
		return nil, notFound(err)
	}
	return &u, nil
}

// HasSuperuser reports whether any superuser exists.
func (s *Store) HasSuperuser(ctx context.Context) (bool, error) {
	var n int64
	err := s.DB.WithContext(ctx).Model(&models.User{}).Where("is_superuser = ?", true).Count(&n).Error
	return n > 0, err
}

func validUUID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil && len(id) == 36
}

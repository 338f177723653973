package store

import (
	"errors"
	"fmt"
	"strconv"

	"gorm.io/gorm"
)

// ErrBadCursor is returned when a pagination cursor cannot be decoded.
var ErrBadCursor = errors.New("invalid cursor")

// Page is a keyset pagination request. Cursor is opaque to clients. For
// time-ordered lists it is the last ID seen, because IDs are UUIDv7 and sort
// by creation time. For messages it is the last sequence number seen.
type Page struct {
	Cursor string
	Limit  int
}

const (
	defaultPageLimit = 20
	maxPageLimit     = 100
)

func (p Page) limit() int {
	switch {
	case p.Limit <= 0:
		return defaultPageLimit
	case p.Limit > maxPageLimit:
		return maxPageLimit
	}
	return p.Limit
}

func (p Page) idCursor() (string, error) {
	if p.Cursor == "" {
		return "", nil
	}
	if !validUUID(p.Cursor) {
		return "", ErrBadCursor
	}
	return p.Cursor, nil
}

func (p Page) seqCursor() (int64, error) {
	if p.Cursor == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(p.Cursor, 10, 64)
	if err != nil || n < 0 {
		return 0, ErrBadCursor
	}
	return n, nil
}

// pageByID runs q for one page of rows newest first, by descending UUIDv7
// ID, and returns them with the cursor of the next page ("" on the last
// page). what names the rows in errors.
func pageByID[T any](q *gorm.DB, page Page, idOf func(T) string, what string) ([]T, string, error) {
	after, err := page.idCursor()
	if err != nil {
		return nil, "", err
	}
	if after != "" {
		q = q.Where("id < ?", after)
	}
	var items []T
	if err := q.Order("id DESC").Limit(page.limit() + 1).Find(&items).Error; err != nil {
		return nil, "", fmt.Errorf("list %s: %w", what, err)
	}
	items, next := trimPage(items, page.limit(), idOf)
	return items, next, nil
}

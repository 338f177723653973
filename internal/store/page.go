package store

import (
	"errors"
	"strconv"
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

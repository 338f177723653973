package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/aihigress/aihigress/models"
)

// ErrInvalidRange is returned by Get when offset is negative, or when it is
// at or past the end of the object. Offset 0 is valid for every object,
// including an empty one. A length that reaches past the end is cut to the
// end and is not an error.
var ErrInvalidRange = errors.New("media object range not satisfiable")

// ErrObjectTooLarge is returned by Put when the object is larger than the
// storage accepts.
var ErrObjectTooLarge = errors.New("media object too large for the storage")

// MaxDatabaseObjectSize is the largest object that the database storage
// accepts, because a row is read into memory as a whole and PostgreSQL
// sends it in one message.
const MaxDatabaseObjectSize = 64 << 20

// Database stores objects as rows of media_objects (models.MediaObject). It
// works on PostgreSQL and SQLite.
type Database struct {
	db *gorm.DB
}

// NewDatabase returns a Database that uses db.
func NewDatabase(db *gorm.DB) *Database {
	return &Database{db: db}
}

// Name returns "database".
func (d *Database) Name() string {
	return "database"
}

// Put reads exactly size bytes of body and inserts or replaces the row of
// key. ETag is the quoted hex SHA-256 of the bytes, and LastModified is the
// time of this Put, stored in created_at.
func (d *Database) Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) (ObjectInfo, error) {
	if key == "" {
		return ObjectInfo{}, errors.New("media: put in database: empty object key")
	}
	if size < 0 {
		return ObjectInfo{}, fmt.Errorf("media: put %q in database: negative size %d", key, size)
	}
	if size > MaxDatabaseObjectSize {
		return ObjectInfo{}, fmt.Errorf("media: put %q in database: %d bytes is over the database storage's limit of %d bytes; configure OSS or a local directory for larger images: %w",
			key, size, MaxDatabaseObjectSize, ErrObjectTooLarge)
	}

	data := make([]byte, size)
	if _, err := io.ReadFull(body, data); err != nil {
		return ObjectInfo{}, fmt.Errorf("media: put %q in database: read %d bytes of body: %w", key, size, err)
	}
	sum := sha256.Sum256(data)
	row := models.MediaObject{
		ObjectKey:   key,
		ContentType: contentTypeOrDefault(contentType),
		Size:        size,
		ETag:        `"` + hex.EncodeToString(sum[:]) + `"`,
		Data:        data,
		// PostgreSQL keeps microseconds, so the returned time matches a
		// later Head.
		CreatedAt: time.Now().UTC().Truncate(time.Microsecond),
	}

	err := d.db.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "object_key"}},
		DoUpdates: clause.AssignmentColumns([]string{"content_type", "size", "etag", "data", "created_at"}),
	}).Create(&row).Error
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("media: put %q in database: %w", key, err)
	}
	return rowInfo(row), nil
}

// Get reads the requested bytes of the object. The database cuts the range
// out with substr, so a partial read does not load the whole row.
func (d *Database) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, ObjectInfo, error) {
	if offset < 0 {
		return nil, ObjectInfo{}, fmt.Errorf("media: get %q from database: negative offset %d: %w", key, offset, ErrInvalidRange)
	}

	// substr positions start at 1. Both bounds stay within 32 bits for
	// PostgreSQL's integer parameters. No row is larger than
	// MaxDatabaseObjectSize, so a cut offset or length selects the same
	// bytes, and the size check below rejects an offset past the end.
	start := min(offset, MaxDatabaseObjectSize) + 1
	dataColumn := clause.Expr{SQL: "substr(data, ?) AS data", Vars: []any{start}}
	if length >= 0 {
		dataColumn = clause.Expr{SQL: "substr(data, ?, ?) AS data", Vars: []any{start, min(length, MaxDatabaseObjectSize)}}
	}

	var row models.MediaObject
	err := d.db.WithContext(ctx).
		Select("object_key, content_type, size, etag, created_at, ?", dataColumn).
		Where("object_key = ?", key).
		Take(&row).Error
	if err != nil {
		return nil, ObjectInfo{}, d.wrapError("get", key, err)
	}
	if _, err := checkObjectRange(offset, length, row.Size); err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("media: get %q from database: %w", key, err)
	}
	return io.NopCloser(bytes.NewReader(row.Data)), rowInfo(row), nil
}

// Head reads the object's row without its data.
func (d *Database) Head(ctx context.Context, key string) (ObjectInfo, error) {
	var row models.MediaObject
	err := d.db.WithContext(ctx).
		Select("object_key, content_type, size, etag, created_at").
		Where("object_key = ?", key).
		Take(&row).Error
	if err != nil {
		return ObjectInfo{}, d.wrapError("head", key, err)
	}
	return rowInfo(row), nil
}

// Delete removes the object's row. Deleting a missing key succeeds.
func (d *Database) Delete(ctx context.Context, key string) error {
	err := d.db.WithContext(ctx).Where("object_key = ?", key).Delete(&models.MediaObject{}).Error
	if err != nil {
		return fmt.Errorf("media: delete %q from database: %w", key, err)
	}
	return nil
}

func (d *Database) wrapError(operation, key string, err error) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return fmt.Errorf("media: %s %q in database: %w", operation, key, ErrNotFound)
	}
	return fmt.Errorf("media: %s %q in database: %w", operation, key, err)
}

func rowInfo(row models.MediaObject) ObjectInfo {
	return ObjectInfo{
		Key:          row.ObjectKey,
		Size:         row.Size,
		ContentType:  row.ContentType,
		ETag:         row.ETag,
		LastModified: row.CreatedAt.UTC(),
	}
}

// checkObjectRange applies the rules of ErrInvalidRange and returns the
// number of bytes that Get(offset, length) reads from an object of size
// bytes.
func checkObjectRange(offset, length, size int64) (int64, error) {
	if offset < 0 || (offset > 0 && offset >= size) {
		return 0, fmt.Errorf("offset %d of an object of %d bytes: %w", offset, size, ErrInvalidRange)
	}
	available := size - offset
	if length < 0 || length > available {
		return available, nil
	}
	return length, nil
}

// contentTypeOrDefault returns contentType, or application/octet-stream
// when it is empty.
func contentTypeOrDefault(contentType string) string {
	if contentType == "" {
		return "application/octet-stream"
	}
	return contentType
}

// Package media stores generated images and signs the links that serve them.
// Storage has three implementations: Aliyun OSS, a local directory and the
// database, the last used only when neither of the others is configured.
package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/google/uuid"
)

// ErrNotFound is returned when an object does not exist.
var ErrNotFound = errors.New("media object not found")

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key          string
	Size         int64
	ContentType  string
	ETag         string // quoted, as in an HTTP ETag header
	LastModified time.Time
}

// Storage keeps image objects by key. Put overwrites an existing object, so
// a retried activity that writes the same key leaves one object.
type Storage interface {
	// Name is "oss", "local" or "database", for logs and docs.
	Name() string
	// Put stores size bytes from body under key.
	Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) (ObjectInfo, error)
	// Get opens the object from offset. length < 0 reads to the end. The
	// local storage returns an *os.File, so that copying it to an HTTP
	// response can use sendfile.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, ObjectInfo, error)
	Head(ctx context.Context, key string) (ObjectInfo, error)
	Delete(ctx context.Context, key string) error
}

// imageKeyNamespace seeds the name-based UUIDs of object keys.
var imageKeyNamespace = uuid.MustParse("6f1d1c8e-5a0b-4c1e-9a55-2f0b8d3e7c41")

// ObjectKey returns the key of image index of a run:
// <prefix>/<kind>/<yyyy>/<mm>/<dd>/<uuid>.<ext>. The UUID is derived from
// the run ID and the index, and day is the run's creation time, so a retried
// activity derives the same key and overwrites instead of leaving an orphan.
func ObjectKey(prefix, kind string, day time.Time, runID string, index int, contentType string) string {
	id := uuid.NewSHA1(imageKeyNamespace, fmt.Appendf(nil, "%s/%d", runID, index))
	day = day.UTC()
	return path.Join(prefix, kind, day.Format("2006"), day.Format("01"), day.Format("02"), id.String()+"."+Extension(contentType))
}

// DetectContentType returns the image content type of data's first bytes,
// or "application/octet-stream" when it is not an image type that browsers
// show.
func DetectContentType(data []byte) string {
	contentType := http.DetectContentType(data)
	switch contentType {
	case "image/png", "image/jpeg", "image/gif", "image/webp":
		return contentType
	default:
		return "application/octet-stream"
	}
}

// Extension returns the file extension of an image content type.
func Extension(contentType string) string {
	switch strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0]) {
	case "image/png":
		return "png"
	case "image/jpeg":
		return "jpg"
	case "image/gif":
		return "gif"
	case "image/webp":
		return "webp"
	default:
		return "bin"
	}
}

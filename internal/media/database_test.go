package media_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"testing"

	"github.com/aihigress/aihigress/internal/media"
	"github.com/aihigress/aihigress/internal/media/storagetest"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
)

// The database tests run on SQLite, or on PostgreSQL when
// TEST_DATABASE_URL is set.

func TestDatabaseConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) media.Storage {
		return media.NewDatabase(testenv.Store(t).DB)
	})
}

func TestDatabasePutStoresRow(t *testing.T) {
	st := testenv.Store(t)
	s := media.NewDatabase(st.DB)
	data := []byte("GIF89a and some bytes")

	info, err := s.Put(context.Background(), "aihtest/a.gif", bytes.NewReader(data), int64(len(data)), "image/gif")
	if err != nil {
		t.Fatalf("Put: %v", err)
	}

	sum := sha256.Sum256(data)
	wantETag := `"` + hex.EncodeToString(sum[:]) + `"`
	if info.ETag != wantETag {
		t.Errorf("ETag = %s, want the quoted hex SHA-256 %s", info.ETag, wantETag)
	}

	var rows []models.MediaObject
	if err := st.DB.Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Fatalf("media_objects has %d rows, want 1", len(rows))
	}
	row := rows[0]
	if row.ObjectKey != "aihtest/a.gif" || row.ContentType != "image/gif" || row.Size != int64(len(data)) || row.ETag != wantETag {
		t.Errorf("row = {%q %q %d %s}, want {aihtest/a.gif image/gif %d %s}", row.ObjectKey, row.ContentType, row.Size, row.ETag, len(data), wantETag)
	}
	if !bytes.Equal(row.Data, data) {
		t.Errorf("row data = %q, want %q", row.Data, data)
	}
}

// failingReader fails the test when Put reads it.
type failingReader struct{ t *testing.T }

func (r failingReader) Read([]byte) (int, error) {
	r.t.Error("Put read the body of an object over the limit")
	return 0, io.EOF
}

func TestDatabaseRejectsLargeObject(t *testing.T) {
	s := media.NewDatabase(testenv.Store(t).DB)
	ctx := context.Background()

	_, err := s.Put(ctx, "aihtest/large.png", failingReader{t}, media.MaxDatabaseObjectSize+1, "image/png")
	if !errors.Is(err, media.ErrObjectTooLarge) {
		t.Errorf("Put over the limit: error = %v, want ErrObjectTooLarge", err)
	}
	if _, err := s.Head(ctx, "aihtest/large.png"); !errors.Is(err, media.ErrNotFound) {
		t.Errorf("Head after a rejected Put: error = %v, want ErrNotFound", err)
	}
}

func TestDatabaseExtremeRanges(t *testing.T) {
	s := media.NewDatabase(testenv.Store(t).DB)
	ctx := context.Background()
	data := []byte("0123456789")
	if _, err := s.Put(ctx, "aihtest/r.bin", bytes.NewReader(data), int64(len(data)), ""); err != nil {
		t.Fatalf("Put: %v", err)
	}

	tests := []struct {
		name           string
		offset, length int64
		want           string
		wantErr        error
	}{
		{"max length", 3, math.MaxInt64, "3456789", nil},
		{"max offset", math.MaxInt64, 1, "", media.ErrInvalidRange},
		{"max offset to end", math.MaxInt64, -1, "", media.ErrInvalidRange},
		{"length past 32 bits", 0, 1 << 33, "0123456789", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, info, err := s.Get(ctx, "aihtest/r.bin", tt.offset, tt.length)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get(%d, %d) error = %v, want %v", tt.offset, tt.length, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			defer body.Close()
			got, err := io.ReadAll(body)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("Get(%d, %d) = %q, want %q", tt.offset, tt.length, got, tt.want)
			}
			if info.ContentType != "application/octet-stream" {
				t.Errorf("ContentType = %q, want application/octet-stream for an empty type", info.ContentType)
			}
		})
	}
}

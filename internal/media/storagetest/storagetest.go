// Package storagetest checks that a media.Storage follows the contract
// that the media handler and the image activities rely on.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/media"
)

// Run checks the storage that newStorage returns. It calls newStorage once
// per subtest, and each call should return an empty storage.
//
// The keys come from media.ObjectKey, so their extensions match their
// content types, as they do in the product.
func Run(t *testing.T, newStorage func(t *testing.T) media.Storage) {
	t.Run("PutGetHead", func(t *testing.T) { testPutGetHead(t, newStorage(t)) })
	t.Run("Ranges", func(t *testing.T) { testRanges(t, newStorage(t)) })
	t.Run("InvalidRanges", func(t *testing.T) { testInvalidRanges(t, newStorage(t)) })
	t.Run("EmptyObject", func(t *testing.T) { testEmptyObject(t, newStorage(t)) })
	t.Run("MissingKey", func(t *testing.T) { testMissingKey(t, newStorage(t)) })
	t.Run("Overwrite", func(t *testing.T) { testOverwrite(t, newStorage(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newStorage(t)) })
	t.Run("ContentTypes", func(t *testing.T) { testContentTypes(t, newStorage(t)) })
	t.Run("ShortBody", func(t *testing.T) { testShortBody(t, newStorage(t)) })
	t.Run("SeparateKeys", func(t *testing.T) { testSeparateKeys(t, newStorage(t)) })
}

// day is a fixed run creation time, so keys do not depend on the clock.
var day = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

func key(index int, contentType string) string {
	return media.ObjectKey("aihtest", "images", day, "run-storagetest", index, contentType)
}

// sample returns size bytes that contain every byte value.
func sample(size int, seed byte) []byte {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i) + seed
	}
	return data
}

// opaqueReader hides the Len, Seek and WriteTo methods of the reader it
// wraps, so a storage cannot learn the size other than from Put's argument.
type opaqueReader struct{ r io.Reader }

func (o opaqueReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func put(t *testing.T, s media.Storage, key string, data []byte, contentType string) media.ObjectInfo {
	t.Helper()
	info, err := s.Put(context.Background(), key, opaqueReader{bytes.NewReader(data)}, int64(len(data)), contentType)
	if err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(data), err)
	}
	return info
}

func get(t *testing.T, s media.Storage, key string, offset, length int64) ([]byte, media.ObjectInfo) {
	t.Helper()
	body, info, err := s.Get(context.Background(), key, offset, length)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): %v", key, offset, length, err)
	}
	defer body.Close()
	data, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("read body of Get(%q, %d, %d): %v", key, offset, length, err)
	}
	return data, info
}

func head(t *testing.T, s media.Storage, key string) media.ObjectInfo {
	t.Helper()
	info, err := s.Head(context.Background(), key)
	if err != nil {
		t.Fatalf("Head(%q): %v", key, err)
	}
	return info
}

// checkInfo compares everything but LastModified, which checkLastModified
// covers.
func checkInfo(t *testing.T, what string, got, want media.ObjectInfo) {
	t.Helper()
	if got.Key != want.Key {
		t.Errorf("%s: Key = %q, want %q", what, got.Key, want.Key)
	}
	if got.Size != want.Size {
		t.Errorf("%s: Size = %d, want %d", what, got.Size, want.Size)
	}
	if got.ContentType != want.ContentType {
		t.Errorf("%s: ContentType = %q, want %q", what, got.ContentType, want.ContentType)
	}
	if got.ETag != want.ETag {
		t.Errorf("%s: ETag = %s, want %s", what, got.ETag, want.ETag)
	}
}

// checkLastModified allows one second of difference, because HTTP dates,
// and so OSS times, have whole seconds.
func checkLastModified(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if diff := got.Sub(want).Abs(); diff > time.Second {
		t.Errorf("%s: LastModified = %s, want within 1s of %s", what, got, want)
	}
}

func testPutGetHead(t *testing.T, s media.Storage) {
	k := key(0, "image/png")
	data := sample(1000, 7)

	before := time.Now()
	info := put(t, s, k, data, "image/png")
	after := time.Now()

	want := media.ObjectInfo{Key: k, Size: int64(len(data)), ContentType: "image/png", ETag: info.ETag}
	checkInfo(t, "Put", info, want)
	if len(info.ETag) < 3 || !strings.HasPrefix(info.ETag, `"`) || !strings.HasSuffix(info.ETag, `"`) {
		t.Errorf("Put: ETag = %s, want a non-empty quoted string", info.ETag)
	}
	if info.LastModified.Before(before.Add(-time.Second)) || info.LastModified.After(after.Add(time.Second)) {
		t.Errorf("Put: LastModified = %s, want between %s and %s", info.LastModified, before, after)
	}

	got, getInfo := get(t, s, k, 0, -1)
	if !bytes.Equal(got, data) {
		t.Errorf("Get returned %d bytes that differ from the %d stored", len(got), len(data))
	}
	checkInfo(t, "Get", getInfo, want)
	checkLastModified(t, "Get", getInfo.LastModified, info.LastModified)

	headInfo := head(t, s, k)
	checkInfo(t, "Head", headInfo, want)
	checkLastModified(t, "Head", headInfo.LastModified, info.LastModified)
}

func testRanges(t *testing.T, s media.Storage) {
	k := key(0, "image/webp")
	data := sample(300, 11)
	info := put(t, s, k, data, "image/webp")

	tests := []struct {
		name           string
		offset, length int64
		want           []byte
	}{
		{"offset and length", 10, 20, data[10:30]},
		{"offset to end", 250, -1, data[250:]},
		{"first byte", 0, 1, data[:1]},
		{"last byte", 299, 1, data[299:]},
		{"last byte to end", 299, -1, data[299:]},
		{"length past end", 290, 100, data[290:]},
		{"length to exact end", 100, 200, data[100:]},
		{"prefix", 0, 150, data[:150]},
		{"zero length", 42, 0, []byte{}},
		{"whole object by length", 0, 300, data},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, gotInfo := get(t, s, k, tt.offset, tt.length)
			if !bytes.Equal(got, tt.want) {
				t.Errorf("Get(%d, %d) returned %d bytes %x..., want %d bytes", tt.offset, tt.length, len(got), head8(got), len(tt.want))
			}
			// Size is the whole object's, also for a partial read.
			checkInfo(t, "Get", gotInfo, info)
		})
	}
}

func head8(data []byte) []byte {
	return data[:min(len(data), 8)]
}

func testInvalidRanges(t *testing.T, s media.Storage) {
	k := key(0, "image/jpeg")
	put(t, s, k, sample(100, 3), "image/jpeg")

	tests := []struct {
		name           string
		offset, length int64
	}{
		{"offset at end", 100, -1},
		{"offset at end with length", 100, 10},
		{"offset past end", 101, 1},
		{"offset far past end", 1 << 40, -1},
		{"negative offset", -1, 10},
		{"zero length past end", 500, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _, err := s.Get(context.Background(), k, tt.offset, tt.length)
			if body != nil {
				body.Close()
			}
			if !errors.Is(err, media.ErrInvalidRange) {
				t.Errorf("Get(%d, %d) error = %v, want ErrInvalidRange", tt.offset, tt.length, err)
			}
		})
	}
}

func testEmptyObject(t *testing.T, s media.Storage) {
	k := key(0, "image/gif")
	info := put(t, s, k, nil, "image/gif")
	if info.Size != 0 {
		t.Errorf("Put: Size = %d, want 0", info.Size)
	}

	for _, length := range []int64{-1, 0, 10} {
		got, gotInfo := get(t, s, k, 0, length)
		if len(got) != 0 {
			t.Errorf("Get(0, %d) returned %d bytes, want 0", length, len(got))
		}
		checkInfo(t, fmt.Sprintf("Get(0, %d)", length), gotInfo, info)
	}
	checkInfo(t, "Head", head(t, s, k), info)

	body, _, err := s.Get(context.Background(), k, 1, -1)
	if body != nil {
		body.Close()
	}
	if !errors.Is(err, media.ErrInvalidRange) {
		t.Errorf("Get(1, -1) of an empty object: error = %v, want ErrInvalidRange", err)
	}
}

func testMissingKey(t *testing.T, s media.Storage) {
	k := key(0, "image/png")
	ctx := context.Background()

	body, _, err := s.Get(ctx, k, 0, -1)
	if body != nil {
		body.Close()
	}
	if !errors.Is(err, media.ErrNotFound) {
		t.Errorf("Get of a missing key: error = %v, want ErrNotFound", err)
	}

	body, _, err = s.Get(ctx, k, 5, 10)
	if body != nil {
		body.Close()
	}
	if !errors.Is(err, media.ErrNotFound) {
		t.Errorf("ranged Get of a missing key: error = %v, want ErrNotFound", err)
	}

	if _, err := s.Head(ctx, k); !errors.Is(err, media.ErrNotFound) {
		t.Errorf("Head of a missing key: error = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, k); err != nil {
		t.Errorf("Delete of a missing key: %v, want nil", err)
	}
}

func testOverwrite(t *testing.T, s media.Storage) {
	k := key(0, "image/png")
	first := sample(500, 1)
	second := sample(200, 2)

	firstInfo := put(t, s, k, first, "image/png")
	secondInfo := put(t, s, k, second, "image/png")
	if secondInfo.ETag == firstInfo.ETag {
		t.Errorf("ETag %s did not change when the bytes changed", secondInfo.ETag)
	}

	got, info := get(t, s, k, 0, -1)
	if !bytes.Equal(got, second) {
		t.Errorf("Get after overwrite returned %d bytes, want the %d bytes of the second Put", len(got), len(second))
	}
	checkInfo(t, "Get after overwrite", info, secondInfo)
	checkInfo(t, "Head after overwrite", head(t, s, k), secondInfo)

	// A retried activity writes the same bytes again.
	again := put(t, s, k, second, "image/png")
	checkInfo(t, "repeated Put", again, secondInfo)
	got, _ = get(t, s, k, 0, -1)
	if !bytes.Equal(got, second) {
		t.Errorf("Get after repeated Put returned %d bytes, want %d", len(got), len(second))
	}
}

func testDelete(t *testing.T, s media.Storage) {
	ctx := context.Background()
	k := key(0, "image/png")
	kept := key(1, "image/png")
	put(t, s, k, sample(64, 5), "image/png")
	keptInfo := put(t, s, kept, sample(64, 6), "image/png")

	if err := s.Delete(ctx, k); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Head(ctx, k); !errors.Is(err, media.ErrNotFound) {
		t.Errorf("Head after Delete: error = %v, want ErrNotFound", err)
	}
	body, _, err := s.Get(ctx, k, 0, -1)
	if body != nil {
		body.Close()
	}
	if !errors.Is(err, media.ErrNotFound) {
		t.Errorf("Get after Delete: error = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, k); err != nil {
		t.Errorf("second Delete: %v, want nil", err)
	}
	checkInfo(t, "Head of the other key", head(t, s, kept), keptInfo)
}

func testContentTypes(t *testing.T, s media.Storage) {
	for i, contentType := range []string{"image/png", "image/jpeg", "image/gif", "image/webp", "application/octet-stream"} {
		t.Run(contentType, func(t *testing.T) {
			k := key(i, contentType)
			put(t, s, k, sample(32, byte(i)), contentType)
			if got := head(t, s, k).ContentType; got != contentType {
				t.Errorf("Head: ContentType = %q, want %q", got, contentType)
			}
			if _, info := get(t, s, k, 0, -1); info.ContentType != contentType {
				t.Errorf("Get: ContentType = %q, want %q", info.ContentType, contentType)
			}
			if _, info := get(t, s, k, 1, 2); info.ContentType != contentType {
				t.Errorf("ranged Get: ContentType = %q, want %q", info.ContentType, contentType)
			}
		})
	}
}

// testShortBody checks that a body with fewer bytes than the size fails and
// leaves no object, and that it does not replace an existing one.
func testShortBody(t *testing.T, s media.Storage) {
	ctx := context.Background()
	fresh := key(0, "image/png")
	_, err := s.Put(ctx, fresh, opaqueReader{bytes.NewReader(sample(50, 1))}, 100, "image/png")
	if err == nil {
		t.Errorf("Put of 50 bytes with size 100 succeeded, want an error")
	}
	if _, err := s.Head(ctx, fresh); !errors.Is(err, media.ErrNotFound) {
		t.Errorf("Head after a failed Put: error = %v, want ErrNotFound", err)
	}

	existing := key(1, "image/png")
	data := sample(80, 9)
	info := put(t, s, existing, data, "image/png")
	if _, err := s.Put(ctx, existing, opaqueReader{bytes.NewReader(sample(10, 2))}, 80, "image/png"); err == nil {
		t.Errorf("overwrite with 10 bytes and size 80 succeeded, want an error")
	}
	got, gotInfo := get(t, s, existing, 0, -1)
	if !bytes.Equal(got, data) {
		t.Errorf("Get after a failed overwrite returned %d bytes, want the %d bytes of the first Put", len(got), len(data))
	}
	checkInfo(t, "Get after a failed overwrite", gotInfo, info)
}

func testSeparateKeys(t *testing.T, s media.Storage) {
	first := key(0, "image/png")
	second := key(1, "image/png")
	firstData := sample(120, 1)
	secondData := sample(90, 2)
	put(t, s, first, firstData, "image/png")
	put(t, s, second, secondData, "image/png")

	if got, _ := get(t, s, first, 0, -1); !bytes.Equal(got, firstData) {
		t.Errorf("Get(%q) returned the wrong %d bytes", first, len(got))
	}
	if got, _ := get(t, s, second, 0, -1); !bytes.Equal(got, secondData) {
		t.Errorf("Get(%q) returned the wrong %d bytes", second, len(got))
	}
}

package media

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testPNG encodes a width×height PNG of random pixels, which barely
// compress, so the file is a little over width*height*4 bytes.
func testPNG(t testing.TB, width, height int, seed uint64) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, width, height))
	rng := rand.New(rand.NewPCG(seed, seed+1))
	for i := range img.Pix {
		img.Pix[i] = byte(rng.Uint32())
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testJPEG(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, image.NewGray(image.Rect(0, 0, 8, 8)), nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func testGIF(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	img := image.NewPaletted(image.Rect(0, 0, 4, 4), color.Palette{color.Black, color.White})
	if err := gif.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testWebP is the start of a WebP file: a RIFF header and a VP8 chunk tag,
// which is what content sniffing looks at.
var testWebP = []byte("RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00\x30\x01\x00\x9d\x01\x2a\x01\x00\x01\x00")

func newTestLocal(t testing.TB) (*Local, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "media")
	local, err := NewLocal(dir)
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}
	t.Cleanup(func() { _ = local.Close() })
	return local, dir
}

func putObject(t testing.TB, storage Storage, key string, data []byte) ObjectInfo {
	t.Helper()
	info, err := storage.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), "image/png")
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return info
}

func readBody(t testing.TB, body io.ReadCloser) []byte {
	t.Helper()
	defer body.Close()
	data, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// tempFiles lists the leftover temporary files of Put under dir.
func tempFiles(t testing.TB, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(entry.Name(), ".tmp-") {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestNewLocalCreatesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	local, err := NewLocal(dir)
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}
	defer local.Close()
	if stat, err := os.Stat(dir); err != nil || !stat.IsDir() {
		t.Errorf("NewLocal did not create %s: %v", dir, err)
	}
	if local.Name() != "local" {
		t.Errorf("Name = %q, want local", local.Name())
	}
	if _, err := NewLocal(""); err == nil {
		t.Error("NewLocal(\"\") succeeded, want an error")
	}
}

func TestLocalPutGetHead(t *testing.T) {
	local, dir := newTestLocal(t)
	cases := []struct {
		name            string
		data            []byte
		wantContentType string
	}{
		{"png", testPNG(t, 32, 32, 1), "image/png"},
		{"jpeg", testJPEG(t), "image/jpeg"},
		{"gif", testGIF(t), "image/gif"},
		{"webp", testWebP, "image/webp"},
		{"html", []byte("<html><script>alert(1)</script></html>"), "application/octet-stream"},
		{"empty", nil, "application/octet-stream"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := "aihigress/images/2026/12/05/" + tc.name + ".bin"
			info := putObject(t, local, key, tc.data)
			if info.Key != key || info.Size != int64(len(tc.data)) || info.ContentType != tc.wantContentType {
				t.Errorf("Put info = %+v, want key %q, size %d, type %q", info, key, len(tc.data), tc.wantContentType)
			}
			if !strings.HasPrefix(info.ETag, `"`) || !strings.HasSuffix(info.ETag, `"`) || len(info.ETag) < 3 {
				t.Errorf("ETag %q is not a quoted string", info.ETag)
			}
			if info.LastModified.IsZero() {
				t.Error("LastModified is zero")
			}

			head, err := local.Head(context.Background(), key)
			if err != nil {
				t.Fatalf("Head: %v", err)
			}
			if head != info {
				t.Errorf("Head = %+v, want the Put info %+v", head, info)
			}

			body, getInfo, err := local.Get(context.Background(), key, 0, -1)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if _, ok := body.(*os.File); !ok {
				t.Errorf("Get with length -1 returned %T, want *os.File for sendfile", body)
			}
			if got := readBody(t, body); !bytes.Equal(got, tc.data) {
				t.Errorf("Get returned %d bytes that differ from the %d stored", len(got), len(tc.data))
			}
			if getInfo != info {
				t.Errorf("Get info = %+v, want %+v", getInfo, info)
			}

			onDisk, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(key)))
			if err != nil || !bytes.Equal(onDisk, tc.data) {
				t.Errorf("the file at the key's path differs from the data: %v", err)
			}
		})
	}
}

func TestLocalGetRange(t *testing.T) {
	local, _ := newTestLocal(t)
	data := testPNG(t, 16, 16, 2)
	size := int64(len(data))
	key := "aihigress/images/range.png"
	putObject(t, local, key, data)

	cases := []struct {
		name           string
		offset, length int64
		want           []byte
		wantErr        bool
	}{
		{"whole", 0, -1, data, false},
		{"from offset to end", 100, -1, data[100:], false},
		{"bounded", 10, 20, data[10:30], false},
		{"length past end", size - 5, 100, data[size-5:], false},
		{"zero length", 10, 0, []byte{}, false},
		{"offset at end", size, -1, nil, true},
		{"offset past end", size + 1, -1, nil, true},
		{"negative offset", -1, 10, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body, _, err := local.Get(context.Background(), key, tc.offset, tc.length)
			if tc.wantErr {
				if err == nil {
					body.Close()
					t.Fatalf("Get(%d, %d) succeeded, want an error", tc.offset, tc.length)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get(%d, %d): %v", tc.offset, tc.length, err)
			}
			if got := readBody(t, body); !bytes.Equal(got, tc.want) {
				t.Errorf("Get(%d, %d) returned %d bytes, want %d", tc.offset, tc.length, len(got), len(tc.want))
			}
		})
	}
}

func TestLocalOverwriteIsAtomic(t *testing.T) {
	local, dir := newTestLocal(t)
	key := "aihigress/images/overwrite.png"
	first := testPNG(t, 64, 64, 3)
	second := testPNG(t, 80, 80, 4)
	putObject(t, local, key, first)

	// Readers run while a writer replaces the object back and forth. Every
	// read must see one version whole.
	ctx := context.Background()
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var mixed, reads int
	var mu sync.Mutex
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				body, _, err := local.Get(ctx, key, 0, -1)
				if err != nil {
					t.Errorf("Get during overwrite: %v", err)
					return
				}
				got := readBody(t, body)
				mu.Lock()
				reads++
				if !bytes.Equal(got, first) && !bytes.Equal(got, second) {
					mixed++
				}
				mu.Unlock()
			}
		})
	}
	for i := range 20 {
		data := first
		if i%2 == 0 {
			data = second
		}
		putObject(t, local, key, data)
	}
	close(stop)
	readers.Wait()

	if mixed > 0 {
		t.Errorf("%d of %d reads saw a partial or mixed object", mixed, reads)
	}
	body, _, err := local.Get(ctx, key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, body); !bytes.Equal(got, first) {
		t.Error("the last Put did not win")
	}
	if leftovers := tempFiles(t, dir); len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

func TestLocalETagStableAcrossInstances(t *testing.T) {
	local, dir := newTestLocal(t)
	key := "aihigress/images/etag.png"
	info := putObject(t, local, key, testPNG(t, 8, 8, 5))

	reopened, err := NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	head, err := reopened.Head(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if head.ETag != info.ETag {
		t.Errorf("ETag after reopening = %s, want %s", head.ETag, info.ETag)
	}
	if !head.LastModified.Equal(info.LastModified) {
		t.Errorf("LastModified after reopening = %s, want %s", head.LastModified, info.LastModified)
	}

	replaced := putObject(t, local, key, testPNG(t, 9, 9, 6))
	if replaced.ETag == info.ETag {
		t.Errorf("ETag %s did not change when a larger object replaced the old one", info.ETag)
	}
}

func TestLocalPutRejectsWrongSize(t *testing.T) {
	local, dir := newTestLocal(t)
	key := "aihigress/images/size.png"
	original := testPNG(t, 8, 8, 7)
	putObject(t, local, key, original)

	replacement := testPNG(t, 8, 8, 8)
	cases := []struct {
		name string
		size int64
	}{
		{"body shorter than size", int64(len(replacement)) + 10},
		{"body longer than size", int64(len(replacement)) - 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := local.Put(context.Background(), key, bytes.NewReader(replacement), tc.size, "image/png")
			if err == nil {
				t.Fatal("Put succeeded, want a size error")
			}
			body, _, err := local.Get(context.Background(), key, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			if got := readBody(t, body); !bytes.Equal(got, original) {
				t.Error("a failed Put changed the stored object")
			}
			if leftovers := tempFiles(t, dir); len(leftovers) > 0 {
				t.Errorf("temporary files left behind: %v", leftovers)
			}
		})
	}

	unknownSize := testPNG(t, 4, 4, 9)
	info, err := local.Put(context.Background(), "aihigress/images/unknown.png", bytes.NewReader(unknownSize), -1, "image/png")
	if err != nil || info.Size != int64(len(unknownSize)) {
		t.Errorf("Put with size -1 = %+v, %v; want size %d", info, err, len(unknownSize))
	}
}

func TestLocalPutCanceled(t *testing.T) {
	local, dir := newTestLocal(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	data := testPNG(t, 8, 8, 10)
	key := "aihigress/images/canceled.png"
	if _, err := local.Put(ctx, key, bytes.NewReader(data), int64(len(data)), "image/png"); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a canceled context = %v, want context.Canceled", err)
	}
	if _, err := local.Head(context.Background(), key); !errors.Is(err, ErrNotFound) {
		t.Errorf("Head after a canceled Put = %v, want ErrNotFound", err)
	}
	if leftovers := tempFiles(t, dir); len(leftovers) > 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}

func TestLocalRejectsInvalidKeys(t *testing.T) {
	local, dir := newTestLocal(t)
	parent := filepath.Dir(dir)
	data := testPNG(t, 4, 4, 11)
	keys := []string{
		"",
		"../escape.png",
		"aihigress/../../escape.png",
		"aihigress/..",
		"/etc/passwd",
		filepath.Join(parent, "escape.png"),
		`aihigress\..\..\escape.png`,
		"aihigress//x.png",
		"aihigress/x.png/",
		"aihigress/./x.png",
		"aihigress/.tmp-x",
		"aihigress/x\x00.png",
		"aihigress/x\r\n.png",
		"aihigress/x\xff.png",
	}
	ctx := context.Background()
	for _, key := range keys {
		t.Run(key, func(t *testing.T) {
			if _, err := local.Put(ctx, key, bytes.NewReader(data), int64(len(data)), "image/png"); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("Put = %v, want ErrInvalidKey", err)
			}
			if _, _, err := local.Get(ctx, key, 0, -1); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("Get = %v, want ErrInvalidKey", err)
			}
			if _, err := local.Head(ctx, key); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("Head = %v, want ErrInvalidKey", err)
			}
			if err := local.Delete(ctx, key); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("Delete = %v, want ErrInvalidKey", err)
			}
		})
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, entry := range entries {
		if entry.Name() != "media" {
			t.Errorf("a Put created %s outside the storage directory", entry.Name())
		}
	}
}

func TestLocalNotFound(t *testing.T) {
	local, _ := newTestLocal(t)
	putObject(t, local, "aihigress/images/file.png", testPNG(t, 4, 4, 12))
	ctx := context.Background()
	keys := []struct{ name, key string }{
		{"missing file", "aihigress/images/missing.png"},
		{"missing folder", "aihigress/none/x.png"},
		{"folder", "aihigress/images"},
		{"path through a file", "aihigress/images/file.png/x.png"},
	}
	for _, tc := range keys {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := local.Head(ctx, tc.key); !errors.Is(err, ErrNotFound) {
				t.Errorf("Head = %v, want ErrNotFound", err)
			}
			if _, _, err := local.Get(ctx, tc.key, 0, -1); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestLocalDelete(t *testing.T) {
	local, dir := newTestLocal(t)
	ctx := context.Background()
	key := "aihigress/images/delete.png"
	putObject(t, local, key, testPNG(t, 4, 4, 13))

	steps := []struct {
		name string
		key  string
	}{
		{"existing object", key},
		{"deleted object again", key},
		{"never stored", "aihigress/images/never.png"},
		{"folder", "aihigress/images"},
	}
	for _, step := range steps {
		if err := local.Delete(ctx, step.key); err != nil {
			t.Errorf("Delete %s: %v", step.name, err)
		}
	}
	if _, err := local.Head(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Errorf("Head after Delete = %v, want ErrNotFound", err)
	}
	if stat, err := os.Stat(filepath.Join(dir, "aihigress", "images")); err != nil || !stat.IsDir() {
		t.Errorf("Delete of a folder key removed the folder: %v", err)
	}
}

func TestLocalSymlinkOutsideIsNotServed(t *testing.T) {
	local, dir := newTestLocal(t)
	outside := filepath.Join(filepath.Dir(dir), "outside.png")
	if err := os.WriteFile(outside, testPNG(t, 4, 4, 14), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "aihigress"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "aihigress", "link.png")); err != nil {
		t.Skipf("symbolic links unavailable: %v", err)
	}
	body, _, err := local.Get(context.Background(), "aihigress/link.png", 0, -1)
	if err == nil {
		body.Close()
		t.Fatal("Get followed a symbolic link out of the storage directory")
	}
}

func TestLocalClosed(t *testing.T) {
	local, _ := newTestLocal(t)
	key := "aihigress/images/closed.png"
	putObject(t, local, key, testPNG(t, 4, 4, 15))
	if err := local.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := local.Head(context.Background(), key)
	if err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Head on a closed storage = %v, want an error other than ErrNotFound", err)
	}
}

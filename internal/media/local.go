package media

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
	"syscall"
)

// sniffLength is how many leading bytes DetectContentType looks at.
const sniffLength = 512

// Local stores objects as files in a directory, one file per key at the
// key's relative path. It is safe for concurrent use.
//
// The content type is not stored. Head and Get detect it from the file's
// first 512 bytes, or take it from the key's extension, which ObjectKey
// chooses from the content type, when the bytes are of no known type. The contentType passed to Put is
// therefore ignored. The ETag is the size and modification time in
// nanoseconds, which stay the same across processes and restarts and change
// when Put replaces the file with other bytes.
type Local struct {
	// root confines every file operation to dir, including through
	// symbolic links, on top of the checks of checkObjectKey.
	root *os.Root
}

// NewLocal returns a Local storage in dir, creating dir if needed.
func NewLocal(dir string) (*Local, error) {
	if dir == "" {
		return nil, errors.New("local media storage: the directory is empty; set IMAGE_LOCAL_DIR")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("local media storage: create %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("local media storage: open %s: %w", dir, err)
	}
	return &Local{root: root}, nil
}

// Name returns "local".
func (l *Local) Name() string { return "local" }

// Close releases the directory handle. The storage is unusable afterwards.
func (l *Local) Close() error { return l.root.Close() }

// Put writes body to a temporary file beside the object, syncs it and
// renames it over the key, so readers see the old object or the new one and
// never a partial file. A size of -1 reads body to EOF. Otherwise body must
// hold exactly size bytes.
func (l *Local) Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) (ObjectInfo, error) {
	if err := checkObjectKey(key); err != nil {
		return ObjectInfo{}, fmt.Errorf("put %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, fmt.Errorf("put %q: %w", key, err)
	}
	dir := path.Dir(key)
	if err := l.root.MkdirAll(dir, 0o755); err != nil {
		return ObjectInfo{}, fmt.Errorf("put %q: create folder: %w", key, err)
	}

	// checkObjectKey rejects segments that start with '.', so no key can
	// name a temporary file.
	tempName := path.Join(dir, ".tmp-"+rand.Text())
	file, err := l.root.OpenFile(tempName, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %q: create temporary file: %w", key, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			_ = file.Close()
			_ = l.root.Remove(tempName)
		}
	}()

	info, err := l.writeFile(ctx, file, key, body, size)
	if err != nil {
		return ObjectInfo{}, err
	}
	// A retried activity writes the same bytes again. Keeping the file
	// keeps its ETag, so clients' cached copies stay valid.
	if existing, same := l.sameObject(key, file, info.Size); same {
		return existing, nil
	}
	if err := l.root.Rename(tempName, key); err != nil {
		return ObjectInfo{}, fmt.Errorf("put %q: rename temporary file: %w", key, err)
	}
	renamed = true
	_ = file.Close()

	// The rename is durable only once the folder's entry is on disk.
	if err := l.syncDir(dir); err != nil {
		return ObjectInfo{}, fmt.Errorf("put %q: %w", key, err)
	}
	return info, nil
}

// writeFile copies body into the temporary file, syncs it and describes it.
func (l *Local) writeFile(ctx context.Context, file *os.File, key string, body io.Reader, size int64) (ObjectInfo, error) {
	reader := io.Reader(contextReader{ctx: ctx, reader: body})
	if size >= 0 {
		// One byte more than size shows a body that is too long.
		reader = io.LimitReader(reader, size+1)
	}
	written, err := io.Copy(file, reader)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %q: write: %w", key, err)
	}
	if size >= 0 && written != size {
		return ObjectInfo{}, fmt.Errorf("put %q: the body has %d bytes or more, but size is %d", key, written, size)
	}
	if err := file.Sync(); err != nil {
		return ObjectInfo{}, fmt.Errorf("put %q: sync: %w", key, err)
	}
	return describeFile(file, key)
}

// sameObject reports whether the object at key has the bytes of the size
// bytes in written, and describes it when it does.
func (l *Local) sameObject(key string, written *os.File, size int64) (ObjectInfo, bool) {
	existing, err := l.root.Open(key)
	if err != nil {
		return ObjectInfo{}, false
	}
	defer existing.Close()
	info, err := describeFile(existing, key)
	if err != nil || info.Size != size {
		return ObjectInfo{}, false
	}
	a, b := make([]byte, 64<<10), make([]byte, 64<<10)
	for offset := int64(0); offset < size; {
		n, errA := existing.ReadAt(a, offset)
		m, errB := written.ReadAt(b[:n], offset)
		if n == 0 || m != n || !bytes.Equal(a[:n], b[:m]) {
			return ObjectInfo{}, false
		}
		offset += int64(n)
		if (errA != nil && !errors.Is(errA, io.EOF)) || (errB != nil && !errors.Is(errB, io.EOF)) {
			return ObjectInfo{}, false
		}
	}
	return info, true
}

func (l *Local) syncDir(dir string) error {
	handle, err := l.root.Open(dir)
	if err != nil {
		return fmt.Errorf("open folder to sync: %w", err)
	}
	defer handle.Close()
	if err := handle.Sync(); err != nil {
		return fmt.Errorf("sync folder: %w", err)
	}
	return nil
}

// Get opens the object and seeks to offset. With length < 0 it returns the
// *os.File itself, so that io.Copy to an http.ResponseWriter uses sendfile.
// Otherwise it returns a reader of at most length bytes that also reaches
// sendfile when copied (see fileSection).
func (l *Local) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, ObjectInfo, error) {
	file, info, err := l.open(ctx, key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	if offset < 0 || (offset > 0 && offset >= info.Size) {
		_ = file.Close()
		return nil, ObjectInfo{}, fmt.Errorf("get %q: offset %d is outside the object of %d bytes: %w", key, offset, info.Size, ErrInvalidRange)
	}
	if offset > 0 {
		if _, err := file.Seek(offset, io.SeekStart); err != nil {
			_ = file.Close()
			return nil, ObjectInfo{}, fmt.Errorf("get %q: seek: %w", key, err)
		}
	}
	if length < 0 {
		return file, info, nil
	}
	return &fileSection{LimitedReader: io.LimitedReader{R: file, N: min(length, info.Size-offset)}, file: file}, info, nil
}

// Head describes the object.
func (l *Local) Head(ctx context.Context, key string) (ObjectInfo, error) {
	file, info, err := l.open(ctx, key)
	if err != nil {
		return ObjectInfo{}, err
	}
	_ = file.Close()
	return info, nil
}

// Delete removes the object. Deleting a missing object succeeds, so that a
// retried cleanup does not fail.
func (l *Local) Delete(ctx context.Context, key string) error {
	if err := checkObjectKey(key); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	stat, err := l.root.Lstat(key)
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	if stat.IsDir() {
		// A folder on the way to other objects is not an object.
		return nil
	}
	if err := l.root.Remove(key); err != nil && !isNotExist(err) {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	return nil
}

// open opens the object's file and describes it. A missing file, a folder
// and a path through a file all return ErrNotFound.
func (l *Local) open(ctx context.Context, key string) (*os.File, ObjectInfo, error) {
	if err := checkObjectKey(key); err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("open %q: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("open %q: %w", key, err)
	}
	file, err := l.root.Open(key)
	if isNotExist(err) {
		return nil, ObjectInfo{}, fmt.Errorf("open %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("open %q: %w", key, err)
	}
	info, err := describeFile(file, key)
	if err != nil {
		_ = file.Close()
		return nil, ObjectInfo{}, err
	}
	return file, info, nil
}

// describeFile stats the open file and detects its content type from its
// first bytes with ReadAt, which leaves the file offset alone.
func describeFile(file *os.File, key string) (ObjectInfo, error) {
	stat, err := file.Stat()
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("stat %q: %w", key, err)
	}
	if !stat.Mode().IsRegular() {
		return ObjectInfo{}, fmt.Errorf("open %q: not a regular file: %w", key, ErrNotFound)
	}
	var head [sniffLength]byte
	n, err := file.ReadAt(head[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return ObjectInfo{}, fmt.Errorf("read %q: %w", key, err)
	}
	// NOTE: two writes of the same size within one tick of the file
	// system's clock share an ETag. Put's only overwrites are retries of
	// the same image, which have the same bytes anyway.
	return ObjectInfo{
		Key:          key,
		Size:         stat.Size(),
		ContentType:  contentTypeOf(key, head[:n]),
		ETag:         fmt.Sprintf(`"%x-%x"`, stat.Size(), stat.ModTime().UnixNano()),
		LastModified: stat.ModTime(),
	}, nil
}

// contentTypeOf returns the image type detected from head. When head is
// binary of no known type, it returns the type that the key's extension
// names, as ObjectKey derives it. Text, such as HTML, is never passed off
// as an image.
func contentTypeOf(key string, head []byte) string {
	if detected := DetectContentType(head); detected != "application/octet-stream" || isText(head) {
		return detected
	}
	switch path.Ext(key) {
	case ".png":
		return "image/png"
	case ".jpg":
		return "image/jpeg"
	case ".gif":
		return "image/gif"
	case ".webp":
		return "image/webp"
	default:
		return "application/octet-stream"
	}
}

// isText reports whether net/http's sniffer detects text in head.
func isText(head []byte) bool {
	return strings.HasPrefix(http.DetectContentType(head), "text/")
}

// isNotExist reports whether err means that the key names no file,
// including when a segment before the last is a file (ENOTDIR).
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// fileSection reads a bounded part of a file. Copying it with io.Copy calls
// WriteTo, which hands an *io.LimitedReader over the *os.File to the
// destination's ReadFrom; a TCP connection unwraps that pair into sendfile.
type fileSection struct {
	io.LimitedReader
	file *os.File
}

// WriteTo copies the rest of the section to w.
func (s *fileSection) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, &s.LimitedReader)
}

// Close closes the file.
func (s *fileSection) Close() error { return s.file.Close() }

// contextReader stops a copy once ctx is done.
type contextReader struct {
	ctx    context.Context
	reader io.Reader
}

func (r contextReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.reader.Read(p)
}

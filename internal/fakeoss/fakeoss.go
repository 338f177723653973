// Package fakeoss is an in-memory Aliyun OSS server for tests and
// benchmarks. It serves one bucket on 127.0.0.1 with path-style URLs
// (http://127.0.0.1:port/<bucket>/<key>), which is what the Go SDK sends to
// an IP endpoint, and implements PutObject, GetObject (with Range),
// HeadObject and DeleteObject.
//
// Every request must carry a V1 signature (Authorization: OSS <id>:<sig>),
// the scheme that github.com/aliyun/aliyun-oss-go-sdk v3.0.2 uses by
// default, or, when Options.Region is set, a V4 signature
// (OSS4-HMAC-SHA256) for that region. The server checks it the way OSS
// does, so a wrong key ID, a wrong secret, a wrong region or a changed
// request gets a 403 with an OSS XML error.
package fakeoss

import (
	"errors"
	"fmt"
	"hash/crc64"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultMaxObjectSize is the PutObject body limit when
// Options.MaxObjectSize is zero. Objects live in memory.
const DefaultMaxObjectSize = 64 << 20

// maxClockSkew is how far a request's Date may be from the server clock.
// OSS rejects requests more than 15 minutes off with RequestTimeTooSkewed.
const maxClockSkew = 15 * time.Minute

// Options configures a Server.
type Options struct {
	AccessKeyID     string
	AccessKeySecret string
	Bucket          string
	// Region, such as cn-hangzhou, is the region that V4 signatures must
	// name. Empty rejects V4 signatures.
	Region string
	// MaxObjectSize caps a PutObject body in bytes. Zero means
	// DefaultMaxObjectSize.
	MaxObjectSize int64
	// Now is the server clock, used for the Date check and Last-Modified.
	// Nil means time.Now.
	Now func() time.Time
}

// Object is a stored object as the server keeps it.
type Object struct {
	Data        []byte
	ContentType string
	// ETag is quoted upper-case hex MD5 of Data, as OSS sets it for an
	// object from a single PutObject.
	ETag         string
	LastModified time.Time
	// CRC64 is the CRC-64/ECMA-182 checksum that OSS returns in
	// x-oss-hash-crc64ecma.
	CRC64 uint64
}

// Counts is the number of requests the server has handled since it started.
// Put, Get, Head and Delete count requests that passed authentication,
// whatever their outcome. AuthFailures counts requests rejected with 403
// before they reached an operation.
type Counts struct {
	Put, Get, Head, Delete int
	AuthFailures           int
	// SignedV1 and SignedV4 count the authenticated requests by the
	// version of their signature.
	SignedV1, SignedV4 int
}

// Server is a running fake OSS server.
type Server struct {
	opts     Options
	url      string
	http     *http.Server
	serveErr chan error
	crcTable *crc64.Table

	closeOnce sync.Once
	closeErr  error

	mu        sync.Mutex
	objects   map[string]Object
	counts    Counts
	requestID uint64
}

// New starts a server on a free port of 127.0.0.1. Call Close when done.
func New(opts Options) (*Server, error) {
	if opts.AccessKeyID == "" || opts.AccessKeySecret == "" || opts.Bucket == "" {
		return nil, errors.New("fakeoss: AccessKeyID, AccessKeySecret and Bucket are required")
	}
	if opts.MaxObjectSize == 0 {
		opts.MaxObjectSize = DefaultMaxObjectSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fakeoss: listen on 127.0.0.1: %w", err)
	}
	s := &Server{
		opts:     opts,
		url:      "http://" + listener.Addr().String(),
		serveErr: make(chan error, 1),
		crcTable: crc64.MakeTable(crc64.ECMA),
		objects:  make(map[string]Object),
	}
	s.http = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { s.serveErr <- s.http.Serve(listener) }()
	return s, nil
}

// Start starts a server like New and closes it when tb's test ends.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close fake OSS: %v", err)
		}
	})
	return s
}

// URL returns the endpoint to give the SDK, such as http://127.0.0.1:41234.
func (s *Server) URL() string {
	return s.url
}

// Close stops the server and drops open connections. Later calls return
// the first call's result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.http.Close()
		if serveErr := <-s.serveErr; !errors.Is(serveErr, http.ErrServerClosed) {
			s.closeErr = fmt.Errorf("fakeoss: serve on %s: %w", s.url, serveErr)
		}
	})
	return s.closeErr
}

// Object returns a copy of the object stored under key.
func (s *Server) Object(key string) (Object, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	obj, ok := s.objects[key]
	obj.Data = slices.Clone(obj.Data)
	return obj, ok
}

// Keys returns the stored keys in sorted order.
func (s *Server) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.objects))
	for key := range s.objects {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return keys
}

// Counts returns the request counts so far.
func (s *Server) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// PutObject stores a copy of data under key without a request, as the
// PutObject operation would at the server's current time, and returns a
// copy of the stored object.
func (s *Server) PutObject(key string, data []byte, contentType string) Object {
	obj := s.newObject(slices.Clone(data), contentType)
	s.mu.Lock()
	s.objects[key] = obj
	s.mu.Unlock()

	obj.Data = slices.Clone(obj.Data)
	return obj
}

// CorruptObject flips the bits of the first byte of key's data but keeps
// its ETag and CRC64, so that a client that checks the CRC of a download
// detects a mismatch. It reports whether the object exists and is not empty.
func (s *Server) CorruptObject(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	obj, ok := s.objects[key]
	if !ok || len(obj.Data) == 0 {
		return false
	}
	obj.Data = slices.Clone(obj.Data)
	obj.Data[0] ^= 0xff
	s.objects[key] = obj
	return true
}

// newObject takes ownership of data.
func (s *Server) newObject(data []byte, contentType string) Object {
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	return Object{
		Data:         data,
		ContentType:  contentType,
		ETag:         `"` + strings.ToUpper(md5Hex(data)) + `"`,
		LastModified: s.opts.Now().UTC().Truncate(time.Second),
		CRC64:        crc64.Checksum(data, s.crcTable),
	}
}

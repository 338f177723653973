package fakeoss_test

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/aihigress/aihigress/internal/fakeoss"
)

const (
	bucketName = "aih-fake"
	keyID      = "LTAI-fake-id"
	keySecret  = "fake-secret-0123456789"
)

// region is the region of the servers that check V4 signatures.
const region = "cn-hangzhou"

func start(t *testing.T) *fakeoss.Server {
	t.Helper()
	return fakeoss.Start(t, fakeoss.Options{AccessKeyID: keyID, AccessKeySecret: keySecret, Bucket: bucketName})
}

// startV4 starts a server that also checks V4 signatures for region.
func startV4(t *testing.T) *fakeoss.Server {
	t.Helper()
	return fakeoss.Start(t, fakeoss.Options{AccessKeyID: keyID, AccessKeySecret: keySecret, Bucket: bucketName, Region: region})
}

// v4Options make the SDK sign with V4 for region.
func v4Options() []oss.ClientOption {
	return []oss.ClientOption{oss.AuthVersion(oss.AuthV4), oss.Region(region)}
}

func sdkBucket(t *testing.T, server *fakeoss.Server, id, secret string, options ...oss.ClientOption) *oss.Bucket {
	t.Helper()
	client, err := oss.New(server.URL(), id, secret, options...)
	if err != nil {
		t.Fatalf("oss.New: %v", err)
	}
	bucket, err := client.Bucket(bucketName)
	if err != nil {
		t.Fatalf("Bucket: %v", err)
	}
	return bucket
}

func serviceError(t *testing.T, err error) oss.ServiceError {
	t.Helper()
	var serviceErr oss.ServiceError
	if !errors.As(err, &serviceErr) {
		t.Fatalf("error = %v (%T), want an oss.ServiceError", err, err)
	}
	return serviceErr
}

func TestSDKRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		start   func(*testing.T) *fakeoss.Server
		options []oss.ClientOption
		want    fakeoss.Counts
	}{
		{"V1", start, nil, fakeoss.Counts{Put: 1, Get: 1, Head: 1, Delete: 2, SignedV1: 5}},
		{"V4", startV4, v4Options(), fakeoss.Counts{Put: 1, Get: 1, Head: 1, Delete: 2, SignedV4: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := tt.start(t)
			roundTrip(t, server, sdkBucket(t, server, keyID, keySecret, tt.options...))
			if got := server.Counts(); got != tt.want {
				t.Errorf("Counts = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// roundTrip puts, reads, heads and deletes (twice) one object.
func roundTrip(t *testing.T, server *fakeoss.Server, bucket *oss.Bucket) {
	t.Helper()
	data := []byte("123456789")

	if err := bucket.PutObject("dir/check.bin", bytes.NewReader(data), oss.ContentType("image/png")); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	stored, ok := server.Object("dir/check.bin")
	if !ok {
		t.Fatalf("no object stored, keys %v", server.Keys())
	}
	// 0x995DC9BBDF1939FA is the published CRC-64/XZ check value of
	// "123456789". The SDK compared the same value with its own while
	// uploading.
	if stored.CRC64 != 0x995DC9BBDF1939FA {
		t.Errorf("CRC64 = %#x, want 0x995DC9BBDF1939FA", stored.CRC64)
	}
	sum := md5.Sum(data)
	if want := `"` + strings.ToUpper(hex.EncodeToString(sum[:])) + `"`; stored.ETag != want {
		t.Errorf("ETag = %s, want %s", stored.ETag, want)
	}

	body, err := bucket.GetObject("dir/check.bin")
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	got, err := io.ReadAll(body)
	body.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("GetObject = %q, %v, want %q", got, err, data)
	}

	meta, err := bucket.GetObjectDetailedMeta("dir/check.bin")
	if err != nil {
		t.Fatalf("GetObjectDetailedMeta: %v", err)
	}
	for name, want := range map[string]string{
		"Content-Length": "9", "Content-Type": "image/png", "ETag": stored.ETag,
		"Last-Modified": stored.LastModified.Format(http.TimeFormat),
	} {
		if got := meta.Get(name); got != want {
			t.Errorf("HEAD %s = %q, want %q", name, got, want)
		}
	}

	for range 2 {
		if err := bucket.DeleteObject("dir/check.bin"); err != nil {
			t.Errorf("DeleteObject: %v", err)
		}
	}
	if keys := server.Keys(); len(keys) != 0 {
		t.Errorf("keys after delete = %v, want none", keys)
	}
}

func TestSDKErrors(t *testing.T) {
	tests := []struct {
		name         string
		serverRegion string
		id, secret   string
		options      []oss.ClientOption
		serverNow    time.Duration
		wantStatus   int
		wantCode     string
	}{
		{"wrong secret", "", keyID, "wrong-secret", nil, 0, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"wrong key id", "", "LTAI-other", keySecret, nil, 0, http.StatusForbidden, "InvalidAccessKeyId"},
		{"clock skew", "", keyID, keySecret, nil, time.Hour, http.StatusForbidden, "RequestTimeTooSkewed"},
		{"v4 without a server region", "", keyID, keySecret, v4Options(), 0, http.StatusBadRequest, "InvalidArgument"},
		{"v4 wrong secret", region, keyID, "wrong-secret", v4Options(), 0, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"v4 wrong key id", region, "LTAI-other", keySecret, v4Options(), 0, http.StatusForbidden, "InvalidAccessKeyId"},
		{"v4 wrong region", region, keyID, keySecret, []oss.ClientOption{oss.AuthVersion(oss.AuthV4), oss.Region("cn-shanghai")}, 0, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"v4 clock skew", region, keyID, keySecret, v4Options(), time.Hour, http.StatusForbidden, "RequestTimeTooSkewed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := fakeoss.Start(t, fakeoss.Options{
				AccessKeyID: keyID, AccessKeySecret: keySecret, Bucket: bucketName, Region: tt.serverRegion,
				Now: func() time.Time { return time.Now().Add(tt.serverNow) },
			})
			server.PutObject("existing.png", []byte("keep"), "image/png")
			bucket := sdkBucket(t, server, tt.id, tt.secret, tt.options...)

			err := bucket.PutObject("new.png", strings.NewReader("data"))
			serviceErr := serviceError(t, err)
			if serviceErr.StatusCode != tt.wantStatus || serviceErr.Code != tt.wantCode {
				t.Errorf("PutObject error = %d %s, want %d %s", serviceErr.StatusCode, serviceErr.Code, tt.wantStatus, tt.wantCode)
			}

			_, err = bucket.GetObjectDetailedMeta("existing.png")
			if serviceErr := serviceError(t, err); serviceErr.Code != tt.wantCode {
				t.Errorf("HEAD error code = %q, want %q from x-oss-err", serviceErr.Code, tt.wantCode)
			}

			if err := bucket.DeleteObject("existing.png"); err == nil {
				t.Errorf("DeleteObject succeeded, want %s", tt.wantCode)
			}
			if keys := server.Keys(); len(keys) != 1 || keys[0] != "existing.png" {
				t.Errorf("keys = %v, want only existing.png", keys)
			}
			if got := server.Counts(); got.AuthFailures != 3 || got.Put+got.Get+got.Head+got.Delete != 0 {
				t.Errorf("Counts = %+v, want 3 auth failures and no operations", got)
			}
		})
	}
}

func TestSDKObjectErrors(t *testing.T) {
	server := fakeoss.Start(t, fakeoss.Options{AccessKeyID: keyID, AccessKeySecret: keySecret, Bucket: bucketName, MaxObjectSize: 16})
	bucket := sdkBucket(t, server, keyID, keySecret)
	otherBucket, err := bucket.Client.Bucket("other-bucket")
	if err != nil {
		t.Fatal(err)
	}
	badMD5 := base64.StdEncoding.EncodeToString(make([]byte, md5.Size))

	tests := []struct {
		name       string
		call       func() error
		wantStatus int
		wantCode   string
	}{
		{"get missing key", func() error { _, err := bucket.GetObject("missing.png"); return err }, http.StatusNotFound, "NoSuchKey"},
		{"head missing key", func() error { _, err := bucket.GetObjectDetailedMeta("missing.png"); return err }, http.StatusNotFound, "NoSuchKey"},
		{"other bucket", func() error { _, err := otherBucket.GetObject("a.png"); return err }, http.StatusNotFound, "NoSuchBucket"},
		{"wrong Content-MD5", func() error {
			return bucket.PutObject("a.png", strings.NewReader("data"), oss.ContentMD5(badMD5))
		}, http.StatusBadRequest, "InvalidDigest"},
		{"too large", func() error { return bucket.PutObject("a.png", strings.NewReader(strings.Repeat("x", 17))) }, http.StatusBadRequest, "EntityTooLarge"},
		{"sub-resource", func() error { _, err := bucket.GetObjectACL("a.png"); return err }, http.StatusNotImplemented, "NotImplemented"},
		{"unsatisfiable range", func() error {
			server.PutObject("small.png", []byte("0123456789"), "image/png")
			_, err := bucket.GetObject("small.png", oss.NormalizedRange("10-"), oss.RangeBehavior("standard"))
			return err
		}, http.StatusRequestedRangeNotSatisfiable, "InvalidRange"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serviceErr := serviceError(t, tt.call())
			if serviceErr.StatusCode != tt.wantStatus || serviceErr.Code != tt.wantCode {
				t.Errorf("error = %d %s, want %d %s", serviceErr.StatusCode, serviceErr.Code, tt.wantStatus, tt.wantCode)
			}
			if serviceErr.RequestID == "" {
				t.Errorf("error has no request ID")
			}
		})
	}

	sum := md5.Sum([]byte("data"))
	if err := bucket.PutObject("a.png", strings.NewReader("data"), oss.ContentMD5(base64.StdEncoding.EncodeToString(sum[:]))); err != nil {
		t.Errorf("PutObject with the right Content-MD5: %v", err)
	}
}

func TestSDKRanges(t *testing.T) {
	server := start(t)
	bucket := sdkBucket(t, server, keyID, keySecret)
	data := []byte("0123456789")
	server.PutObject("r.bin", data, "application/octet-stream")

	tests := []struct {
		spec         string
		standard     bool
		wantStatus   int
		wantBody     string
		contentRange string
	}{
		{"2-5", false, http.StatusPartialContent, "2345", "bytes 2-5/10"},
		{"7-", false, http.StatusPartialContent, "789", "bytes 7-9/10"},
		{"-3", false, http.StatusPartialContent, "789", "bytes 7-9/10"},
		{"5-20", false, http.StatusOK, "0123456789", ""},
		{"5-20", true, http.StatusPartialContent, "56789", "bytes 5-9/10"},
		{"10-", false, http.StatusOK, "0123456789", ""},
	}
	for _, tt := range tests {
		options := []oss.Option{oss.NormalizedRange(tt.spec)}
		if tt.standard {
			options = append(options, oss.RangeBehavior("standard"))
		}
		result, err := bucket.DoGetObject(&oss.GetObjectRequest{ObjectKey: "r.bin"}, options)
		if err != nil {
			t.Errorf("range %s (standard %t): %v", tt.spec, tt.standard, err)
			continue
		}
		got, err := io.ReadAll(result.Response)
		result.Response.Close()
		if err != nil {
			t.Fatal(err)
		}
		if result.Response.StatusCode != tt.wantStatus || string(got) != tt.wantBody ||
			result.Response.Headers.Get("Content-Range") != tt.contentRange {
			t.Errorf("range %s (standard %t) = %d %q Content-Range %q, want %d %q %q", tt.spec, tt.standard,
				result.Response.StatusCode, got, result.Response.Headers.Get("Content-Range"), tt.wantStatus, tt.wantBody, tt.contentRange)
		}
	}
}

// recorder keeps a copy of every request that the SDK sends.
type recorder struct {
	transport http.RoundTripper
	mu        sync.Mutex
	requests  []recordedRequest
}

type recordedRequest struct {
	method string
	url    string
	header http.Header
	body   []byte
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	r.mu.Lock()
	r.requests = append(r.requests, recordedRequest{req.Method, req.URL.String(), req.Header.Clone(), body})
	r.mu.Unlock()
	return r.transport.RoundTrip(req)
}

func (r *recorder) last(t *testing.T) recordedRequest {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.requests) == 0 {
		t.Fatal("no request recorded")
	}
	return r.requests[len(r.requests)-1]
}

// replay sends a copy of recorded after change edits it, and returns the
// status and the error code of the response.
func replay(t *testing.T, client *http.Client, recorded recordedRequest, change func(*http.Request)) (int, string) {
	t.Helper()
	req, err := http.NewRequest(recorded.method, recorded.url, bytes.NewReader(recorded.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = recorded.header.Clone()
	change(req)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	defer resp.Body.Close()

	// A HEAD response carries its error XML base64-encoded in x-oss-err.
	raw, _ := io.ReadAll(resp.Body)
	if header := resp.Header.Get("X-Oss-Err"); len(raw) == 0 && header != "" {
		if raw, err = base64.StdEncoding.DecodeString(header); err != nil {
			t.Fatalf("decode x-oss-err %q: %v", header, err)
		}
	}
	var body struct{ Code string }
	if len(raw) > 0 {
		if err := xml.Unmarshal(raw, &body); err != nil {
			t.Fatalf("parse error XML %q: %v", raw, err)
		}
	}
	return resp.StatusCode, body.Code
}

// tamperCase is one replay of a recorded SDK request with one part changed.
type tamperCase struct {
	name       string
	recorded   recordedRequest
	change     func(*http.Request)
	wantStatus int
	wantCode   string
}

// signedRequests makes the SDK, with options, send a HEAD of photo.png and a
// PUT of upload.png to server, which gets photo.png and other.png first. It
// returns both requests as sent and a client that replays them.
func signedRequests(t *testing.T, server *fakeoss.Server, options ...oss.ClientOption) (head, put recordedRequest, client *http.Client) {
	t.Helper()
	server.PutObject("photo.png", []byte("photo"), "image/png")
	server.PutObject("other.png", []byte("other"), "image/png")
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	rec := &recorder{transport: transport}
	bucket := sdkBucket(t, server, keyID, keySecret, append(options, oss.HTTPClient(&http.Client{Transport: rec}))...)

	if _, err := bucket.GetObjectDetailedMeta("photo.png"); err != nil {
		t.Fatalf("HEAD through the SDK: %v", err)
	}
	head = rec.last(t)
	if err := bucket.PutObject("upload.png", strings.NewReader("upload"), oss.ContentType("image/png"), oss.Meta("owner", "alice")); err != nil {
		t.Fatalf("PUT through the SDK: %v", err)
	}
	put = rec.last(t)
	return head, put, &http.Client{Transport: transport}
}

// tamperCases returns the changes that every signature version must
// detect, and the unchanged replays that must pass.
func tamperCases(head, put recordedRequest) []tamperCase {
	return []tamperCase{
		{"unchanged head", head, func(*http.Request) {}, http.StatusOK, ""},
		{"unchanged put", put, func(*http.Request) {}, http.StatusOK, ""},
		{"other key", head, func(r *http.Request) { r.URL.Path = "/" + bucketName + "/other.png" }, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"other method", head, func(r *http.Request) { r.Method = http.MethodDelete }, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"later date", head, func(r *http.Request) {
			date, _ := http.ParseTime(r.Header.Get("Date"))
			r.Header.Set("Date", date.Add(time.Second).Format(http.TimeFormat))
		}, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"added oss header", head, func(r *http.Request) { r.Header.Set("X-Oss-Meta-Extra", "1") }, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"changed oss header", put, func(r *http.Request) { r.Header.Set("X-Oss-Meta-Owner", "mallory") }, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"changed content type", put, func(r *http.Request) { r.Header.Set("Content-Type", "text/html") }, http.StatusForbidden, "SignatureDoesNotMatch"},
		{"no authorization", head, func(r *http.Request) { r.Header.Del("Authorization") }, http.StatusForbidden, "AccessDenied"},
	}
}

// replayTampered replays each case, and then checks that the DELETE and PUT
// replays changed nothing.
func replayTampered(t *testing.T, server *fakeoss.Server, client *http.Client, cases []tamperCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			status, code := replay(t, client, tt.recorded, tt.change)
			if status != tt.wantStatus || code != tt.wantCode {
				t.Errorf("replay = %d %q, want %d %q", status, code, tt.wantStatus, tt.wantCode)
			}
		})
	}
	if obj, ok := server.Object("other.png"); !ok || string(obj.Data) != "other" {
		t.Errorf("other.png = %q, %t after the replays, want unchanged", obj.Data, ok)
	}
	if obj, ok := server.Object("upload.png"); !ok || obj.ContentType != "image/png" {
		t.Errorf("upload.png Content-Type = %q, %t after the replays, want image/png", obj.ContentType, ok)
	}
}

func TestTamperedRequestRejected(t *testing.T) {
	server := start(t)
	head, put, client := signedRequests(t, server)
	cases := append(tamperCases(head, put),
		tamperCase{"changed signature", head, func(r *http.Request) {
			id, _, _ := strings.Cut(r.Header.Get("Authorization"), ":")
			r.Header.Set("Authorization", id+":"+base64.StdEncoding.EncodeToString(make([]byte, 20)))
		}, http.StatusForbidden, "SignatureDoesNotMatch"},
		tamperCase{"other key id", head, func(r *http.Request) {
			_, signature, _ := strings.Cut(r.Header.Get("Authorization"), ":")
			r.Header.Set("Authorization", "OSS LTAI-other:"+signature)
		}, http.StatusForbidden, "InvalidAccessKeyId"},
	)
	replayTampered(t, server, client, cases)
}

// TestTamperedV4RequestRejected replays V4-signed SDK requests with one
// part changed.
func TestTamperedV4RequestRejected(t *testing.T) {
	server := startV4(t)
	head, put, client := signedRequests(t, server, v4Options()...)
	cases := append(tamperCases(head, put),
		tamperCase{"changed payload hash", put, func(r *http.Request) { r.Header.Set("X-Oss-Content-Sha256", strings.Repeat("0", 64)) }, http.StatusForbidden, "SignatureDoesNotMatch"},
		tamperCase{"changed signature", head, func(r *http.Request) {
			scope, _, _ := strings.Cut(r.Header.Get("Authorization"), "Signature=")
			r.Header.Set("Authorization", scope+"Signature="+strings.Repeat("0", 64))
		}, http.StatusForbidden, "SignatureDoesNotMatch"},
		tamperCase{"no signature", head, func(r *http.Request) {
			scope, _, _ := strings.Cut(r.Header.Get("Authorization"), ",Signature=")
			r.Header.Set("Authorization", scope)
		}, http.StatusBadRequest, "InvalidArgument"},
	)
	replayTampered(t, server, client, cases)
}

func TestCloseTwice(t *testing.T) {
	server, err := fakeoss.New(fakeoss.Options{AccessKeyID: keyID, AccessKeySecret: keySecret, Bucket: bucketName})
	if err != nil {
		t.Fatal(err)
	}
	if err := server.Close(); err != nil {
		t.Errorf("first Close: %v", err)
	}
	if err := server.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := http.Get(server.URL() + "/" + bucketName + "/a.png"); err == nil {
		t.Errorf("GET after Close succeeded, want a connection error")
	}
}

func TestNewRequiresOptions(t *testing.T) {
	for _, opts := range []fakeoss.Options{
		{AccessKeySecret: keySecret, Bucket: bucketName},
		{AccessKeyID: keyID, Bucket: bucketName},
		{AccessKeyID: keyID, AccessKeySecret: keySecret},
	} {
		if server, err := fakeoss.New(opts); err == nil {
			server.Close()
			t.Errorf("New(%+v) succeeded, want an error", opts)
		}
	}
}

func TestConcurrentRequests(t *testing.T) {
	server := start(t)
	bucket := sdkBucket(t, server, keyID, keySecret)
	const workers, rounds = 8, 10

	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for worker := range workers {
		wg.Go(func() {
			key := "worker-" + string(rune('a'+worker)) + ".bin"
			for round := range rounds {
				data := bytes.Repeat([]byte{byte(worker), byte(round)}, 512)
				if err := bucket.PutObject(key, bytes.NewReader(data)); err != nil {
					errs <- err
					return
				}
				body, err := bucket.GetObject(key)
				if err != nil {
					errs <- err
					return
				}
				got, err := io.ReadAll(body)
				body.Close()
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, data) {
					errs <- errors.New(key + " returned another worker's or round's bytes")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := server.Counts(); got.Put != workers*rounds || got.Get != workers*rounds {
		t.Errorf("Counts = %+v, want %d PUTs and GETs", got, workers*rounds)
	}
}

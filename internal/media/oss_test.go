package media_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/fakeoss"
	"github.com/aihigress/aihigress/internal/media"
	"github.com/aihigress/aihigress/internal/media/storagetest"
)

const (
	testBucket    = "aih-images"
	testKeyID     = "LTAI-test-key-id"
	testKeySecret = "test-secret-do-not-print-7f3a91"
)

func startFakeOSS(t *testing.T) *fakeoss.Server {
	t.Helper()
	return fakeoss.Start(t, fakeoss.Options{AccessKeyID: testKeyID, AccessKeySecret: testKeySecret, Bucket: testBucket})
}

func newTestOSS(t *testing.T, server *fakeoss.Server, secret string) *media.OSS {
	t.Helper()
	s, err := media.NewOSS(media.OSSConfig{
		Endpoint:         server.URL(),
		Bucket:           testBucket,
		AccessKeyID:      testKeyID,
		AccessKeySecret:  secret,
		ConnectTimeout:   5 * time.Second,
		ReadWriteTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("NewOSS: %v", err)
	}
	return s
}

func TestOSSConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) media.Storage {
		return newTestOSS(t, startFakeOSS(t), testKeySecret)
	})
}

// testRegion is the region of the fake OSS servers that check V4
// signatures.
const testRegion = "cn-hangzhou"

func newRegionOSS(t *testing.T, server *fakeoss.Server, region string) *media.OSS {
	t.Helper()
	s, err := media.NewOSS(media.OSSConfig{
		Endpoint: server.URL(), Bucket: testBucket, AccessKeyID: testKeyID, AccessKeySecret: testKeySecret, Region: region,
	})
	if err != nil {
		t.Fatalf("NewOSS: %v", err)
	}
	return s
}

func TestOSSConformanceV4(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) media.Storage {
		server := fakeoss.Start(t, fakeoss.Options{AccessKeyID: testKeyID, AccessKeySecret: testKeySecret, Bucket: testBucket, Region: testRegion})
		return newRegionOSS(t, server, testRegion)
	})
}

// TestOSSRegionSelectsV4 checks that a region makes requests carry V4
// signatures for that region, and that V1 is used without one.
func TestOSSRegionSelectsV4(t *testing.T) {
	tests := []struct {
		name       string
		region     string
		wantCounts fakeoss.Counts
		wantCode   string
	}{
		{name: "no region", wantCounts: fakeoss.Counts{Put: 1, SignedV1: 1}},
		{name: "bucket region", region: testRegion, wantCounts: fakeoss.Counts{Put: 1, SignedV4: 1}},
		{name: "other region", region: "cn-shanghai", wantCounts: fakeoss.Counts{AuthFailures: 1}, wantCode: "SignatureDoesNotMatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := fakeoss.Start(t, fakeoss.Options{AccessKeyID: testKeyID, AccessKeySecret: testKeySecret, Bucket: testBucket, Region: testRegion})
			s := newRegionOSS(t, server, tt.region)

			_, err := s.Put(context.Background(), "aihtest/images/a.png", strings.NewReader("png"), 3, "image/png")
			if tt.wantCode == "" && err != nil {
				t.Fatalf("Put: %v", err)
			}
			if tt.wantCode != "" && (err == nil || !strings.Contains(err.Error(), tt.wantCode)) {
				t.Fatalf("Put error = %v, want %s", err, tt.wantCode)
			}
			if got := server.Counts(); got != tt.wantCounts {
				t.Errorf("server counts = %+v, want %+v", got, tt.wantCounts)
			}
		})
	}
}

func TestOSSPutStoresInBucket(t *testing.T) {
	server := startFakeOSS(t)
	s := newTestOSS(t, server, testKeySecret)
	key := "aihtest/images/2025/03/14/object.png"
	data := []byte("\x89PNG\r\n\x1a\nnot really a png")

	info, err := s.Put(context.Background(), key, bytes.NewReader(data), int64(len(data)), "image/png")
	if err != nil {
		t.Fatalf("Put: %v", err)
	}

	stored, ok := server.Object(key)
	if !ok {
		t.Fatalf("fake OSS has no object %q, keys %v", key, server.Keys())
	}
	if !bytes.Equal(stored.Data, data) {
		t.Errorf("stored data = %q, want %q", stored.Data, data)
	}
	if stored.ContentType != "image/png" {
		t.Errorf("stored Content-Type = %q, want image/png", stored.ContentType)
	}
	if info.ETag != stored.ETag {
		t.Errorf("Put ETag = %s, want the server's %s", info.ETag, stored.ETag)
	}
	if got := server.Counts(); got.Put != 1 || got.AuthFailures != 0 {
		t.Errorf("server counts = %+v, want one PUT and no auth failures", got)
	}
}

func TestOSSErrors(t *testing.T) {
	server := startFakeOSS(t)
	server.PutObject("present.png", []byte("data"), "image/png")
	ctx := context.Background()

	tests := []struct {
		name     string
		secret   string
		bucket   string
		wantCode string
	}{
		{"wrong secret", "not-the-secret", testBucket, "SignatureDoesNotMatch"},
		{"missing bucket", testKeySecret, "other-bucket", "NoSuchBucket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := media.NewOSS(media.OSSConfig{Endpoint: server.URL(), Bucket: tt.bucket, AccessKeyID: testKeyID, AccessKeySecret: tt.secret})
			if err != nil {
				t.Fatalf("NewOSS: %v", err)
			}

			_, putErr := s.Put(ctx, "new.png", strings.NewReader("abc"), 3, "image/png")
			_, _, getErr := s.Get(ctx, "present.png", 0, -1)
			_, headErr := s.Head(ctx, "present.png")
			deleteErr := s.Delete(ctx, "present.png")

			for op, err := range map[string]error{"Put": putErr, "Get": getErr, "Head": headErr, "Delete": deleteErr} {
				if err == nil {
					t.Errorf("%s succeeded, want %s", op, tt.wantCode)
					continue
				}
				if errors.Is(err, media.ErrNotFound) {
					t.Errorf("%s error %v is ErrNotFound, want a plain error", op, err)
				}
				if !strings.Contains(err.Error(), tt.wantCode) {
					t.Errorf("%s error %q does not name %s", op, err, tt.wantCode)
				}
				if strings.Contains(err.Error(), testKeySecret) {
					t.Errorf("%s error %q contains the secret", op, err)
				}
			}
			if _, ok := server.Object("present.png"); !ok {
				t.Errorf("a rejected Delete removed the object")
			}
		})
	}
}

func TestOSSGetDetectsCorruption(t *testing.T) {
	server := startFakeOSS(t)
	s := newTestOSS(t, server, testKeySecret)
	server.PutObject("photo.png", bytes.Repeat([]byte("0123456789"), 100), "image/png")
	server.CorruptObject("photo.png")

	body, _, err := s.Get(context.Background(), "photo.png", 0, -1)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer body.Close()
	if _, err := io.ReadAll(body); err == nil || !strings.Contains(err.Error(), "CRC-64") {
		t.Errorf("reading a corrupted object: error = %v, want a CRC-64 mismatch", err)
	}
}

func TestNewOSSValidation(t *testing.T) {
	valid := media.OSSConfig{Endpoint: "https://oss-cn-hangzhou.aliyuncs.com", Bucket: "bucket-b", AccessKeyID: "id", AccessKeySecret: "secret"}
	tests := []struct {
		name    string
		change  func(*media.OSSConfig)
		wantErr string
	}{
		{"valid", func(*media.OSSConfig) {}, ""},
		{"endpoint without scheme", func(c *media.OSSConfig) { c.Endpoint = "oss-cn-hangzhou.aliyuncs.com" }, ""},
		{"missing endpoint and secret", func(c *media.OSSConfig) { c.Endpoint, c.AccessKeySecret = "", "" }, "needs the endpoint, access key secret"},
		{"missing bucket", func(c *media.OSSConfig) { c.Bucket = "" }, "needs the bucket"},
		{"ftp endpoint", func(c *media.OSSConfig) { c.Endpoint = "ftp://oss.example.invalid" }, "must be a scheme and host"},
		{"endpoint with path", func(c *media.OSSConfig) { c.Endpoint = "https://oss.example.invalid/bucket" }, "must be a scheme and host"},
		{"endpoint with user info", func(c *media.OSSConfig) { c.Endpoint = "https://user:pass@oss.example.invalid" }, "must be a scheme and host"},
		{"invalid bucket name", func(c *media.OSSConfig) { c.Bucket = "Upper_Case" }, "bucket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.change(&cfg)
			s, err := media.NewOSS(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewOSS: %v", err)
				}
				if s.Name() != "oss" {
					t.Errorf("Name() = %q, want oss", s.Name())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewOSS error = %v, want one containing %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "pass") {
				t.Errorf("NewOSS error %q contains the endpoint's password", err)
			}
		})
	}
}

func TestOSSNeverPrintsSecret(t *testing.T) {
	cfg := media.OSSConfig{Endpoint: "https://oss-cn-hangzhou.aliyuncs.com", Bucket: "bucket-b", AccessKeyID: "id", AccessKeySecret: testKeySecret}
	s, err := media.NewOSS(cfg)
	if err != nil {
		t.Fatalf("NewOSS: %v", err)
	}

	var logged bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logged, nil))
	logger.Info("config", "oss", cfg, "storage", s)
	var storage media.Storage = s

	outputs := map[string]string{
		"%v config":      fmt.Sprintf("%v", cfg),
		"%+v config":     fmt.Sprintf("%+v", cfg),
		"%#v config":     fmt.Sprintf("%#v", cfg),
		"%v storage":     fmt.Sprintf("%v", s),
		"%+v storage":    fmt.Sprintf("%+v", s),
		"%#v storage":    fmt.Sprintf("%#v", s),
		"%v interface":   fmt.Sprintf("%v", storage),
		"%v in a struct": fmt.Sprintf("%+v", struct{ Cfg media.OSSConfig }{cfg}),
		"slog JSON":      logged.String(),
	}
	for name, output := range outputs {
		if strings.Contains(output, testKeySecret) {
			t.Errorf("%s prints the secret: %s", name, output)
		}
	}
	if !strings.Contains(outputs["%v config"], "[REDACTED]") {
		t.Errorf("%%v of the config = %s, want [REDACTED] in place of the secret", outputs["%v config"])
	}

	var record map[string]any
	if err := json.Unmarshal(logged.Bytes(), &record); err != nil {
		t.Fatalf("parse slog output %s: %v", logged.String(), err)
	}
	ossGroup, _ := record["oss"].(map[string]any)
	if ossGroup["access_key_secret"] != "[REDACTED]" || ossGroup["bucket"] != "bucket-b" {
		t.Errorf("logged config = %v, want bucket bucket-b and a redacted secret", ossGroup)
	}
}

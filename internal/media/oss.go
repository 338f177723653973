package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
)

// OSSConfig configures the Aliyun OSS storage.
type OSSConfig struct {
	// Endpoint is the OSS endpoint, such as
	// https://oss-cn-hangzhou.aliyuncs.com. An endpoint without a scheme
	// gets https://. For an IP address such as http://127.0.0.1:9000 the
	// SDK builds path-style URLs (/<bucket>/<key>), otherwise
	// virtual-hosted ones (<bucket>.<endpoint>/<key>).
	Endpoint        string
	Bucket          string
	AccessKeyID     string
	AccessKeySecret string
	// Region, such as cn-hangzhou, makes requests use V4 signatures, which
	// name the bucket's region. When it is empty, a standard endpoint such
	// as https://oss-cn-hangzhou.aliyuncs.com gives the region, and other
	// endpoints (IP addresses, custom domains) get V1 signatures.
	Region string
	// ConnectTimeout limits dialing. Zero means the SDK default of 30 s.
	ConnectTimeout time.Duration
	// ReadWriteTimeout limits each read or write on a connection and the
	// wait for response headers. Zero means the SDK default of 60 s.
	ReadWriteTimeout time.Duration
}

// String returns the configuration without the access key secret.
func (c OSSConfig) String() string {
	return fmt.Sprintf("OSSConfig{Endpoint:%q Bucket:%q AccessKeyID:%q AccessKeySecret:%s Region:%q ConnectTimeout:%s ReadWriteTimeout:%s}",
		c.Endpoint, c.Bucket, c.AccessKeyID, redactOSSSecret(c.AccessKeySecret), c.Region, c.ConnectTimeout, c.ReadWriteTimeout)
}

// GoString makes the %#v verb print the redacted String form.
func (c OSSConfig) GoString() string {
	return c.String()
}

// LogValue implements slog.LogValuer. It replaces a non-empty access key
// secret with "[REDACTED]".
func (c OSSConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoint", c.Endpoint),
		slog.String("bucket", c.Bucket),
		slog.String("access_key_id", c.AccessKeyID),
		slog.String("access_key_secret", redactOSSSecret(c.AccessKeySecret)),
		slog.String("region", c.Region),
		slog.Duration("connect_timeout", c.ConnectTimeout),
		slog.Duration("read_write_timeout", c.ReadWriteTimeout),
	)
}

func redactOSSSecret(secret string) string {
	if secret == "" {
		return `""`
	}
	return "[REDACTED]"
}

// OSS stores objects in an Aliyun OSS bucket through
// github.com/aliyun/aliyun-oss-go-sdk.
//
// Requests use V4 signatures when the region is known (see
// OSSConfig.Region), and otherwise V1 signatures, the SDK's default.
type OSS struct {
	// bucket holds the SDK client, whose configuration contains the
	// secret, so OSS prints only endpoint, bucketName and region.
	bucket     *oss.Bucket
	endpoint   string
	bucketName string
	// region is the region of V4 signatures, or "" for V1 signatures.
	region string
}

// NewOSS returns an OSS storage. It sends no request, so a wrong endpoint
// or key shows up at the first operation.
func NewOSS(cfg OSSConfig) (*OSS, error) {
	var missing []string
	for _, field := range []struct{ name, value string }{
		{"endpoint", cfg.Endpoint}, {"bucket", cfg.Bucket},
		{"access key ID", cfg.AccessKeyID}, {"access key secret", cfg.AccessKeySecret},
	} {
		if field.value == "" {
			missing = append(missing, field.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("media: OSS storage needs the %s", strings.Join(missing, ", "))
	}

	endpoint, err := normalizeOSSEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}

	var options []oss.ClientOption
	if cfg.ConnectTimeout > 0 || cfg.ReadWriteTimeout > 0 {
		// oss.Timeout takes whole seconds and sets both values.
		options = append(options, oss.Timeout(
			wholeSeconds(cfg.ConnectTimeout, 30*time.Second),
			wholeSeconds(cfg.ReadWriteTimeout, 60*time.Second)))
	}
	region := cfg.Region
	if region == "" {
		region = regionOfEndpoint(endpoint)
	}
	if region != "" {
		options = append(options, oss.AuthVersion(oss.AuthV4), oss.Region(region))
	}
	client, err := oss.New(endpoint, cfg.AccessKeyID, cfg.AccessKeySecret, options...)
	if err != nil {
		// The SDK's errors here name the endpoint or auth version, never
		// the secret.
		return nil, fmt.Errorf("media: create OSS client for %s: %w", endpoint, err)
	}
	bucket, err := client.Bucket(cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("media: OSS bucket %q: %w", cfg.Bucket, err)
	}
	return &OSS{bucket: bucket, endpoint: endpoint, bucketName: cfg.Bucket, region: region}, nil
}

// regionOfEndpoint returns the region ID in a standard OSS endpoint, such
// as cn-hangzhou for https://oss-cn-hangzhou.aliyuncs.com or
// https://oss-cn-hangzhou-internal.aliyuncs.com, and "" for any other
// endpoint. The global acceleration endpoints name no region.
func regionOfEndpoint(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return ""
	}
	name, ok := strings.CutSuffix(u.Hostname(), ".aliyuncs.com")
	if !ok {
		return ""
	}
	region, ok := strings.CutPrefix(name, "oss-")
	if !ok || strings.HasPrefix(region, "accelerate") {
		return ""
	}
	region = strings.TrimSuffix(region, "-internal")
	if region == "" || strings.Contains(region, ".") {
		return ""
	}
	return region
}

func normalizeOSSEndpoint(endpoint string) (string, error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
		shown := endpoint
		if err == nil && u.User != nil {
			shown = u.Redacted()
		}
		return "", fmt.Errorf("media: OSS endpoint must be a scheme and host such as https://oss-cn-hangzhou.aliyuncs.com, got %q", shown)
	}
	return u.Scheme + "://" + u.Host, nil
}

// wholeSeconds rounds d up to whole seconds, or returns fallback's seconds
// when d is not positive.
func wholeSeconds(d, fallback time.Duration) int64 {
	if d <= 0 {
		d = fallback
	}
	return int64(math.Ceil(d.Seconds()))
}

// Name returns "oss".
func (s *OSS) Name() string {
	return "oss"
}

// String returns the endpoint and bucket, never the credentials.
func (s *OSS) String() string {
	return fmt.Sprintf("OSS{Endpoint:%q Bucket:%q Region:%q}", s.endpoint, s.bucketName, s.region)
}

// GoString makes the %#v verb print the String form.
func (s *OSS) GoString() string {
	return s.String()
}

// LogValue implements slog.LogValuer with the endpoint and bucket.
func (s *OSS) LogValue() slog.Value {
	signature := "V1"
	if s.region != "" {
		signature = "V4"
	}
	return slog.GroupValue(slog.String("endpoint", s.endpoint), slog.String("bucket", s.bucketName),
		slog.String("region", s.region), slog.String("signature", signature))
}

// Put uploads exactly size bytes of body with one PutObject request. The
// body is streamed with a Content-Length of size, and a body shorter than
// size fails the request. The SDK checks the CRC-64 that OSS returns
// against the bytes it sent. The returned LastModified is the response's
// Date, because the PutObject response has no Last-Modified.
func (s *OSS) Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) (ObjectInfo, error) {
	if size < 0 {
		return ObjectInfo{}, fmt.Errorf("media: put %q in OSS bucket %q: negative size %d", key, s.bucketName, size)
	}
	contentType = contentTypeOrDefault(contentType)

	// The SDK takes the Content-Length from an *io.LimitedReader and sends
	// it without buffering.
	limited := &io.LimitedReader{R: body, N: size}
	var header http.Header
	err := s.bucket.PutObject(key, limited,
		oss.ContentType(contentType), oss.WithContext(ctx), oss.GetResponseHeader(&header))
	if err != nil {
		return ObjectInfo{}, s.wrapError("put", key, err)
	}
	if limited.N != 0 {
		return ObjectInfo{}, fmt.Errorf("media: put %q in OSS bucket %q: body ended %d bytes before its size %d", key, s.bucketName, limited.N, size)
	}

	lastModified, err := http.ParseTime(header.Get("Date"))
	if err != nil {
		lastModified = time.Now()
	}
	return ObjectInfo{
		Key:          key,
		Size:         size,
		ContentType:  contentType,
		ETag:         quoteETag(header.Get("ETag")),
		LastModified: lastModified.UTC(),
	}, nil
}

// Get opens the object from offset with one GetObject request, or with a
// HeadObject request when length is 0. ObjectInfo.Size is the size of the
// whole object, also for a partial read.
//
// A range is sent with x-oss-range-behavior: standard, so that OSS responds
// to an offset past the end with 416, which becomes ErrInvalidRange, instead of
// silently returning the whole object. A full read checks the CRC-64 that
// OSS reports once the body reaches EOF, and Read then returns an error on
// a mismatch.
func (s *OSS) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, ObjectInfo, error) {
	if offset < 0 {
		return nil, ObjectInfo{}, fmt.Errorf("media: get %q from OSS bucket %q: negative offset %d: %w", key, s.bucketName, offset, ErrInvalidRange)
	}
	if length == 0 {
		return s.emptyRead(ctx, key, offset)
	}

	// Without an explicit Accept-Encoding, Go's transport requests gzip,
	// and a decompressed response loses its Content-Length.
	options := []oss.Option{oss.WithContext(ctx), oss.AcceptEncoding("identity")}
	ranged := offset > 0 || length > 0
	if ranged {
		spec := strconv.FormatInt(offset, 10) + "-"
		if length > 0 && length <= math.MaxInt64-offset {
			spec += strconv.FormatInt(offset+length-1, 10)
		}
		options = append(options, oss.NormalizedRange(spec), oss.RangeBehavior("standard"))
	}

	result, err := s.bucket.DoGetObject(&oss.GetObjectRequest{ObjectKey: key}, options)
	if err != nil {
		err = s.wrapError("get", key, err)
		if offset == 0 && errors.Is(err, ErrInvalidRange) {
			// Offset 0 is valid for an empty object, which has no byte
			// that a range could name.
			return s.emptyRead(ctx, key, offset)
		}
		return nil, ObjectInfo{}, err
	}
	response := result.Response

	info, err := objectInfoFromHeader(key, response.Headers)
	if err != nil {
		_ = response.Close()
		return nil, ObjectInfo{}, fmt.Errorf("media: get %q from OSS bucket %q: %w", key, s.bucketName, err)
	}
	if !ranged {
		return newCRCCheckedBody(response, result.ClientCRC, key), info, nil
	}

	if response.StatusCode != http.StatusPartialContent {
		_ = response.Close()
		return nil, ObjectInfo{}, fmt.Errorf("media: get %q from OSS bucket %q: response to a range request has status %d, want 206", key, s.bucketName, response.StatusCode)
	}
	info.Size, err = totalSizeFromContentRange(response.Headers.Get("Content-Range"))
	if err != nil {
		_ = response.Close()
		return nil, ObjectInfo{}, fmt.Errorf("media: get %q from OSS bucket %q: %w", key, s.bucketName, err)
	}
	return response, info, nil
}

// emptyRead checks that the object exists and that offset is valid for it,
// and returns an empty body.
func (s *OSS) emptyRead(ctx context.Context, key string, offset int64) (io.ReadCloser, ObjectInfo, error) {
	info, err := s.Head(ctx, key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	if _, err := checkObjectRange(offset, 0, info.Size); err != nil {
		return nil, ObjectInfo{}, fmt.Errorf("media: get %q from OSS bucket %q: %w", key, s.bucketName, err)
	}
	return io.NopCloser(bytes.NewReader(nil)), info, nil
}

// Head reads the object's metadata with a HeadObject request.
func (s *OSS) Head(ctx context.Context, key string) (ObjectInfo, error) {
	header, err := s.bucket.GetObjectDetailedMeta(key, oss.WithContext(ctx))
	if err != nil {
		return ObjectInfo{}, s.wrapError("head", key, err)
	}
	info, err := objectInfoFromHeader(key, header)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("media: head %q in OSS bucket %q: %w", key, s.bucketName, err)
	}
	return info, nil
}

// Delete removes the object. OSS responds 204 for a missing key too, so a
// repeated Delete succeeds.
func (s *OSS) Delete(ctx context.Context, key string) error {
	if err := s.bucket.DeleteObject(key, oss.WithContext(ctx)); err != nil {
		return s.wrapError("delete", key, err)
	}
	return nil
}

// wrapError adds the operation, key and bucket to an SDK error and adds
// ErrNotFound for NoSuchKey and ErrInvalidRange for InvalidRange.
// NoSuchBucket is not ErrNotFound, because it is a configuration error.
func (s *OSS) wrapError(operation, key string, err error) error {
	var serviceErr oss.ServiceError
	if errors.As(err, &serviceErr) {
		switch {
		case serviceErr.Code == "NoSuchKey",
			// A HEAD response has no body. The SDK reads the code from the
			// x-oss-err header when OSS sends one, and otherwise leaves it
			// empty.
			serviceErr.Code == "" && serviceErr.StatusCode == http.StatusNotFound:
			return fmt.Errorf("media: %s %q in OSS bucket %q: %w: %w", operation, key, s.bucketName, ErrNotFound, err)
		case serviceErr.Code == "InvalidRange":
			return fmt.Errorf("media: %s %q in OSS bucket %q: %w: %w", operation, key, s.bucketName, ErrInvalidRange, err)
		}
	}
	return fmt.Errorf("media: %s %q in OSS bucket %q: %w", operation, key, s.bucketName, err)
}

func objectInfoFromHeader(key string, header http.Header) (ObjectInfo, error) {
	size, err := strconv.ParseInt(header.Get("Content-Length"), 10, 64)
	if err != nil || size < 0 {
		return ObjectInfo{}, fmt.Errorf("invalid Content-Length %q in the OSS response", header.Get("Content-Length"))
	}
	lastModified, err := http.ParseTime(header.Get("Last-Modified"))
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("invalid Last-Modified %q in the OSS response", header.Get("Last-Modified"))
	}
	return ObjectInfo{
		Key:          key,
		Size:         size,
		ContentType:  contentTypeOrDefault(header.Get("Content-Type")),
		ETag:         quoteETag(header.Get("ETag")),
		LastModified: lastModified.UTC(),
	}, nil
}

// totalSizeFromContentRange returns the complete length from a
// Content-Range value such as "bytes 0-99/1000".
func totalSizeFromContentRange(value string) (int64, error) {
	_, total, ok := strings.Cut(value, "/")
	size, err := strconv.ParseInt(total, 10, 64)
	if !ok || !strings.HasPrefix(value, "bytes ") || err != nil || size < 0 {
		return 0, fmt.Errorf("invalid Content-Range %q in the OSS response", value)
	}
	return size, nil
}

// quoteETag returns etag in the quoted form of an HTTP ETag header.
func quoteETag(etag string) string {
	if etag == "" || strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, `W/"`) {
		return etag
	}
	return `"` + etag + `"`
}

// crcCheckedBody compares the CRC-64 that the SDK computes while the body
// is read with the one OSS sent in x-oss-hash-crc64ecma.
type crcCheckedBody struct {
	*oss.Response
	computed hash.Hash64
	key      string
}

// newCRCCheckedBody returns response itself when there is nothing to
// compare: the SDK computes a CRC only when CRC checks are on and no range
// was requested, and OSS may omit the header.
func newCRCCheckedBody(response *oss.Response, computed hash.Hash64, key string) io.ReadCloser {
	if computed == nil || response.Headers.Get("X-Oss-Hash-Crc64ecma") == "" {
		return response
	}
	return &crcCheckedBody{Response: response, computed: computed, key: key}
}

func (b *crcCheckedBody) Read(p []byte) (int, error) {
	n, err := b.Response.Read(p)
	if errors.Is(err, io.EOF) {
		if computed := b.computed.Sum64(); computed != b.Response.ServerCRC {
			return n, fmt.Errorf("media: get %q from OSS: CRC-64 of the received bytes is %d, but OSS reported %d", b.key, computed, b.Response.ServerCRC)
		}
	}
	return n, err
}

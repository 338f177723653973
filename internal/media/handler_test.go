package media

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const invalidLinkBody = `{"error":{"message":"the media link is invalid or expired","type":"permission_error","code":"invalid_media_link","param":null}}`

// handlerFixture is a media handler over Local storage, served over HTTP on
// 127.0.0.1, with one stored PNG.
type handlerFixture struct {
	server  *httptest.Server
	signer  *Signer
	local   *Local
	dir     string
	key     string
	data    []byte
	info    ObjectInfo
	logs    *syncBuffer
	baseURL *url.URL
}

// syncBuffer is a bytes.Buffer that the server's goroutines may write to.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newHandlerFixture(t *testing.T) *handlerFixture {
	t.Helper()
	local, dir := newTestLocal(t)
	signer := newTestSigner(t, time.Hour)
	key := "aihigress/images/2026/12/05/0b6f1c8e.png"
	data := testPNG(t, 64, 64, 20)
	info := putObject(t, local, key, data)

	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	server := httptest.NewServer(NewHandler(local, signer, logger))
	t.Cleanup(server.Close)
	baseURL, err := url.Parse(server.URL)
	if err != nil {
		t.Fatal(err)
	}
	return &handlerFixture{server: server, signer: signer, local: local, dir: dir, key: key, data: data, info: info, logs: logs, baseURL: baseURL}
}

// rawResponse is what rawRequest read back.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// rawRequest sends target exactly as given on the request line, so that no
// client normalizes the encodings that the tests are about.
func (f *handlerFixture) rawRequest(t *testing.T, method, target string, header http.Header) rawResponse {
	t.Helper()
	conn, err := net.Dial("tcp", f.baseURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var request bytes.Buffer
	fmt.Fprintf(&request, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, f.baseURL.Host)
	if err := header.Write(&request); err != nil {
		t.Fatal(err)
	}
	request.WriteString("\r\n")
	if _, err := conn.Write(request.Bytes()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: body}
}

func (f *handlerFixture) get(t *testing.T, target string, header http.Header) rawResponse {
	t.Helper()
	return f.rawRequest(t, http.MethodGet, target, header)
}

// linkWithPath replaces the escaped key of a signed link with escapedPath
// and keeps its query.
func linkWithPath(t *testing.T, link, escapedPath string) string {
	t.Helper()
	_, query, ok := strings.Cut(link, "?")
	if !ok {
		t.Fatalf("link %q has no query", link)
	}
	return PathPrefix + escapedPath + "?" + query
}

// objectHeaders are headers that tell something about a stored object.
var objectHeaders = []string{"ETag", "Last-Modified", "Content-Range", "Accept-Ranges", "Content-Disposition"}

func checkInvalidLink(t *testing.T, resp rawResponse) {
	t.Helper()
	if resp.status != http.StatusForbidden {
		t.Errorf("status = %d, want 403; body %s", resp.status, resp.body)
	}
	if string(resp.body) != invalidLinkBody {
		t.Errorf("body = %s, want %s", resp.body, invalidLinkBody)
	}
	if got := resp.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	for _, name := range objectHeaders {
		if value := resp.header.Get(name); value != "" {
			t.Errorf("a rejected link got header %s: %s", name, value)
		}
	}
}

func TestHandlerRejectsInvalidLinks(t *testing.T) {
	f := newHandlerFixture(t)
	now := time.Now()
	valid := f.signer.Path(f.key, now)
	_, expires, sig := splitLink(t, valid)

	// A file next to the storage directory, which traversal would reach.
	secret := testPNG(t, 4, 4, 21)
	if err := os.WriteFile(filepath.Join(filepath.Dir(f.dir), "secret.png"), secret, 0o644); err != nil {
		t.Fatal(err)
	}
	putObject(t, f.local, "other/images/x.png", secret)

	// signed makes a link whose signature matches the given decoded key and
	// sends it with escapedPath, so only the key checks can reject it.
	signed := func(decodedKey, escapedPath string) string {
		return linkWithPath(t, f.signer.Path(decodedKey, now), escapedPath)
	}
	cases := []struct {
		name, target string
	}{
		{"tampered sig", PathPrefix + f.key + "?expires=" + expires + "&sig=" + tamperSig(sig)},
		{"missing sig", PathPrefix + f.key + "?expires=" + expires},
		{"missing expires", PathPrefix + f.key + "?sig=" + sig},
		{"no query", PathPrefix + f.key},
		{"duplicate sig", valid + "&sig=" + sig},
		{"malformed query", valid + "&x=%zz"},
		{"expired", f.signer.Path(f.key, now.Add(-2*time.Hour))},
		{"sig for another key", linkWithPath(t, valid, "aihigress/images/2026/12/05/other.png")},
		{"outside prefix", f.signer.Path("other/images/x.png", now)},
		{"prefix look-alike", signed("aihigress-x/images/x.png", "aihigress-x/images/x.png")},
		{"dot dot plain", signed("aihigress/../secret.png", "aihigress/../secret.png")},
		{"dot dot to parent of storage", signed("aihigress/../../secret.png", "aihigress/../../secret.png")},
		{"dot dot encoded", signed("aihigress/../secret.png", "aihigress/%2e%2e%2fsecret.png")},
		{"dot dot encoded uppercase", signed("aihigress/../secret.png", "aihigress%2F%2E%2E%2F..%2Fsecret.png")},
		{"dot dot encoded twice", signed("aihigress/%2e%2e/secret.png", "aihigress/%252e%252e/secret.png")},
		{"slash encoded twice", signed("aihigress/..%2fsecret.png", "aihigress/..%252fsecret.png")},
		{"encoded twice without dots", signed("aihigress/images%2fx.png", "aihigress/images%252fx.png")},
		{"backslash encoded", signed(`aihigress\..\secret.png`, "aihigress%5c..%5csecret.png")},
		{"backslash encoded twice", signed(`aihigress%5c..%5csecret.png`, "aihigress%255c..%255csecret.png")},
		{"absolute after decode", signed("/etc/passwd", "%2fetc%2fpasswd")},
		{"absolute with double slash", signed("/etc/passwd", "/etc/passwd")},
		{"NUL", signed("aihigress/x\x00.png", "aihigress/x%00.png")},
		{"newline", signed("aihigress/x\n.png", "aihigress/x%0a.png")},
		{"empty key", signed("", "")},
		{"hidden segment", signed("aihigress/.tmp-x", "aihigress/.tmp-x")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := f.get(t, tc.target, nil)
			checkInvalidLink(t, resp)
			if bytes.Contains(resp.body, secret[8:64]) {
				t.Error("the response contains the secret file")
			}
		})
	}
	if logs := f.logs.String(); strings.Contains(logs, sig) {
		t.Error("the log contains a signature")
	}
}

func TestHandlerServesObject(t *testing.T) {
	f := newHandlerFixture(t)
	link := f.signer.Path(f.key, time.Now())

	for _, method := range []string{http.MethodGet, http.MethodHead} {
		t.Run(method, func(t *testing.T) {
			resp := f.rawRequest(t, method, link, nil)
			if resp.status != http.StatusOK {
				t.Fatalf("status = %d, want 200; body %s", resp.status, resp.body)
			}
			wantBody := f.data
			if method == http.MethodHead {
				wantBody = nil
			}
			if !bytes.Equal(resp.body, wantBody) {
				t.Errorf("body has %d bytes, want %d", len(resp.body), len(wantBody))
			}
			want := map[string]string{
				"Content-Type":           "image/png",
				"Content-Length":         strconv.Itoa(len(f.data)),
				"ETag":                   f.info.ETag,
				"Last-Modified":          f.info.LastModified.UTC().Format(http.TimeFormat),
				"X-Content-Type-Options": "nosniff",
				"Accept-Ranges":          "bytes",
			}
			for name, value := range want {
				if got := resp.header.Get(name); got != value {
					t.Errorf("%s = %q, want %q", name, got, value)
				}
			}
			if got := resp.header.Get("Cache-Control"); !strings.HasPrefix(got, "private, max-age=") {
				t.Errorf("Cache-Control = %q, want private, max-age=N", got)
			}
		})
	}
}

func TestHandlerServesNonImageAsOctetStream(t *testing.T) {
	f := newHandlerFixture(t)
	cases := []struct {
		name, key       string
		data            []byte
		wantContentType string
	}{
		{"html", "aihigress/images/page.png", []byte("<!DOCTYPE html><script>alert(1)</script>"), "application/octet-stream"},
		{"jpeg", "aihigress/images/photo.jpg", testJPEG(t), "image/jpeg"},
		{"gif", "aihigress/images/anim.gif", testGIF(t), "image/gif"},
		{"webp", "aihigress/images/pic.webp", testWebP, "image/webp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			putObject(t, f.local, tc.key, tc.data)
			resp := f.get(t, f.signer.Path(tc.key, time.Now()), nil)
			if resp.status != http.StatusOK {
				t.Fatalf("status = %d, want 200", resp.status)
			}
			if got := resp.header.Get("Content-Type"); got != tc.wantContentType {
				t.Errorf("Content-Type = %q, want %q", got, tc.wantContentType)
			}
			if got := resp.header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
			}
		})
	}
}

func TestHandlerMissingObject(t *testing.T) {
	f := newHandlerFixture(t)
	link := f.signer.Path("aihigress/images/2026/12/05/missing.png", time.Now())
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		t.Run(method, func(t *testing.T) {
			resp := f.rawRequest(t, method, link, http.Header{"If-None-Match": {"*"}})
			if resp.status != http.StatusNotFound {
				t.Errorf("status = %d, want 404", resp.status)
			}
			want := `{"error":{"message":"the media object does not exist","type":"not_found_error","code":"media_not_found","param":null}}`
			if method == http.MethodGet && string(resp.body) != want {
				t.Errorf("body = %s, want %s", resp.body, want)
			}
			for _, name := range objectHeaders {
				if value := resp.header.Get(name); value != "" {
					t.Errorf("a missing object got header %s: %s", name, value)
				}
			}
		})
	}
}

func TestHandlerMethodNotAllowed(t *testing.T) {
	f := newHandlerFixture(t)
	link := f.signer.Path(f.key, time.Now())
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions} {
		t.Run(method, func(t *testing.T) {
			resp := f.rawRequest(t, method, link, http.Header{"Content-Length": {"0"}})
			if resp.status != http.StatusMethodNotAllowed {
				t.Errorf("status = %d, want 405", resp.status)
			}
			if got := resp.header.Get("Allow"); got != "GET, HEAD" {
				t.Errorf("Allow = %q, want GET, HEAD", got)
			}
			if !bytes.Contains(resp.body, []byte(`"code":"method_not_allowed"`)) {
				t.Errorf("body = %s, want code method_not_allowed", resp.body)
			}
		})
	}
	if _, err := f.local.Head(t.Context(), f.key); err != nil {
		t.Errorf("the object is gone after other methods: %v", err)
	}
}

func TestHandlerRange(t *testing.T) {
	f := newHandlerFixture(t)
	link := f.signer.Path(f.key, time.Now())
	size := len(f.data)
	lastModified := f.info.LastModified.UTC().Format(http.TimeFormat)
	older := f.info.LastModified.Add(-time.Hour).UTC().Format(http.TimeFormat)

	cases := []struct {
		name         string
		method       string
		header       http.Header
		wantStatus   int
		wantStart    int // first byte of the body, for 200 and 206
		wantEnd      int // one past the last byte
		wantRangeHdr string
	}{
		{"first bytes", "GET", http.Header{"Range": {"bytes=0-99"}}, 206, 0, 100, fmt.Sprintf("bytes 0-99/%d", size)},
		{"middle", "GET", http.Header{"Range": {"bytes=100-199"}}, 206, 100, 200, fmt.Sprintf("bytes 100-199/%d", size)},
		{"open end", "GET", http.Header{"Range": {"bytes=1000-"}}, 206, 1000, size, fmt.Sprintf("bytes 1000-%d/%d", size-1, size)},
		{"suffix", "GET", http.Header{"Range": {"bytes=-50"}}, 206, size - 50, size, fmt.Sprintf("bytes %d-%d/%d", size-50, size-1, size)},
		{"suffix longer than object", "GET", http.Header{"Range": {fmt.Sprintf("bytes=-%d", size+10)}}, 206, 0, size, fmt.Sprintf("bytes 0-%d/%d", size-1, size)},
		{"end past object", "GET", http.Header{"Range": {"bytes=10-99999999"}}, 206, 10, size, fmt.Sprintf("bytes 10-%d/%d", size-1, size)},
		{"last byte", "GET", http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", size-1, size-1)}}, 206, size - 1, size, fmt.Sprintf("bytes %d-%d/%d", size-1, size-1, size)},
		{"unit in capitals", "GET", http.Header{"Range": {"Bytes=0-9"}}, 206, 0, 10, fmt.Sprintf("bytes 0-9/%d", size)},
		{"start at size", "GET", http.Header{"Range": {fmt.Sprintf("bytes=%d-", size)}}, 416, 0, 0, fmt.Sprintf("bytes */%d", size)},
		{"start past size", "GET", http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", size+5, size+10)}}, 416, 0, 0, fmt.Sprintf("bytes */%d", size)},
		{"zero suffix", "GET", http.Header{"Range": {"bytes=-0"}}, 416, 0, 0, fmt.Sprintf("bytes */%d", size)},
		{"end before start", "GET", http.Header{"Range": {"bytes=5-2"}}, 200, 0, size, ""},
		{"several ranges", "GET", http.Header{"Range": {"bytes=0-1,5-6"}}, 200, 0, size, ""},
		{"other unit", "GET", http.Header{"Range": {"items=0-5"}}, 200, 0, size, ""},
		{"not a number", "GET", http.Header{"Range": {"bytes=a-b"}}, 200, 0, size, ""},
		{"negative start", "GET", http.Header{"Range": {"bytes=--5"}}, 200, 0, size, ""},
		{"HEAD ignores range", "HEAD", http.Header{"Range": {"bytes=0-9"}}, 200, 0, 0, ""},
		{"If-Range with ETag", "GET", http.Header{"Range": {"bytes=0-9"}, "If-Range": {f.info.ETag}}, 206, 0, 10, fmt.Sprintf("bytes 0-9/%d", size)},
		{"If-Range with other ETag", "GET", http.Header{"Range": {"bytes=0-9"}, "If-Range": {`"other"`}}, 200, 0, size, ""},
		{"If-Range with weak ETag", "GET", http.Header{"Range": {"bytes=0-9"}, "If-Range": {"W/" + f.info.ETag}}, 200, 0, size, ""},
		{"If-Range with date", "GET", http.Header{"Range": {"bytes=0-9"}, "If-Range": {lastModified}}, 206, 0, 10, fmt.Sprintf("bytes 0-9/%d", size)},
		{"If-Range with older date", "GET", http.Header{"Range": {"bytes=0-9"}, "If-Range": {older}}, 200, 0, size, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := f.rawRequest(t, tc.method, link, tc.header)
			if resp.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d; body %.200s", resp.status, tc.wantStatus, resp.body)
			}
			if got := resp.header.Get("Content-Range"); got != tc.wantRangeHdr {
				t.Errorf("Content-Range = %q, want %q", got, tc.wantRangeHdr)
			}
			switch {
			case tc.wantStatus == http.StatusRequestedRangeNotSatisfiable:
				if !bytes.Contains(resp.body, []byte(`"code":"range_not_satisfiable"`)) {
					t.Errorf("body = %s, want code range_not_satisfiable", resp.body)
				}
			case tc.method == http.MethodHead:
				if len(resp.body) != 0 || resp.header.Get("Content-Length") != strconv.Itoa(size) {
					t.Errorf("HEAD got %d body bytes and Content-Length %s, want 0 and %d", len(resp.body), resp.header.Get("Content-Length"), size)
				}
			default:
				want := f.data[tc.wantStart:tc.wantEnd]
				if !bytes.Equal(resp.body, want) {
					t.Errorf("body has %d bytes, want bytes %d to %d", len(resp.body), tc.wantStart, tc.wantEnd)
				}
				if got := resp.header.Get("Content-Length"); got != strconv.Itoa(len(want)) {
					t.Errorf("Content-Length = %s, want %d", got, len(want))
				}
				if got := resp.header.Get("Content-Type"); got != "image/png" {
					t.Errorf("Content-Type = %q, want image/png", got)
				}
			}
		})
	}
}

func TestHandlerConditional(t *testing.T) {
	f := newHandlerFixture(t)
	link := f.signer.Path(f.key, time.Now())
	later := f.info.LastModified.Add(time.Hour).UTC().Format(http.TimeFormat)
	earlier := f.info.LastModified.Add(-time.Hour).UTC().Format(http.TimeFormat)
	same := f.info.LastModified.UTC().Format(http.TimeFormat)

	cases := []struct {
		name       string
		method     string
		header     http.Header
		wantStatus int
	}{
		{"matching ETag", "GET", http.Header{"If-None-Match": {f.info.ETag}}, 304},
		{"matching ETag on HEAD", "HEAD", http.Header{"If-None-Match": {f.info.ETag}}, 304},
		{"weak ETag", "GET", http.Header{"If-None-Match": {"W/" + f.info.ETag}}, 304},
		{"star", "GET", http.Header{"If-None-Match": {"*"}}, 304},
		{"list with match", "GET", http.Header{"If-None-Match": {`"a,b", W/"c", ` + f.info.ETag}}, 304},
		{"two header lines", "GET", http.Header{"If-None-Match": {`"a"`, f.info.ETag}}, 304},
		{"other ETag", "GET", http.Header{"If-None-Match": {`"other"`}}, 200},
		{"malformed list", "GET", http.Header{"If-None-Match": {"nonsense"}}, 200},
		{"ETag without quotes", "GET", http.Header{"If-None-Match": {strings.Trim(f.info.ETag, `"`)}}, 200},
		{"modified since earlier", "GET", http.Header{"If-Modified-Since": {earlier}}, 200},
		{"not modified since same second", "GET", http.Header{"If-Modified-Since": {same}}, 304},
		{"not modified since later", "GET", http.Header{"If-Modified-Since": {later}}, 304},
		{"If-None-Match wins over date", "GET", http.Header{"If-None-Match": {`"other"`}, "If-Modified-Since": {later}}, 200},
		{"invalid date", "GET", http.Header{"If-Modified-Since": {"yesterday"}}, 200},
		{"not modified beats range", "GET", http.Header{"If-None-Match": {f.info.ETag}, "Range": {"bytes=0-9"}}, 304},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := f.rawRequest(t, tc.method, link, tc.header)
			if resp.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d", resp.status, tc.wantStatus)
			}
			if got := resp.header.Get("ETag"); got != f.info.ETag {
				t.Errorf("ETag = %q, want %q", got, f.info.ETag)
			}
			if !strings.HasPrefix(resp.header.Get("Cache-Control"), "private, max-age=") {
				t.Errorf("Cache-Control = %q, want private, max-age=N", resp.header.Get("Cache-Control"))
			}
			wantBody := f.data
			if tc.wantStatus == http.StatusNotModified || tc.method == http.MethodHead {
				wantBody = nil
			}
			if !bytes.Equal(resp.body, wantBody) {
				t.Errorf("body has %d bytes, want %d", len(resp.body), len(wantBody))
			}
		})
	}
}

func TestHandlerCacheControlWithinValidity(t *testing.T) {
	f := newHandlerFixture(t)
	longSigner, err := NewSigner(testMasterKey, "aihigress", 100*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ttl := time.Hour

	cases := []struct {
		name   string
		signer *Signer
		// signedAgo is how long before the request the link was signed.
		signedAgo time.Duration
		header    http.Header
	}{
		{"fresh link", f.signer, 0, nil},
		{"half used", f.signer, 30 * time.Minute, nil},
		{"30 seconds left", f.signer, ttl - 30*time.Second, nil},
		{"under 2 seconds left", f.signer, ttl - 1500*time.Millisecond, nil},
		{"longer than the handler's TTL", longSigner, 0, nil},
		{"304 response", f.signer, ttl - 45*time.Second, http.Header{"If-None-Match": {"*"}}},
		{"206 response", f.signer, ttl - 20*time.Second, http.Header{"Range": {"bytes=0-9"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now()
			link := tc.signer.Path(f.key, before.Add(-tc.signedAgo))
			_, expiresText, _ := splitLink(t, link)
			expiresUnix, err := strconv.ParseInt(expiresText, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			expires := time.Unix(expiresUnix, 0)

			resp := f.get(t, link, tc.header)
			after := time.Now()
			if resp.status >= 300 && resp.status != http.StatusNotModified {
				t.Fatalf("status = %d, want a success", resp.status)
			}
			maxAgeText, ok := strings.CutPrefix(resp.header.Get("Cache-Control"), "private, max-age=")
			if !ok {
				t.Fatalf("Cache-Control = %q, want private, max-age=N", resp.header.Get("Cache-Control"))
			}
			maxAge, err := strconv.ParseInt(maxAgeText, 10, 64)
			if err != nil || maxAge < 0 {
				t.Fatalf("max-age %q is not a non-negative integer", maxAgeText)
			}

			// The handler read the clock between before and after.
			upper := min(int64(expires.Sub(before)/time.Second), int64(ttl/time.Second))
			lower := min(int64(expires.Sub(after)/time.Second), int64(ttl/time.Second))
			if maxAge > upper {
				t.Errorf("max-age = %d, more than the %d whole seconds left", maxAge, upper)
			}
			if maxAge < lower-1 {
				t.Errorf("max-age = %d, want at least %d", maxAge, lower-1)
			}
		})
	}
}

func TestHandlerStorageFailure(t *testing.T) {
	f := newHandlerFixture(t)
	link := f.signer.Path(f.key, time.Now())
	_, _, sig := splitLink(t, link)
	if err := f.local.Close(); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		header http.Header
	}{
		{"plain GET", nil},
		{"range GET", http.Header{"Range": {"bytes=0-9"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := f.get(t, link, tc.header)
			if resp.status != http.StatusInternalServerError {
				t.Errorf("status = %d, want 500", resp.status)
			}
			if !bytes.Contains(resp.body, []byte(`"code":"media_storage_error"`)) {
				t.Errorf("body = %s, want code media_storage_error", resp.body)
			}
			if bytes.Contains(resp.body, []byte(f.key)) || bytes.Contains(resp.body, []byte(f.dir)) || bytes.Contains(resp.body, []byte("closed")) {
				t.Errorf("body %s reveals internals", resp.body)
			}
		})
	}

	logs := f.logs.String()
	if !strings.Contains(logs, "object_key="+f.key) {
		t.Errorf("the log lacks the object key:\n%s", logs)
	}
	if strings.Contains(logs, sig) {
		t.Error("the log contains the signature")
	}
}

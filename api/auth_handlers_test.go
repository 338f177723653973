package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/auth"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/internal/tokens"
	"github.com/aihigress/aihigress/models"
)

const (
	testSecret     = "api-test-secret-0123456789"
	testAccessTTL  = 5 * time.Minute
	testRefreshTTL = time.Hour
	testGrace      = 5 * time.Second
	testPassword   = "password123"
)

// testClock starts at the real time, so that the Redis TTLs derived from it
// are sane, and moves only when a test advances it.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// authEnv is an API server with a real database, Redis and token store but
// no Temporal, which the auth and admin user routes do not use.
type authEnv struct {
	t      *testing.T
	url    string
	store  *store.Store
	issuer *auth.Issuer
	keys   *apikeys.Service
	clock  *testClock
}

func newAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	st := testenv.Store(t)
	rdb, prefix := testenv.RedisClient(t)

	clock := &testClock{now: time.Now()}
	issuer := auth.NewIssuer(testSecret, testAccessTTL, testRefreshTTL, clock.Now)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	keys, err := apikeys.NewService(st, "auth-test-master-key-0123456789abcdef", apikeys.Options{Redis: rdb, RedisPrefix: prefix, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Store:   st,
		Issuer:  issuer,
		Tokens:  tokens.New(rdb, tokens.Options{Prefix: prefix, ReuseGrace: testGrace, Now: clock.Now}),
		APIKeys: keys,
		Catalog: providers.NewCatalog(),
		Limits:  Limits{MaxBodyBytes: 1 << 20},
		Logger:  logger,
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &authEnv{t: t, url: srv.URL, store: st, issuer: issuer, keys: keys, clock: clock}
}

// response is a decoded HTTP response; code is the error code, if any.
type response struct {
	status int
	code   string
	header http.Header
	body   []byte
}

func (e *authEnv) do(method, path, token string, body any) response {
	e.t.Helper()
	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		reader = bytes.NewReader([]byte(b))
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
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}

	r := response{status: resp.StatusCode, header: resp.Header, body: raw}
	if resp.StatusCode >= 400 {
		var eb errorBody
		if err := json.Unmarshal(raw, &eb); err != nil {
			e.t.Fatalf("%s %s: error body %q is not JSON: %v", method, path, raw, err)
		}
		r.code = eb.Error.Code
	}
	return r
}

// decode unmarshals a successful response into out.
func (r response) decode(t *testing.T, out any) {
	t.Helper()
	if err := json.Unmarshal(r.body, out); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

// expect fails the test unless the response has the status and error code.
// Every 401 must carry a WWW-Authenticate challenge.
func (r response) expect(t *testing.T, status int, code string) {
	t.Helper()
	if r.status != status || r.code != code {
		t.Fatalf("got %d %q, want %d %q; body %s", r.status, r.code, status, code, r.body)
	}
	if status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("401 %s without a WWW-Authenticate header", code)
	}
}

// register creates a user through the API and returns its ID.
func (e *authEnv) register(name string) string {
	e.t.Helper()
	r := e.do("POST", "/auth/register", "", map[string]string{"username": name, "email": name + "@example.com", "password": testPassword})
	r.expect(e.t, http.StatusCreated, "")
	var u userView
	r.decode(e.t, &u)
	return u.ID
}

// createSuperuser stores a superuser directly, as EnsureAdmin does.
func (e *authEnv) createSuperuser(name string) string {
	e.t.Helper()
	hash, err := auth.HashPassword(testPassword)
	if err != nil {
		e.t.Fatal(err)
	}
	u := &models.User{Username: name, Email: name + "@example.com", PasswordHash: hash, IsSuperuser: true, IsActive: true}
	if err := e.store.CreateUser(context.Background(), u); err != nil {
		e.t.Fatal(err)
	}
	return u.ID
}

func (e *authEnv) login(name string) auth.TokenPair {
	e.t.Helper()
	r := e.do("POST", "/auth/login", "", map[string]string{"username": name, "password": testPassword})
	r.expect(e.t, http.StatusOK, "")
	var pair auth.TokenPair
	r.decode(e.t, &pair)
	return pair
}

func (e *authEnv) refresh(refreshToken string) response {
	e.t.Helper()
	return e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": refreshToken})
}

// claims returns the verified claims of a token that the server issued.
func (e *authEnv) claims(token, tokenType string) *auth.Claims {
	e.t.Helper()
	c, err := e.issuer.Verify(token, tokenType)
	if err != nil {
		e.t.Fatalf("verify own %s token: %v", tokenType, err)
	}
	return c
}

// forge signs claims for a live session with another algorithm or key.
func forge(t *testing.T, method jwt.SigningMethod, key any, claims *auth.Claims) string {
	t.Helper()
	token, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s token: %v", method.Alg(), err)
	}
	return token
}

func TestAccessTokenRejected(t *testing.T) {
	e := newAuthEnv(t)
	userID := e.register("alice")
	pair := e.login("alice")
	live := e.claims(pair.AccessToken, auth.AccessToken)

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	past := auth.NewIssuer(testSecret, testAccessTTL, testRefreshTTL, func() time.Time { return e.clock.Now().Add(-2 * testAccessTTL) })
	expired, err := past.IssuePair(userID, live.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	otherSecret := auth.NewIssuer("another-secret-0123456789", testAccessTTL, testRefreshTTL, e.clock.Now)
	foreign, err := otherSecret.IssuePair(userID, live.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	unrecorded, err := e.issuer.IssuePair(userID, auth.NewSessionID())
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		token  string
		status int
		code   string
	}{
		{"valid token", pair.AccessToken, http.StatusOK, ""},
		{"missing token", "", http.StatusUnauthorized, "missing_token"},
		{"refresh token", pair.RefreshToken, http.StatusUnauthorized, "wrong_token_type"},
		{"expired", expired.AccessToken, http.StatusUnauthorized, "invalid_token"},
		{"alg none", forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, live), http.StatusUnauthorized, "invalid_token"},
		{"alg HS512", forge(t, jwt.SigningMethodHS512, []byte(testSecret), live), http.StatusUnauthorized, "invalid_token"},
		{"alg RS256", forge(t, jwt.SigningMethodRS256, rsaKey, live), http.StatusUnauthorized, "invalid_token"},
		{"other secret", foreign.AccessToken, http.StatusUnauthorized, "invalid_token"},
		{"unrecorded session", unrecorded.AccessToken, http.StatusUnauthorized, "token_revoked"},
		{"garbage", "not.a.jwt", http.StatusUnauthorized, "invalid_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.do("GET", "/auth/me", tt.token, nil).expect(t, tt.status, tt.code)
		})
	}
}

func TestRefreshRejected(t *testing.T) {
	e := newAuthEnv(t)
	userID := e.register("alice")
	pair := e.login("alice")
	live := e.claims(pair.RefreshToken, auth.RefreshToken)

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	past := auth.NewIssuer(testSecret, testAccessTTL, testRefreshTTL, func() time.Time { return e.clock.Now().Add(-2 * testRefreshTTL) })
	expired, err := past.IssuePair(userID, live.SessionID)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"access token", map[string]string{"refresh_token": pair.AccessToken}, http.StatusUnauthorized, "wrong_token_type"},
		{"expired", map[string]string{"refresh_token": expired.RefreshToken}, http.StatusUnauthorized, "invalid_token"},
		{"alg none", map[string]string{"refresh_token": forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, live)}, http.StatusUnauthorized, "invalid_token"},
		{"alg HS512", map[string]string{"refresh_token": forge(t, jwt.SigningMethodHS512, []byte(testSecret), live)}, http.StatusUnauthorized, "invalid_token"},
		{"alg RS256", map[string]string{"refresh_token": forge(t, jwt.SigningMethodRS256, rsaKey, live)}, http.StatusUnauthorized, "invalid_token"},
		{"missing field", map[string]string{}, http.StatusBadRequest, "invalid_request"},
		{"blank token", map[string]string{"refresh_token": "  "}, http.StatusBadRequest, "invalid_request"},
		{"unknown field", map[string]string{"refresh_token": pair.RefreshToken, "user_id": userID}, http.StatusBadRequest, "unknown_field"},
		{"wrong type", `{"refresh_token": 42}`, http.StatusBadRequest, "invalid_field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.do("POST", "/auth/refresh", "", tt.body).expect(t, tt.status, tt.code)
		})
	}

	// None of the rejected requests may have used up the live token.
	e.refresh(pair.RefreshToken).expect(t, http.StatusOK, "")
}

func TestTokenExpiry(t *testing.T) {
	e := newAuthEnv(t)
	e.register("alice")
	pair := e.login("alice")

	e.clock.Advance(testAccessTTL + time.Second)
	e.do("GET", "/auth/me", pair.AccessToken, nil).expect(t, http.StatusUnauthorized, "invalid_token")

	r := e.refresh(pair.RefreshToken)
	r.expect(t, http.StatusOK, "")
	var next auth.TokenPair
	r.decode(t, &next)
	e.do("GET", "/auth/me", next.AccessToken, nil).expect(t, http.StatusOK, "")

	e.clock.Advance(testRefreshTTL + time.Second)
	e.refresh(next.RefreshToken).expect(t, http.StatusUnauthorized, "invalid_token")
	e.do("GET", "/auth/me", next.AccessToken, nil).expect(t, http.StatusUnauthorized, "invalid_token")
}

func TestRefreshRotation(t *testing.T) {
	e := newAuthEnv(t)
	e.register("alice")
	first := e.login("alice")

	r := e.refresh(first.RefreshToken)
	r.expect(t, http.StatusOK, "")
	var second auth.TokenPair
	r.decode(t, &second)
	if second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Fatal("refresh returned a token of the old pair")
	}
	if got, want := e.claims(second.AccessToken, auth.AccessToken).SessionID, e.claims(first.AccessToken, auth.AccessToken).SessionID; got != want {
		t.Errorf("new pair is in session %s, want the old session %s", got, want)
	}
	if second.TokenType != "bearer" || second.ExpiresIn != int64(testAccessTTL/time.Second) {
		t.Errorf("token_type %q, expires_in %d; want bearer, %d", second.TokenType, second.ExpiresIn, int64(testAccessTTL/time.Second))
	}
	e.do("GET", "/auth/me", second.AccessToken, nil).expect(t, http.StatusOK, "")

	// Within the grace window the old token counts as a lost race.
	e.refresh(first.RefreshToken).expect(t, http.StatusUnauthorized, "refresh_token_superseded")
	e.do("GET", "/auth/me", second.AccessToken, nil).expect(t, http.StatusOK, "")

	// After it, the old token is a reuse and revokes the session.
	e.clock.Advance(testGrace + time.Second)
	e.refresh(first.RefreshToken).expect(t, http.StatusUnauthorized, "refresh_token_reused")
	e.do("GET", "/auth/me", second.AccessToken, nil).expect(t, http.StatusUnauthorized, "token_revoked")
	e.do("GET", "/auth/me", first.AccessToken, nil).expect(t, http.StatusUnauthorized, "token_revoked")
	e.refresh(second.RefreshToken).expect(t, http.StatusUnauthorized, "token_revoked")

	// Other sessions of the user are not part of the revoked family.
	other := e.login("alice")
	e.do("GET", "/auth/me", other.AccessToken, nil).expect(t, http.StatusOK, "")
}

func TestRefreshRaceOverHTTP(t *testing.T) {
	e := newAuthEnv(t)
	e.register("alice")
	pair := e.login("alice")

	const rounds, racers = 10, 6
	for round := range rounds {
		results := make([]response, racers)
		var start, done sync.WaitGroup
		start.Add(1)
		for i := range racers {
			done.Add(1)
			go func() {
				defer done.Done()
				start.Wait()
				results[i] = e.refresh(pair.RefreshToken)
			}()
		}
		start.Done()
		done.Wait()

		winner := -1
		for i, r := range results {
			switch {
			case r.status == http.StatusOK:
				if winner >= 0 {
					t.Fatalf("round %d: requests %d and %d both won", round, winner, i)
				}
				winner = i
			case r.status != http.StatusUnauthorized || r.code != "refresh_token_superseded":
				t.Fatalf("round %d: request %d got %d %q, want 200 or 401 refresh_token_superseded", round, i, r.status, r.code)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no request won", round)
		}
		results[winner].decode(t, &pair)
		e.do("GET", "/auth/me", pair.AccessToken, nil).expect(t, http.StatusOK, "")
	}
}

func TestLogout(t *testing.T) {
	e := newAuthEnv(t)
	e.register("alice")
	a := e.login("alice")
	b := e.login("alice")

	e.do("POST", "/auth/logout", a.RefreshToken, nil).expect(t, http.StatusUnauthorized, "wrong_token_type")
	e.do("POST", "/auth/logout", a.AccessToken, nil).expect(t, http.StatusNoContent, "")

	e.do("GET", "/auth/me", a.AccessToken, nil).expect(t, http.StatusUnauthorized, "token_revoked")
	e.refresh(a.RefreshToken).expect(t, http.StatusUnauthorized, "token_revoked")
	e.do("POST", "/auth/logout", a.AccessToken, nil).expect(t, http.StatusUnauthorized, "token_revoked")
	e.do("GET", "/auth/me", b.AccessToken, nil).expect(t, http.StatusOK, "")
	e.refresh(b.RefreshToken).expect(t, http.StatusOK, "")
}

func TestLogoutAll(t *testing.T) {
	e := newAuthEnv(t)
	e.register("alice")
	e.register("bob")
	sessions := []auth.TokenPair{e.login("alice"), e.login("alice"), e.login("alice")}
	bob := e.login("bob")

	e.do("POST", "/auth/logout-all", sessions[1].AccessToken, nil).expect(t, http.StatusNoContent, "")

	for i, pair := range sessions {
		t.Run(fmt.Sprintf("session %d", i), func(t *testing.T) {
			e.do("GET", "/auth/me", pair.AccessToken, nil).expect(t, http.StatusUnauthorized, "token_revoked")
			e.refresh(pair.RefreshToken).expect(t, http.StatusUnauthorized, "token_revoked")
		})
	}
	e.do("GET", "/auth/me", bob.AccessToken, nil).expect(t, http.StatusOK, "")
	e.refresh(bob.RefreshToken).expect(t, http.StatusOK, "")

	again := e.login("alice")
	e.do("GET", "/auth/me", again.AccessToken, nil).expect(t, http.StatusOK, "")
}

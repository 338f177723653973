package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestPasswordHashRoundTrip(t *testing.T) {
	hash, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if hash == "correct horse" {
		t.Fatal("hash equals the password")
	}
	if !CheckPassword(hash, "correct horse") {
		t.Error("the right password was rejected")
	}
	if CheckPassword(hash, "wrong horse") {
		t.Error("a wrong password was accepted")
	}
}

func TestVerifyRejects(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	issuer := NewIssuer("0123456789abcdef0123", time.Minute, time.Hour, func() time.Time { return now })
	pair, err := issuer.IssuePair("user-1", NewSessionID())
	if err != nil {
		t.Fatal(err)
	}

	noneToken, err := jwt.NewWithClaims(jwt.SigningMethodNone, Claims{Type: AccessToken, RegisteredClaims: jwt.RegisteredClaims{
		Subject: "user-1", ID: "x", ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	hs512, err := jwt.NewWithClaims(jwt.SigningMethodHS512, Claims{Type: AccessToken, RegisteredClaims: jwt.RegisteredClaims{
		Subject: "user-1", ID: "x", ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}}).SignedString([]byte("0123456789abcdef0123"))
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs256, err := jwt.NewWithClaims(jwt.SigningMethodRS256, Claims{Type: AccessToken, SessionID: "s", RegisteredClaims: jwt.RegisteredClaims{
		Subject: "user-1", ID: "x", ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}}).SignedString(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	noSession, _, err := issuer.sign("user-1", "", AccessToken, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	otherSecret := NewIssuer("another-secret-of-20", time.Minute, time.Hour, func() time.Time { return now })
	foreign, err := otherSecret.IssuePair("user-1", NewSessionID())
	if err != nil {
		t.Fatal(err)
	}
	later := NewIssuer("0123456789abcdef0123", time.Minute, time.Hour, func() time.Time { return now.Add(2 * time.Minute) })

	expiredRefresh := NewIssuer("0123456789abcdef0123", time.Minute, time.Hour, func() time.Time { return now.Add(2 * time.Hour) })

	tests := []struct {
		name      string
		issuer    *Issuer
		token     string
		wantType  string
		wrongType bool
	}{
		{"refresh as access", issuer, pair.RefreshToken, AccessToken, true},
		{"access as refresh", issuer, pair.AccessToken, RefreshToken, true},
		{"alg none", issuer, noneToken, AccessToken, false},
		{"alg HS512", issuer, hs512, AccessToken, false},
		{"alg RS256", issuer, rs256, AccessToken, false},
		{"other secret", issuer, foreign.AccessToken, AccessToken, false},
		{"expired access", later, pair.AccessToken, AccessToken, false},
		{"expired refresh", expiredRefresh, pair.RefreshToken, RefreshToken, false},
		{"missing session", issuer, noSession, AccessToken, false},
		{"garbage", issuer, "not.a.jwt", AccessToken, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.issuer.Verify(tt.token, tt.wantType)
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify error = %v, want ErrInvalidToken", err)
			}
			if got := errors.Is(err, ErrWrongTokenType); got != tt.wrongType {
				t.Errorf("errors.Is(err, ErrWrongTokenType) = %v, want %v (err %v)", got, tt.wrongType, err)
			}
		})
	}

	claims, err := issuer.Verify(pair.AccessToken, AccessToken)
	if err != nil {
		t.Fatalf("valid access token rejected: %v", err)
	}
	if claims.Subject != "user-1" {
		t.Errorf("subject = %q, want user-1", claims.Subject)
	}
}

func TestIssuePairSharesSession(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	issuer := NewIssuer("0123456789abcdef0123", time.Minute, time.Hour, func() time.Time { return now })
	sessionID := NewSessionID()
	pair, err := issuer.IssuePair("user-1", sessionID)
	if err != nil {
		t.Fatal(err)
	}

	access, err := issuer.Verify(pair.AccessToken, AccessToken)
	if err != nil {
		t.Fatalf("access token rejected: %v", err)
	}
	refresh, err := issuer.Verify(pair.RefreshToken, RefreshToken)
	if err != nil {
		t.Fatalf("refresh token rejected: %v", err)
	}
	if access.SessionID != sessionID || refresh.SessionID != sessionID {
		t.Errorf("session IDs = %q and %q, want %q", access.SessionID, refresh.SessionID, sessionID)
	}
	if refresh.ID != pair.RefreshID {
		t.Errorf("refresh jti = %q, IssuedPair.RefreshID = %q", refresh.ID, pair.RefreshID)
	}
	if access.ID == refresh.ID {
		t.Error("access and refresh token share a jti")
	}
	if !pair.RefreshExpiresAt.Equal(now.Add(time.Hour)) {
		t.Errorf("RefreshExpiresAt = %v, want %v", pair.RefreshExpiresAt, now.Add(time.Hour))
	}
	if pair.ExpiresIn != 60 {
		t.Errorf("ExpiresIn = %d, want 60", pair.ExpiresIn)
	}

	if _, err := issuer.IssuePair("user-1", ""); err == nil {
		t.Error("IssuePair accepted an empty session ID")
	}
}

package auth

import (
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
	pair, err := issuer.IssuePair("user-1")
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
	otherSecret := NewIssuer("another-secret-of-20", time.Minute, time.Hour, func() time.Time { return now })
	foreign, err := otherSecret.IssuePair("user-1")
	if err != nil {
		t.Fatal(err)
	}
	later := NewIssuer("0123456789abcdef0123", time.Minute, time.Hour, func() time.Time { return now.Add(2 * time.Minute) })

	tests := []struct {
		name     string
		issuer   *Issuer
		token    string
		wantType string
	}{
		{"refresh as access", issuer, pair.RefreshToken, AccessToken},
		{"access as refresh", issuer, pair.AccessToken, RefreshToken},
		{"alg none", issuer, noneToken, AccessToken},
		{"alg HS512", issuer, hs512, AccessToken},
		{"other secret", issuer, foreign.AccessToken, AccessToken},
		{"expired access", later, pair.AccessToken, AccessToken},
		{"garbage", issuer, "not.a.jwt", AccessToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.issuer.Verify(tt.token, tt.wantType)
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify error = %v, want ErrInvalidToken", err)
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

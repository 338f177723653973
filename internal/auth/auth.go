// Package auth hashes passwords and issues and verifies JWTs.
package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"
)

// Token types, carried in the "typ" claim.
const (
	AccessToken  = "access"
	RefreshToken = "refresh"
)

// ErrInvalidToken covers every reason to reject a token: bad signature,
// wrong algorithm, wrong type, expiry or malformed claims.
var ErrInvalidToken = errors.New("invalid token")

// ErrWrongTokenType is returned for a valid token of the other type, such as
// a refresh token sent as an access token. It wraps ErrInvalidToken.
var ErrWrongTokenType = fmt.Errorf("%w: wrong token type", ErrInvalidToken)

// HashPassword returns a bcrypt hash of password.
func HashPassword(password string) (string, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(hash), nil
}

// CheckPassword reports whether password matches the bcrypt hash.
func CheckPassword(hash, password string) bool {
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// Claims are the JWT claims of both token types.
type Claims struct {
	Type      string `json:"typ"`
	SessionID string `json:"sid"`
	jwt.RegisteredClaims
}

// Issuer signs and verifies HS256 tokens.
type Issuer struct {
	secret     []byte
	accessTTL  time.Duration
	refreshTTL time.Duration
	now        func() time.Time
}

// NewIssuer returns an Issuer; now is usually time.Now.
func NewIssuer(secret string, accessTTL, refreshTTL time.Duration, now func() time.Time) *Issuer {
	return &Issuer{secret: []byte(secret), accessTTL: accessTTL, refreshTTL: refreshTTL, now: now}
}

// TokenPair is the response body of a successful login or refresh.
type TokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
}

// IssuedPair is a signed token pair with the refresh token's claims, which
// the session store records.
type IssuedPair struct {
	TokenPair
	SessionID        string
	RefreshID        string
	RefreshExpiresAt time.Time
}

// NewSessionID returns a random ID for a new login session.
func NewSessionID() string {
	return uuid.NewString()
}

// IssuePair signs a new access and refresh token for userID in the session
// sessionID. Login passes a NewSessionID; refresh passes the session of the
// token it replaces.
func (i *Issuer) IssuePair(userID, sessionID string) (IssuedPair, error) {
	if userID == "" || sessionID == "" {
		return IssuedPair{}, errors.New("issue tokens: user ID and session ID are required")
	}
	access, _, err := i.sign(userID, sessionID, AccessToken, i.accessTTL)
	if err != nil {
		return IssuedPair{}, err
	}
	refresh, refreshClaims, err := i.sign(userID, sessionID, RefreshToken, i.refreshTTL)
	if err != nil {
		return IssuedPair{}, err
	}
	return IssuedPair{
		TokenPair: TokenPair{
			AccessToken:  access,
			RefreshToken: refresh,
			TokenType:    "bearer",
			ExpiresIn:    int64(i.accessTTL / time.Second),
		},
		SessionID:        sessionID,
		RefreshID:        refreshClaims.ID,
		RefreshExpiresAt: refreshClaims.ExpiresAt.Time,
	}, nil
}

func (i *Issuer) sign(userID, session, tokenType string, ttl time.Duration) (string, *Claims, error) {
	now := i.now()
	claims := Claims{
		Type:      tokenType,
		SessionID: session,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   userID,
			ID:        uuid.NewString(),
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(i.secret)
	if err != nil {
		return "", nil, fmt.Errorf("sign %s token: %w", tokenType, err)
	}
	return signed, &claims, nil
}

// Verify parses a token and checks its signature, algorithm (HS256 only),
// expiry and type. Every error wraps ErrInvalidToken, and a token of the
// other type also wraps ErrWrongTokenType. Verify does not know whether the
// token's session is still live; the session store checks that.
func (i *Issuer) Verify(token, wantType string) (*Claims, error) {
	var claims Claims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return i.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithTimeFunc(i.now),
		jwt.WithExpirationRequired(),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if claims.Type != wantType {
		return nil, fmt.Errorf("%w: expected a %s token, got %q", ErrWrongTokenType, wantType, claims.Type)
	}
	if claims.Subject == "" || claims.ID == "" || claims.SessionID == "" {
		return nil, fmt.Errorf("%w: missing sub, jti or sid", ErrInvalidToken)
	}
	return &claims, nil
}

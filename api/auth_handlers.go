package api

import (
	"errors"
	"net/http"
	"net/mail"
	"regexp"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/auth"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/tokens"
	"github.com/aihigress/aihigress/models"
)

var usernamePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{3,64}$`)

type userView struct {
	ID          string    `json:"id"`
	Username    string    `json:"username"`
	Email       string    `json:"email"`
	IsSuperuser bool      `json:"is_superuser"`
	IsActive    bool      `json:"is_active"`
	CreatedAt   time.Time `json:"created_at"`
}

func viewUser(u *models.User) userView {
	return userView{ID: u.ID, Username: u.Username, Email: u.Email, IsSuperuser: u.IsSuperuser, IsActive: u.IsActive, CreatedAt: u.CreatedAt}
}

func (s *Server) register(c *gin.Context) {
	var req struct {
		Username string `json:"username"`
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	if !usernamePattern.MatchString(req.Username) {
		abortError(c, http.StatusBadRequest, "invalid_username", "username must be 3 to 64 letters, digits, '_', '.' or '-'")
		return
	}
	if addr, err := mail.ParseAddress(req.Email); err != nil || addr.Address != req.Email {
		abortError(c, http.StatusBadRequest, "invalid_email", "email must be a plain address such as name@example.com")
		return
	}
	if len(req.Password) < 8 || len(req.Password) > 72 {
		abortError(c, http.StatusBadRequest, "invalid_password", "password must be 8 to 72 bytes long")
		return
	}

	hash, err := auth.HashPassword(req.Password)
	if err != nil {
		s.internalError(c, "hash password failed", err)
		return
	}
	user := &models.User{Username: req.Username, Email: req.Email, PasswordHash: hash, IsActive: true}
	if err := s.Store.CreateUser(c, user); err != nil {
		if errors.Is(err, store.ErrConflict) {
			abortError(c, http.StatusConflict, "user_exists", "username or email is already registered")
			return
		}
		s.internalError(c, "create user failed", err)
		return
	}
	c.JSON(http.StatusCreated, viewUser(user))
}

func (s *Server) login(c *gin.Context) {
	var req struct {
		Username string `json:"username"`
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	login := strings.TrimSpace(req.Username)
	if login == "" {
		login = strings.TrimSpace(req.Email)
	}
	if login == "" || req.Password == "" {
		abortError(c, http.StatusBadRequest, "invalid_request", "send username (or email) and password")
		return
	}

	user, err := s.Store.UserByLogin(c, login)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.internalError(c, "look up user failed", err)
		return
	}
	if user == nil || !auth.CheckPassword(user.PasswordHash, req.Password) {
		abortError(c, http.StatusUnauthorized, "invalid_credentials", "username or password is incorrect")
		return
	}
	if !user.IsActive {
		abortError(c, http.StatusForbidden, "user_disabled", "this account is disabled")
		return
	}

	pair, err := s.Issuer.IssuePair(user.ID, auth.NewSessionID())
	if err != nil {
		s.internalError(c, "issue tokens failed", err)
		return
	}
	if err := s.Tokens.Create(c, user.ID, pair.SessionID, pair.RefreshID, pair.RefreshExpiresAt); err != nil {
		s.unavailable(c, "record session failed", err)
		return
	}
	c.JSON(http.StatusOK, pair.TokenPair)
}

// refresh exchanges a refresh token for a new pair in the same session. The
// internal/tokens package comment gives the rotation rule, which separates a
// replayed token from a lost race.
func (s *Server) refresh(c *gin.Context) {
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if !decodeJSON(c, &req) {
		return
	}
	token := strings.TrimSpace(req.RefreshToken)
	if token == "" {
		abortParamError(c, http.StatusBadRequest, "invalid_request", "refresh_token", "send the refresh_token from login or the last refresh")
		return
	}

	claims, err := s.Issuer.Verify(token, auth.RefreshToken)
	if err != nil {
		abortVerifyError(c, err, auth.RefreshToken)
		return
	}
	if _, ok := s.loadTokenUser(c, claims); !ok {
		return
	}

	pair, err := s.Issuer.IssuePair(claims.Subject, claims.SessionID)
	if err != nil {
		s.internalError(c, "issue tokens failed", err)
		return
	}
	err = s.Tokens.Rotate(c, claims.Subject, claims.SessionID, claims.ID, pair.RefreshID, pair.RefreshExpiresAt)
	if errors.Is(err, tokens.ErrRefreshReused) {
		s.Logger.Warn("refresh token reused; session revoked", "user_id", claims.Subject, "session_id", claims.SessionID, "request_id", c.GetString("request_id"))
	}
	if err != nil {
		s.abortSessionError(c, err)
		return
	}
	c.JSON(http.StatusOK, pair.TokenPair)
}

// logout revokes the session of the request's access token.
func (s *Server) logout(c *gin.Context) {
	claims := currentClaims(c)
	if err := s.Tokens.Revoke(c, claims.Subject, claims.SessionID); err != nil {
		s.unavailable(c, "revoke session failed", err)
		return
	}
	c.Status(http.StatusNoContent)
}

// logoutAll revokes every session of the current user, this one included.
func (s *Server) logoutAll(c *gin.Context) {
	user := currentUser(c)
	n, err := s.Tokens.RevokeAll(c, user.ID)
	if err != nil {
		s.unavailable(c, "revoke sessions failed", err)
		return
	}
	s.Logger.Info("all sessions revoked by the user", "user_id", user.ID, "sessions", n)
	c.Status(http.StatusNoContent)
}

func (s *Server) me(c *gin.Context) {
	c.JSON(http.StatusOK, viewUser(currentUser(c)))
}

// requireUser authenticates the bearer access token, loads its user and
// checks that the token's session is live. It sets "user", "user_id" and
// "token_claims".
func (s *Server) requireUser(c *gin.Context) {
	header := c.GetHeader("Authorization")
	token, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		token, ok = strings.CutPrefix(header, "bearer ")
	}
	if !ok || strings.TrimSpace(token) == "" {
		c.Header("WWW-Authenticate", "Bearer")
		abortError(c, http.StatusUnauthorized, "missing_token", "send an access token as 'Authorization: Bearer <token>'")
		return
	}

	if strings.HasPrefix(strings.TrimSpace(token), apikeys.SecretPrefix) {
		c.Header("WWW-Authenticate", "Bearer")
		abortError(c, http.StatusUnauthorized, "access_token_required",
			"this route needs a user's access token from POST /auth/login; API keys work on /v1/chat/completions, /v1/images/generations, /v1/models and /v1/runs")
		return
	}
	claims, err := s.Issuer.Verify(strings.TrimSpace(token), auth.AccessToken)
	if err != nil {
		abortVerifyError(c, err, auth.AccessToken)
		return
	}
	user, ok := s.loadTokenUser(c, claims)
	if !ok {
		return
	}
	if err := s.Tokens.Check(c, user.ID, claims.SessionID); err != nil {
		s.abortSessionError(c, err)
		return
	}

	c.Set("user", user)
	c.Set("user_id", user.ID)
	c.Set("token_claims", claims)
	c.Next()
}

// loadTokenUser loads the user in the token's sub claim and rejects a
// deleted or disabled user. On failure it writes the error and returns
// false.
func (s *Server) loadTokenUser(c *gin.Context, claims *auth.Claims) (*models.User, bool) {
	user, err := s.Store.UserByID(c, claims.Subject)
	if errors.Is(err, store.ErrNotFound) {
		abortTokenError(c, "invalid_token", "the token is invalid or expired; log in again")
		return nil, false
	}
	if err != nil {
		s.unavailable(c, "look up user failed", err)
		return nil, false
	}
	if !user.IsActive {
		abortError(c, http.StatusForbidden, "user_disabled", "this account is disabled")
		return nil, false
	}
	return user, true
}

// abortTokenError rejects the request's token with 401 and the RFC 6750
// challenge for an invalid token.
func abortTokenError(c *gin.Context, code, message string) {
	c.Header("WWW-Authenticate", `Bearer error="invalid_token"`)
	abortError(c, http.StatusUnauthorized, code, message)
}

// abortVerifyError writes the 401 for an error from auth.Issuer.Verify.
func abortVerifyError(c *gin.Context, err error, wantType string) {
	if !errors.Is(err, auth.ErrWrongTokenType) {
		abortTokenError(c, "invalid_token", "the "+wantType+" token is invalid or expired; log in again")
		return
	}
	if wantType == auth.AccessToken {
		abortTokenError(c, "wrong_token_type", "expected an access token, got a refresh token; exchange it at POST /auth/refresh")
		return
	}
	abortTokenError(c, "wrong_token_type", "expected a refresh token, got an access token; send the refresh_token from login or the last refresh")
}

// abortSessionError writes the response for an error from the token store:
// 401 for a session that is not live or a refresh token that was already
// used, and 503 when Redis fails.
func (s *Server) abortSessionError(c *gin.Context, err error) {
	switch {
	case errors.Is(err, tokens.ErrSessionRevoked):
		abortTokenError(c, "token_revoked", "the session was logged out, revoked or has expired; log in again")
	case errors.Is(err, tokens.ErrRefreshReused):
		abortTokenError(c, "refresh_token_reused", "the refresh token was already used, so its session is revoked; log in again")
	case errors.Is(err, tokens.ErrRefreshSuperseded):
		abortTokenError(c, "refresh_token_superseded", "a concurrent request already used this refresh token; use the token pair it returned")
	default:
		s.unavailable(c, "check session failed", err)
	}
}

func currentUser(c *gin.Context) *models.User {
	return c.MustGet("user").(*models.User)
}

// currentClaims returns the access token claims that requireUser verified.
func currentClaims(c *gin.Context) *auth.Claims {
	return c.MustGet("token_claims").(*auth.Claims)
}

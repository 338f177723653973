package api

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/apikeys"
)

// apiKeySecret returns the API key that the request carries in
// "Authorization: Bearer" or X-API-Key, or "".
func apiKeySecret(c *gin.Context) string {
	if key := strings.TrimSpace(c.GetHeader("X-API-Key")); key != "" {
		return key
	}
	header := c.GetHeader("Authorization")
	if token, ok := cutBearer(header); ok && strings.HasPrefix(token, apikeys.SecretPrefix) {
		return token
	}
	return ""
}

// cutBearer returns the token of an "Authorization: Bearer <token>" header.
func cutBearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// requireAPIKey authenticates the request's API key and stores its
// principal in the context.
func (s *Server) requireAPIKey(c *gin.Context) {
	secret := apiKeySecret(c)
	if secret == "" {
		c.Header("WWW-Authenticate", "Bearer")
		abortError(c, http.StatusUnauthorized, "missing_api_key", "send an API key as 'Authorization: Bearer ahk-...' or 'X-API-Key: ahk-...'")
		return
	}
	s.authenticateAPIKey(c, secret)
}

// requireUserOrAPIKey accepts an API key or a user's access token, for the
// routes that both gateway clients and the web app use.
func (s *Server) requireUserOrAPIKey(c *gin.Context) {
	if secret := apiKeySecret(c); secret != "" {
		s.authenticateAPIKey(c, secret)
		return
	}
	if _, ok := cutBearer(c.GetHeader("Authorization")); !ok {
		c.Header("WWW-Authenticate", "Bearer")
		abortError(c, http.StatusUnauthorized, "missing_token",
			"send an access token or an API key as 'Authorization: Bearer <token>', or the API key as 'X-API-Key'")
		return
	}
	s.requireUser(c)
}

func (s *Server) authenticateAPIKey(c *gin.Context, secret string) {
	clientIP, _ := netip.ParseAddr(c.ClientIP())
	principal, err := s.APIKeys.Authenticate(c, secret, clientIP)
	switch {
	case err == nil:
	case errors.Is(err, apikeys.ErrInvalidKey):
		c.Header("WWW-Authenticate", `Bearer error="invalid_token"`)
		abortError(c, http.StatusUnauthorized, "invalid_api_key", "the API key is invalid; check it or create a new one")
		return
	case errors.Is(err, apikeys.ErrExpired):
		abortError(c, http.StatusUnauthorized, "api_key_expired", "the API key has expired; create a new one")
		return
	case errors.Is(err, apikeys.ErrDisabled):
		abortError(c, http.StatusUnauthorized, "api_key_disabled", "the API key is disabled")
		return
	case errors.Is(err, apikeys.ErrUserDisabled):
		abortError(c, http.StatusForbidden, "user_disabled", "the account that owns this API key is disabled")
		return
	case errors.Is(err, apikeys.ErrIPNotAllowed):
		abortError(c, http.StatusForbidden, "ip_not_allowed", "the API key may not be used from "+clientIP.String())
		return
	default:
		s.unavailable(c, "check API key failed", err)
		return
	}

	c.Set("api_key", principal)
	c.Set("user_id", principal.UserID)
	c.Next()
}

// currentAPIKey returns the request's API key, or nil when the request was
// authenticated with an access token.
func currentAPIKey(c *gin.Context) *apikeys.Principal {
	p, _ := c.Get("api_key")
	principal, _ := p.(*apikeys.Principal)
	return principal
}

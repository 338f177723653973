package api

import (
	"errors"
	"net/http"
	"net/mail"
	"regexp"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/auth"
	"github.com/aihigress/aihigress/internal/store"
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

	pair, err := s.Issuer.IssuePair(user.ID)
	if err != nil {
		s.internalError(c, "issue tokens failed", err)
		return
	}
	c.JSON(http.StatusOK, pair)
}

func (s *Server) me(c *gin.Context) {
	c.JSON(http.StatusOK, viewUser(currentUser(c)))
}

// requireUser authenticates the bearer access token and loads its user.
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

	claims, err := s.Issuer.Verify(strings.TrimSpace(token), auth.AccessToken)
	if err != nil {
		c.Header("WWW-Authenticate", `Bearer error="invalid_token"`)
		abortError(c, http.StatusUnauthorized, "invalid_token", "the access token is invalid or expired; log in again")
		return
	}

	user, err := s.Store.UserByID(c, claims.Subject)
	if errors.Is(err, store.ErrNotFound) {
		abortError(c, http.StatusUnauthorized, "invalid_token", "the token's user no longer exists")
		return
	}
	if err != nil {
		s.unavailable(c, "look up user failed", err)
		return
	}
	if !user.IsActive {
		abortError(c, http.StatusForbidden, "user_disabled", "this account is disabled")
		return
	}

	c.Set("user", user)
	c.Set("user_id", user.ID)
	c.Next()
}

func currentUser(c *gin.Context) *models.User {
	return c.MustGet("user").(*models.User)
}

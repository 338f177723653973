package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

// Limits of the API key management routes.
const (
	maxAPIKeyNameChars = 100
	maxAPIKeyListItems = 100
	maxAPIKeyDays      = 3650
	// maxEchoedChars bounds the part of a rejected value that an error
	// message repeats.
	maxEchoedChars = 100
)

// registerAPIKeyRoutes adds the API key management routes, which need a
// logged-in user. An API key cannot manage keys.
func (s *Server) registerAPIKeyRoutes(v1 *gin.RouterGroup) {
	v1.POST("/api-keys", s.createAPIKey)
	v1.GET("/api-keys", s.listAPIKeys)
	v1.GET("/api-keys/:id", s.getAPIKey)
	v1.PATCH("/api-keys/:id", s.updateAPIKey)
	v1.DELETE("/api-keys/:id", s.deleteAPIKey)
}

type apiKeyView struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Key is the secret, set only in the response that creates the key.
	Key            string     `json:"key,omitempty"`
	Prefix         string     `json:"prefix"`
	ExpiresAt      *time.Time `json:"expires_at"`
	AllowedModels  []string   `json:"allowed_models"`
	AllowedIPs     []string   `json:"allowed_ips"`
	IsActive       bool       `json:"is_active"`
	DisabledReason *string    `json:"disabled_reason"`
	LastUsedAt     *time.Time `json:"last_used_at"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// viewAPIKey shows a key that has expired as inactive with reason
// "expired" even before the sweep has marked it so.
func viewAPIKey(k *models.APIKey, now time.Time) apiKeyView {
	v := apiKeyView{
		ID: k.ID, Name: k.Name, Prefix: k.Prefix, ExpiresAt: k.ExpiresAt,
		AllowedModels: jsonStrings(k.AllowedModels), AllowedIPs: jsonStrings(k.AllowedIPs),
		IsActive: k.IsActive, DisabledReason: nullable(k.DisabledReason),
		LastUsedAt: k.LastUsedAt, CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt,
	}
	if k.IsActive && k.ExpiresAt != nil && !now.Before(*k.ExpiresAt) {
		v.IsActive = false
		v.DisabledReason = nullable(store.APIKeyDisabledExpired)
	}
	return v
}

// jsonStrings decodes a stored JSON string list; NULL stays nil. The lists
// were validated before they were stored, so a decoding error cannot occur
// for rows written by this API.
func jsonStrings(raw models.JSON) []string {
	if len(raw) == 0 {
		return nil
	}
	var items []string
	_ = json.Unmarshal(raw, &items)
	return items
}

type apiKeyCreateRequest struct {
	Name          string          `json:"name"`
	ExpiresInDays json.RawMessage `json:"expires_in_days"`
	ExpiresAt     json.RawMessage `json:"expires_at"`
	AllowedModels json.RawMessage `json:"allowed_models"`
	AllowedIPs    json.RawMessage `json:"allowed_ips"`
}

func (s *Server) createAPIKey(c *gin.Context) {
	var req apiKeyCreateRequest
	if !decodeJSON(c, &req) {
		return
	}
	name, ok := validAPIKeyName(c, req.Name)
	if !ok {
		return
	}
	expiresAt, ok := validExpiry(c, req.ExpiresInDays, req.ExpiresAt, time.Now())
	if !ok {
		return
	}
	allowedModels, _, ok := s.validAllowedModels(c, req.AllowedModels)
	if !ok {
		return
	}
	allowedIPs, _, ok := validAllowedIPs(c, req.AllowedIPs)
	if !ok {
		return
	}

	secret, key, err := s.APIKeys.Create(c, currentUser(c).ID, apikeys.NewKey{
		Name: name, ExpiresAt: expiresAt, AllowedModels: allowedModels, AllowedIPs: allowedIPs,
	})
	if err != nil {
		s.internalError(c, "create API key failed", err)
		return
	}
	s.Logger.Info("API key created", "user_id", key.UserID, "api_key_id", key.ID, "prefix", key.Prefix)
	view := viewAPIKey(key, time.Now())
	view.Key = secret
	c.JSON(http.StatusCreated, view)
}

func (s *Server) listAPIKeys(c *gin.Context) {
	page, ok := pageParams(c)
	if !ok {
		return
	}
	items, next, err := s.Store.ListAPIKeys(c, currentUser(c).ID, page)
	if s.pageError(c, err) {
		return
	}
	now := time.Now()
	views := make([]apiKeyView, len(items))
	for i := range items {
		views[i] = viewAPIKey(&items[i], now)
	}
	c.JSON(http.StatusOK, gin.H{"items": views, "next_cursor": nullable(next)})
}

func (s *Server) getAPIKey(c *gin.Context) {
	key, err := s.Store.APIKey(c, currentUser(c).ID, c.Param("id"))
	if s.lookupError(c, "api_key", err) {
		return
	}
	c.JSON(http.StatusOK, viewAPIKey(key, time.Now()))
}

type apiKeyUpdateRequest struct {
	Name          *string         `json:"name"`
	AllowedModels json.RawMessage `json:"allowed_models"`
	AllowedIPs    json.RawMessage `json:"allowed_ips"`
	IsActive      *bool           `json:"is_active"`
}

func (s *Server) updateAPIKey(c *gin.Context) {
	user := currentUser(c)
	id := c.Param("id")
	// Look the key up first so that another user's key gets 404 before
	// any validation error could tell that it exists.
	if _, err := s.Store.APIKey(c, user.ID, id); s.lookupError(c, "api_key", err) {
		return
	}
	var req apiKeyUpdateRequest
	if !decodeJSON(c, &req) {
		return
	}

	var (
		change apikeys.Change
		ok     bool
	)
	if req.Name != nil {
		name, ok := validAPIKeyName(c, *req.Name)
		if !ok {
			return
		}
		change.Name = &name
	}
	if change.AllowedModels, change.SetAllowedModels, ok = s.validAllowedModels(c, req.AllowedModels); !ok {
		return
	}
	if change.AllowedIPs, change.SetAllowedIPs, ok = validAllowedIPs(c, req.AllowedIPs); !ok {
		return
	}
	change.IsActive = req.IsActive
	if change.Name == nil && !change.SetAllowedModels && !change.SetAllowedIPs && change.IsActive == nil {
		abortError(c, http.StatusBadRequest, "invalid_request", "send at least one of name, allowed_models, allowed_ips and is_active")
		return
	}

	key, err := s.APIKeys.Update(c, user.ID, id, change)
	if s.apiKeyWriteError(c, err) {
		return
	}
	s.Logger.Info("API key updated", "user_id", user.ID, "api_key_id", id)
	c.JSON(http.StatusOK, viewAPIKey(key, time.Now()))
}

func (s *Server) deleteAPIKey(c *gin.Context) {
	user := currentUser(c)
	id := c.Param("id")
	if s.apiKeyWriteError(c, s.APIKeys.Delete(c, user.ID, id)) {
		return
	}
	s.Logger.Info("API key deleted", "user_id", user.ID, "api_key_id", id)
	c.Status(http.StatusNoContent)
}

// apiKeyWriteError writes the response for an error of Service.Update or
// Service.Delete and returns true when err is not nil.
func (s *Server) apiKeyWriteError(c *gin.Context, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrNotFound):
		abortError(c, http.StatusNotFound, "api_key_not_found", "api_key not found")
	case errors.Is(err, apikeys.ErrEnableExpired):
		abortParamError(c, http.StatusConflict, "api_key_expired", "is_active",
			"the API key has expired and cannot be enabled again; create a new key")
	case errors.Is(err, apikeys.ErrCacheUnavailable):
		s.unavailable(c, "clear the API key cache failed, so the change was not applied", err)
	default:
		s.internalError(c, "change API key failed", err)
	}
	return true
}

// validAPIKeyName trims name and writes a 400 unless it is 1 to
// maxAPIKeyNameChars characters without control characters.
func validAPIKeyName(c *gin.Context, name string) (string, bool) {
	name = strings.TrimSpace(name)
	if name == "" || len([]rune(name)) > maxAPIKeyNameChars {
		abortParamError(c, http.StatusBadRequest, "invalid_name", "name",
			fmt.Sprintf("name is required and must be 1 to %d characters", maxAPIKeyNameChars))
		return "", false
	}
	if strings.ContainsFunc(name, unicode.IsControl) {
		abortParamError(c, http.StatusBadRequest, "invalid_name", "name", "name must not contain control characters such as line breaks or tabs")
		return "", false
	}
	return name, true
}

// validExpiry returns the expiry time that expires_in_days or expires_at
// requests, or nil when neither is set. It writes a 400 for a bad value.
func validExpiry(c *gin.Context, rawDays, rawAt json.RawMessage, now time.Time) (*time.Time, bool) {
	hasDays, hasAt := !isAbsentOrNull(rawDays), !isAbsentOrNull(rawAt)
	switch {
	case hasDays && hasAt:
		abortParamError(c, http.StatusBadRequest, "invalid_expiry", "expires_at", "send expires_in_days or expires_at, not both")
		return nil, false
	case hasDays:
		days, err := strconv.Atoi(string(rawDays))
		if err != nil || days < 1 || days > maxAPIKeyDays {
			abortParamError(c, http.StatusBadRequest, "invalid_expiry", "expires_in_days",
				fmt.Sprintf("expires_in_days must be an integer from 1 to %d, got %s", maxAPIKeyDays, echo(string(rawDays))))
			return nil, false
		}
		t := now.Add(time.Duration(days) * 24 * time.Hour).UTC()
		return &t, true
	case hasAt:
		var text string
		if err := json.Unmarshal(rawAt, &text); err != nil {
			abortParamError(c, http.StatusBadRequest, "invalid_expiry", "expires_at",
				"expires_at must be an RFC 3339 time string such as \"2030-01-31T00:00:00Z\"")
			return nil, false
		}
		t, err := time.Parse(time.RFC3339, text)
		if err != nil {
			abortParamError(c, http.StatusBadRequest, "invalid_expiry", "expires_at",
				fmt.Sprintf("expires_at %s is not an RFC 3339 time such as \"2030-01-31T00:00:00Z\"", echo(text)))
			return nil, false
		}
		if !t.After(now) {
			abortParamError(c, http.StatusBadRequest, "invalid_expiry", "expires_at", "expires_at must be in the future")
			return nil, false
		}
		if t.After(now.Add(maxAPIKeyDays * 24 * time.Hour)) {
			abortParamError(c, http.StatusBadRequest, "invalid_expiry", "expires_at",
				fmt.Sprintf("expires_at must be at most %d days ahead", maxAPIKeyDays))
			return nil, false
		}
		t = t.UTC()
		return &t, true
	}
	return nil, true
}

// validAllowedModels decodes allowed_models. set is false when the field is
// absent; a null list is nil and allows every model, and an empty list
// allows none. It writes a 400 unless every name is a logical model of the
// catalog.
func (s *Server) validAllowedModels(c *gin.Context, raw json.RawMessage) (names []string, set, ok bool) {
	if len(raw) == 0 {
		return nil, false, true
	}
	items, ok := decodeStringList(c, raw, "allowed_models", "invalid_allowed_models", "logical model names")
	if !ok || items == nil {
		return nil, true, ok
	}

	names = make([]string, 0, len(items))
	for _, name := range items {
		if strings.TrimSpace(name) == "" {
			abortParamError(c, http.StatusBadRequest, "invalid_allowed_models", "allowed_models", "allowed_models must not contain empty names")
			return nil, true, false
		}
		if _, known := s.Catalog.Model(name); !known {
			abortParamError(c, http.StatusBadRequest, "unknown_model", "allowed_models",
				fmt.Sprintf("allowed_models contains %s, which is not a known logical model; GET /v1/models lists them", echo(name)))
			return nil, true, false
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names, true, true
}

// validAllowedIPs decodes allowed_ips into normalized prefixes. set is
// false when the field is absent, and a null list is nil, which allows any
// address. An empty list is rejected because a key that no address may use
// is almost certainly a client bug.
func validAllowedIPs(c *gin.Context, raw json.RawMessage) (prefixes []netip.Prefix, set, ok bool) {
	if len(raw) == 0 {
		return nil, false, true
	}
	items, ok := decodeStringList(c, raw, "allowed_ips", "invalid_allowed_ips", "CIDR prefixes or IP addresses")
	if !ok || items == nil {
		return nil, true, ok
	}
	if len(items) == 0 {
		abortParamError(c, http.StatusBadRequest, "invalid_allowed_ips", "allowed_ips",
			"allowed_ips must list at least one prefix; send null to allow any address")
		return nil, true, false
	}

	prefixes = make([]netip.Prefix, 0, len(items))
	for _, item := range items {
		prefix, err := apikeys.ParsePrefix(strings.TrimSpace(item))
		if err != nil {
			abortParamError(c, http.StatusBadRequest, "invalid_allowed_ips", "allowed_ips",
				fmt.Sprintf("allowed_ips contains %s, which is not a CIDR prefix such as \"203.0.113.0/24\" or an IP address", echo(item)))
			return nil, true, false
		}
		if !slices.Contains(prefixes, prefix) {
			prefixes = append(prefixes, prefix)
		}
	}
	return prefixes, true, true
}

// decodeStringList decodes raw as null (nil) or a JSON array of at most
// maxAPIKeyListItems strings, and writes a 400 with code and param field
// otherwise.
func decodeStringList(c *gin.Context, raw json.RawMessage, field, code, what string) ([]string, bool) {
	if isAbsentOrNull(raw) {
		return nil, true
	}
	var items []*string
	if err := json.Unmarshal(raw, &items); err != nil || slices.Contains(items, nil) {
		abortParamError(c, http.StatusBadRequest, code, field, fmt.Sprintf("%s must be null or an array of strings (%s)", field, what))
		return nil, false
	}
	if len(items) > maxAPIKeyListItems {
		abortParamError(c, http.StatusBadRequest, code, field,
			fmt.Sprintf("%s has %d entries; the maximum is %d", field, len(items), maxAPIKeyListItems))
		return nil, false
	}
	out := make([]string, len(items))
	for i, item := range items {
		out[i] = *item
	}
	return out, true
}

func isAbsentOrNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// echo quotes a rejected value for an error message, cut to maxEchoedChars
// characters.
func echo(value string) string {
	if runes := []rune(value); len(runes) > maxEchoedChars {
		value = string(runes[:maxEchoedChars]) + "…"
	}
	return strconv.Quote(value)
}

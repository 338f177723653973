// Package apikeys creates gateway API keys and authenticates requests that
// carry one.
package apikeys

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/aihigress/aihigress/internal/secrets"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

// SecretPrefix starts every API key secret.
const SecretPrefix = "ahk-"

// visiblePrefixLength is how many leading characters of a secret are stored
// and listed in clear, so that users can tell their keys apart.
const visiblePrefixLength = len(SecretPrefix) + 8

// Authentication failures. The messages are safe to show to clients: none
// tells whether a key exists.
var (
	ErrInvalidKey   = errors.New("invalid API key")
	ErrExpired      = errors.New("API key has expired")
	ErrDisabled     = errors.New("API key is disabled")
	ErrIPNotAllowed = errors.New("client address is not allowed for this API key")
)

// Principal is the authenticated API key of a request.
type Principal struct {
	KeyID  string
	UserID string
	Name   string
	// AllowedModels is nil when the key may use every logical model.
	AllowedModels []string
	// AllowedIPs is nil when the key may be used from any address.
	AllowedIPs []netip.Prefix
	ExpiresAt  *time.Time
}

// AllowsModel reports whether the key may use the logical model name.
func (p *Principal) AllowsModel(name string) bool {
	return p.AllowedModels == nil || slices.Contains(p.AllowedModels, name)
}

// AllowsIP reports whether the key may be used from addr.
func (p *Principal) AllowsIP(addr netip.Addr) bool {
	if p.AllowedIPs == nil {
		return true
	}
	addr = addr.Unmap()
	for _, prefix := range p.AllowedIPs {
		if prefix.Contains(addr) {
			return true
		}
	}
	return false
}

// Service creates and authenticates API keys.
type Service struct {
	store *store.Store
	mac   *secrets.MAC
	now   func() time.Time
}

// NewService returns a Service that hashes secrets under a key derived from
// masterKey.
func NewService(st *store.Store, masterKey string) (*Service, error) {
	mac, err := secrets.NewMAC(masterKey, secrets.PurposeAPIKeys)
	if err != nil {
		return nil, err
	}
	return &Service{store: st, mac: mac, now: time.Now}, nil
}

// NewKey describes a key to create. Nil lists allow everything.
type NewKey struct {
	Name          string
	ExpiresAt     *time.Time
	AllowedModels []string
	AllowedIPs    []netip.Prefix
}

// Create stores a new key for userID and returns its secret, which is not
// stored and cannot be shown again.
func (s *Service) Create(ctx context.Context, userID string, in NewKey) (string, *models.APIKey, error) {
	secret := newSecret()
	key := &models.APIKey{
		UserID:        userID,
		Name:          in.Name,
		Prefix:        secret[:visiblePrefixLength],
		KeyHash:       s.mac.Sum(secret),
		ExpiresAt:     in.ExpiresAt,
		AllowedModels: jsonList(in.AllowedModels),
		AllowedIPs:    jsonList(prefixStrings(in.AllowedIPs)),
		IsActive:      true,
	}
	if err := s.store.CreateAPIKey(ctx, key); err != nil {
		return "", nil, err
	}
	return secret, key, nil
}

// Authenticate checks secret, sent from clientIP, and returns its key. The
// error wraps one of the Err values above, or is a storage failure.
func (s *Service) Authenticate(ctx context.Context, secret string, clientIP netip.Addr) (*Principal, error) {
	if !strings.HasPrefix(secret, SecretPrefix) || len(secret) > 128 {
		return nil, ErrInvalidKey
	}
	key, err := s.store.APIKeyByHash(ctx, s.mac.Sum(secret))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrInvalidKey
	}
	if err != nil {
		return nil, fmt.Errorf("look up API key: %w", err)
	}

	principal, err := principalOf(key)
	if err != nil {
		return nil, err
	}
	if !key.IsActive {
		return nil, ErrDisabled
	}
	if key.ExpiresAt != nil && !s.now().Before(*key.ExpiresAt) {
		return nil, ErrExpired
	}
	if !principal.AllowsIP(clientIP) {
		return nil, ErrIPNotAllowed
	}
	return principal, nil
}

func principalOf(key *models.APIKey) (*Principal, error) {
	p := &Principal{KeyID: key.ID, UserID: key.UserID, Name: key.Name, ExpiresAt: key.ExpiresAt}
	if len(key.AllowedModels) > 0 && string(key.AllowedModels) != "null" {
		if err := json.Unmarshal(key.AllowedModels, &p.AllowedModels); err != nil {
			return nil, fmt.Errorf("decode allowed_models of API key %s: %w", key.ID, err)
		}
		if p.AllowedModels == nil {
			p.AllowedModels = []string{}
		}
	}
	if len(key.AllowedIPs) > 0 && string(key.AllowedIPs) != "null" {
		var raw []string
		if err := json.Unmarshal(key.AllowedIPs, &raw); err != nil {
			return nil, fmt.Errorf("decode allowed_ips of API key %s: %w", key.ID, err)
		}
		p.AllowedIPs = []netip.Prefix{}
		for _, r := range raw {
			prefix, err := netip.ParsePrefix(r)
			if err != nil {
				return nil, fmt.Errorf("decode allowed_ips of API key %s: %w", key.ID, err)
			}
			p.AllowedIPs = append(p.AllowedIPs, prefix)
		}
	}
	return p, nil
}

// newSecret returns SecretPrefix followed by 32 random bytes in base64url.
func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error since Go 1.24.
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b)
}

func jsonList(items []string) models.JSON {
	if items == nil {
		return nil
	}
	return models.MustJSON(items)
}

func prefixStrings(prefixes []netip.Prefix) []string {
	if prefixes == nil {
		return nil
	}
	out := make([]string, len(prefixes))
	for i, p := range prefixes {
		out[i] = p.String()
	}
	return out
}

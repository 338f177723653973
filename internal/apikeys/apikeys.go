// Package apikeys creates, changes and authenticates gateway API keys.
//
// Only the HMAC-SHA256 of a secret is stored. Authenticate looks the HMAC up
// in a small in-process cache, then in Redis, then in the database. Every
// change to a key deletes its cache entries and publishes an invalidation
// message on a Redis channel that every API process subscribes to, so a
// disabled or deleted key stops working everywhere within LocalCacheTTL
// (1 s by default).
package apikeys

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/aihigress/aihigress/internal/secrets"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

// SecretPrefix starts every API key secret.
const SecretPrefix = "ahk-"

// visiblePrefixLength is how many leading characters of a secret are stored
// and listed in clear, so that users can tell their keys apart.
const visiblePrefixLength = len(SecretPrefix) + 8

// maxSecretLength bounds the input that Authenticate hashes. Real secrets
// are 47 characters long.
const maxSecretLength = 128

// Authentication failures. The messages are safe to show to clients,
// because none reveals whether a key exists.
var (
	ErrInvalidKey   = errors.New("invalid API key")
	ErrExpired      = errors.New("API key has expired")
	ErrDisabled     = errors.New("API key is disabled")
	ErrIPNotAllowed = errors.New("client address is not allowed for this API key")
	ErrUserDisabled = errors.New("the account that owns this API key is disabled")
)

// Management failures.
var (
	// ErrEnableExpired is returned by Update when asked to enable a key
	// whose expires_at has passed.
	ErrEnableExpired = errors.New("an expired API key cannot be enabled")
	// ErrCacheUnavailable is returned by Update and Delete when deleting
	// the key's Redis entry failed. The database is left unchanged then.
	ErrCacheUnavailable = errors.New("API key cache is unavailable")
)

// Principal is the authenticated API key of a request. The slices are
// shared with the cache, so callers must not modify them.
type Principal struct {
	KeyID  string
	UserID string
	Name   string
	// AllowedModels is nil when the key may use every logical model, and
	// empty when it may use none.
	AllowedModels []string
	// AllowedIPs is nil when the key may be used from any address.
	AllowedIPs []netip.Prefix
	ExpiresAt  *time.Time
}

// AllowsModel reports whether the key may use the logical model name.
func (p *Principal) AllowsModel(name string) bool {
	return p.AllowedModels == nil || slices.Contains(p.AllowedModels, name)
}

// AllowsIP reports whether the key may be used from addr. An IPv4-mapped
// IPv6 address is matched as the IPv4 address it contains.
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

// Options configures the caches and the background work of a Service.
type Options struct {
	// Redis holds the shared cache and carries invalidation messages. With
	// nil, keys are cached in process only and other API processes learn of
	// a change only when their LocalCacheTTL runs out.
	Redis *redis.Client
	// RedisPrefix starts every Redis key and channel name.
	RedisPrefix string
	// CacheTTL is how long a key stays in Redis; 60 s when zero.
	CacheTTL time.Duration
	// LocalCacheTTL bounds how long a process trusts its own copy of a key,
	// and so how long a missed invalidation message can keep a disabled key
	// working there; 1 s when zero.
	LocalCacheTTL time.Duration
	// LocalCacheSize is the maximum number of keys cached in process; 10000
	// when zero, and a negative value turns the in-process cache off.
	LocalCacheSize int
	// SweepInterval is how often Run marks expired keys inactive. Zero
	// turns Run's sweep off, for processes that leave it to the worker's
	// schedule, which calls Sweep.
	SweepInterval time.Duration
	// Logger receives warnings about Redis and the sweep; slog.Default when
	// nil.
	Logger *slog.Logger
}

// Service creates, changes and authenticates API keys.
type Service struct {
	store  *store.Store
	mac    *secrets.MAC
	now    func() time.Time
	logger *slog.Logger

	local  *localCache // nil when turned off
	shared *redisCache // nil without Redis
	flight singleflight.Group

	usage         usageTracker
	sweepInterval time.Duration

	// subscribed is closed once the invalidation channel subscription is
	// confirmed, so tests can wait for it.
	subscribed     chan struct{}
	subscribedOnce sync.Once
	redisWarnings  throttledLog
}

// NewService returns a Service that hashes secrets under a key derived from
// masterKey. Call Run to receive invalidations, write last_used_at and,
// with a SweepInterval, sweep expired keys.
func NewService(st *store.Store, masterKey string, opts Options) (*Service, error) {
	mac, err := secrets.NewMAC(masterKey, secrets.PurposeAPIKeys)
	if err != nil {
		return nil, err
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = 60 * time.Second
	}
	if opts.LocalCacheTTL <= 0 {
		opts.LocalCacheTTL = time.Second
	}
	if opts.LocalCacheSize == 0 {
		opts.LocalCacheSize = 10000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}

	s := &Service{
		store:         st,
		mac:           mac,
		now:           time.Now,
		logger:        opts.Logger,
		usage:         newUsageTracker(),
		sweepInterval: opts.SweepInterval,
		subscribed:    make(chan struct{}),
		redisWarnings: throttledLog{every: 10 * time.Second},
	}
	if opts.LocalCacheSize > 0 {
		s.local = newLocalCache(opts.LocalCacheTTL, opts.LocalCacheSize)
	}
	if opts.Redis != nil {
		s.shared = newRedisCache(opts.Redis, opts.RedisPrefix, opts.CacheTTL)
	}
	return s, nil
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
		ExpiresAt:     storedTime(in.ExpiresAt),
		AllowedModels: jsonList(in.AllowedModels),
		AllowedIPs:    jsonList(prefixStrings(in.AllowedIPs)),
		IsActive:      true,
	}
	if err := s.store.CreateAPIKey(ctx, key); err != nil {
		return "", nil, err
	}
	return secret, key, nil
}

// Change lists the fields of a key to change; nil and false leave a field
// as it is.
type Change struct {
	Name *string
	// SetAllowedModels replaces the model allow list with AllowedModels,
	// where nil allows every model.
	SetAllowedModels bool
	AllowedModels    []string
	// SetAllowedIPs replaces the address allow list with AllowedIPs, where
	// nil allows any address.
	SetAllowedIPs bool
	AllowedIPs    []netip.Prefix
	IsActive      *bool
}

// maxWriteTime bounds a database write that runs while a key's Redis entry
// is blocked from refills. It must stay well below tombstoneTTL.
const maxWriteTime = 10 * time.Second

// Update applies ch to the user's key id and returns the key as stored. It
// returns store.ErrNotFound for a key of another user, ErrEnableExpired, or
// ErrCacheUnavailable.
func (s *Service) Update(ctx context.Context, userID, id string, ch Change) (*models.APIKey, error) {
	key, err := s.store.APIKey(ctx, userID, id)
	if err != nil {
		return nil, err
	}

	changes := map[string]any{}
	if ch.Name != nil {
		changes["name"] = *ch.Name
	}
	if ch.SetAllowedModels {
		changes["allowed_models"] = jsonList(ch.AllowedModels)
	}
	if ch.SetAllowedIPs {
		changes["allowed_ips"] = jsonList(prefixStrings(ch.AllowedIPs))
	}
	if ch.IsActive != nil {
		switch {
		case *ch.IsActive && isExpired(key.ExpiresAt, s.now()):
			return nil, fmt.Errorf("enable API key %s: %w", id, ErrEnableExpired)
		case *ch.IsActive:
			changes["is_active"], changes["disabled_reason"] = true, ""
		case key.IsActive:
			changes["is_active"], changes["disabled_reason"] = false, store.APIKeyDisabledByUser
		}
	}
	if len(changes) == 0 {
		return key, nil
	}

	if err := s.write(ctx, key.KeyHash, func(ctx context.Context) error {
		return s.store.UpdateAPIKey(ctx, userID, id, changes)
	}); err != nil {
		return nil, err
	}
	return s.store.APIKey(ctx, userID, id)
}

// Delete removes the user's key id. It returns store.ErrNotFound for a key
// of another user, or ErrCacheUnavailable.
func (s *Service) Delete(ctx context.Context, userID, id string) error {
	key, err := s.store.APIKey(ctx, userID, id)
	if err != nil {
		return err
	}
	return s.write(ctx, key.KeyHash, func(ctx context.Context) error {
		return s.store.DeleteAPIKey(ctx, userID, id)
	})
}

// Disable marks the key id of any user inactive with reason and drops its
// cache entries in every API process, unless the key is inactive already
// or was changed after notChangedSince, such as by a user who enabled it
// again. It reports whether it disabled the key, and returns
// store.ErrNotFound for an unknown id or ErrCacheUnavailable. The worker's
// error rate job uses it; users change their keys with Update.
func (s *Service) Disable(ctx context.Context, id, reason string, notChangedSince time.Time) (bool, error) {
	key, err := s.store.APIKeyByID(ctx, id)
	if err != nil {
		return false, err
	}
	disabled := false
	err = s.write(ctx, key.KeyHash, func(ctx context.Context) error {
		var err error
		disabled, err = s.store.DisableAPIKey(ctx, id, reason, notChangedSince)
		return err
	})
	return disabled, err
}

// DropUserKeys drops the cached entries of every key of userID in every API
// process. Call it after the user's account was disabled or enabled, so that
// their keys follow at once.
func (s *Service) DropUserKeys(ctx context.Context, userID string) error {
	hashes, err := s.store.APIKeyHashes(ctx, userID)
	if err != nil {
		return err
	}
	// Blocking first keeps a lookup that read the account before the change
	// from putting its stale entry back into Redis.
	for _, hash := range hashes {
		if err := s.blockCache(ctx, hash); err != nil {
			return err
		}
	}
	s.dropCache(ctx, hashes...)
	return nil
}

// write runs a database change of the key with hash between the two halves
// of a cache invalidation. The first half blocks Redis refills of the key,
// so a lookup that read the old row cannot put it back afterwards. The
// second half publishes the invalidation to every API process.
func (s *Service) write(ctx context.Context, hash string, change func(context.Context) error) error {
	if err := s.blockCache(ctx, hash); err != nil {
		return err
	}

	writeCtx, cancel := context.WithTimeout(ctx, maxWriteTime)
	err := change(writeCtx)
	cancel()

	// Drop the entries even when the write failed: the block has already
	// removed the Redis entry, and a fresh lookup costs one query.
	s.dropCache(context.WithoutCancel(ctx), hash)
	return err
}

// Authenticate checks secret, sent from clientIP, and returns its key. The
// error wraps one of the Err values above, or is a storage failure.
func (s *Service) Authenticate(ctx context.Context, secret string, clientIP netip.Addr) (*Principal, error) {
	if !strings.HasPrefix(secret, SecretPrefix) || len(secret) > maxSecretLength {
		return nil, ErrInvalidKey
	}
	now := s.now()
	e, err := s.lookup(ctx, s.mac.Sum(secret), now)
	if err != nil {
		return nil, err
	}
	if e.missing {
		return nil, ErrInvalidKey
	}

	// Expiry is checked before the active flag, so a key that the sweep has
	// disabled still reports that it expired.
	if isExpired(e.principal.ExpiresAt, now) {
		return nil, ErrExpired
	}
	if !e.active {
		return nil, ErrDisabled
	}
	if e.ownerDisabled {
		return nil, ErrUserDisabled
	}
	if !e.principal.AllowsIP(clientIP) {
		return nil, ErrIPNotAllowed
	}

	s.usage.touch(e.principal.KeyID, now)
	principal := e.principal
	return &principal, nil
}

func isExpired(expiresAt *time.Time, now time.Time) bool {
	return expiresAt != nil && !now.Before(*expiresAt)
}

func principalOf(key *models.APIKey) (Principal, error) {
	p := Principal{KeyID: key.ID, UserID: key.UserID, Name: key.Name, ExpiresAt: utc(key.ExpiresAt)}
	if len(key.AllowedModels) > 0 && string(key.AllowedModels) != "null" {
		if err := json.Unmarshal(key.AllowedModels, &p.AllowedModels); err != nil {
			return Principal{}, fmt.Errorf("decode allowed_models of API key %s: %w", key.ID, err)
		}
		if p.AllowedModels == nil {
			p.AllowedModels = []string{}
		}
	}
	if len(key.AllowedIPs) > 0 && string(key.AllowedIPs) != "null" {
		var raw []string
		if err := json.Unmarshal(key.AllowedIPs, &raw); err != nil {
			return Principal{}, fmt.Errorf("decode allowed_ips of API key %s: %w", key.ID, err)
		}
		prefixes, err := parsePrefixes(raw)
		if err != nil {
			return Principal{}, fmt.Errorf("decode allowed_ips of API key %s: %w", key.ID, err)
		}
		p.AllowedIPs = prefixes
	}
	return p, nil
}

func parsePrefixes(raw []string) ([]netip.Prefix, error) {
	if raw == nil {
		return nil, nil
	}
	prefixes := make([]netip.Prefix, 0, len(raw))
	for _, r := range raw {
		prefix, err := netip.ParsePrefix(r)
		if err != nil {
			return nil, err
		}
		prefixes = append(prefixes, prefix)
	}
	return prefixes, nil
}

// ParsePrefix parses one entry of an address allow list: a CIDR prefix, or
// a bare address, which becomes a /32 or /128 prefix. The result is masked,
// and an IPv4-mapped IPv6 address or prefix becomes plain IPv4, because
// AllowsIP unmaps client addresses before matching them.
func ParsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		addr, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if addr.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("address %q has a zone", s)
		}
		addr = addr.Unmap()
		return netip.PrefixFrom(addr, addr.BitLen()), nil
	}

	prefix, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if addr := prefix.Addr(); addr.Is4In6() {
		if prefix.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("IPv4-mapped prefix %q must be /96 or longer", s)
		}
		prefix = netip.PrefixFrom(addr.Unmap(), prefix.Bits()-96)
	}
	return prefix.Masked(), nil
}

// newSecret returns SecretPrefix followed by 32 random bytes in base64url.
func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error since Go 1.24.
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b)
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// storedTime returns t in UTC, cut to the microsecond precision of a
// PostgreSQL timestamp, so that the created key matches what a later read
// of the row returns.
func storedTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC().Truncate(time.Microsecond)
	return &u
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

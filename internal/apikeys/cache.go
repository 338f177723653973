package apikeys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

const (
	// tombstoneTTL is how long Redis refuses refills of a key after a
	// change began. A refill that read the database before the change
	// could otherwise store the old row once the change is done.
	tombstoneTTL = 30 * time.Second
	// maxFillDelay is the oldest database read that may still be written
	// to Redis. maxWriteTime + maxFillDelay must stay below tombstoneTTL.
	maxFillDelay = 10 * time.Second
	// lookupTimeout bounds a cache miss, which runs detached from the
	// request that started it because other requests may wait for it.
	lookupTimeout = 5 * time.Second
)

// entry is the cached state of one key hash.
type entry struct {
	principal Principal
	active    bool
	// ownerDisabled is set when the account that owns the key is disabled.
	ownerDisabled bool
	// missing is set when no key has the hash. Such entries are kept in
	// process only.
	missing bool
}

func entryOf(key *models.APIKey, ownerActive bool) (*entry, error) {
	principal, err := principalOf(key)
	if err != nil {
		return nil, err
	}
	return &entry{principal: principal, active: key.IsActive, ownerDisabled: !ownerActive}, nil
}

// lookup returns the entry of hash from the first cache that has it, or
// from the database.
func (s *Service) lookup(ctx context.Context, hash string, now time.Time) (*entry, error) {
	if e, ok := s.local.get(hash, now); ok {
		return e, nil
	}
	// Concurrent misses on one hash share a single load. The load is
	// detached from ctx because the requests waiting on it may outlive the
	// one that started it.
	v, err, _ := s.flight.Do(hash, func() (any, error) {
		loadCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
		defer cancel()
		return s.load(loadCtx, hash)
	})
	if err != nil {
		return nil, err
	}
	return v.(*entry), nil
}

func (s *Service) load(ctx context.Context, hash string) (*entry, error) {
	generation := s.local.generation()

	if s.shared != nil {
		e, err := s.shared.get(ctx, hash)
		switch {
		case err != nil:
			s.redisWarnings.warn(s.logger, "read API key from Redis failed; using the database", err)
		case e != nil:
			s.local.put(hash, e, generation, s.now())
			return e, nil
		}
	}

	readAt := time.Now()
	key, ownerActive, err := s.store.APIKeyByHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		e := &entry{missing: true}
		s.local.put(hash, e, generation, s.now())
		return e, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up API key: %w", err)
	}
	e, err := entryOf(key, ownerActive)
	if err != nil {
		return nil, err
	}
	s.local.put(hash, e, generation, s.now())

	if s.shared != nil && time.Since(readAt) < maxFillDelay {
		if err := s.shared.fill(ctx, hash, e); err != nil {
			s.redisWarnings.warn(s.logger, "write API key to Redis failed", err)
		}
	}
	return e, nil
}

// blockCache starts an invalidation of hash: it drops the local copy and
// deletes the Redis entry while refusing refills for tombstoneTTL.
func (s *Service) blockCache(ctx context.Context, hash string) error {
	s.local.invalidate(hash)
	if s.shared == nil {
		return nil
	}
	if err := s.shared.block(ctx, hash); err != nil {
		return fmt.Errorf("%w: %w", ErrCacheUnavailable, err)
	}
	return nil
}

// dropCache deletes the cache entries of hashes here, in Redis and, through
// the invalidation channel, in every other API process. A failure is logged
// only: the Redis entries were blocked before the change, and other
// processes drop their copies within LocalCacheTTL anyway.
func (s *Service) dropCache(ctx context.Context, hashes ...string) {
	s.local.invalidate(hashes...)
	if s.shared == nil || len(hashes) == 0 {
		return
	}
	if err := s.shared.drop(ctx, hashes...); err != nil {
		s.logger.Warn("publish API key invalidation failed; other API processes drop their copies when their local cache TTL ends",
			"keys", len(hashes), "error", err)
	}
}

// localCache is a bounded in-process map from key hash to entry, with a
// short TTL. Its generation counter makes it safe against this race: a
// load reads Redis or the database, an invalidation runs, and then the
// load stores what it read. put refuses an entry whose load began before
// the latest invalidation.
type localCache struct {
	ttl     time.Duration
	maxSize int

	mu      sync.RWMutex
	entries map[string]localEntry
	gen     uint64
}

type localEntry struct {
	entry   *entry
	expires time.Time
}

func newLocalCache(ttl time.Duration, maxSize int) *localCache {
	return &localCache{ttl: ttl, maxSize: maxSize, entries: make(map[string]localEntry)}
}

// get returns the entry of hash unless it is absent or older than the TTL.
// A nil cache has no entries.
func (c *localCache) get(hash string, now time.Time) (*entry, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.RLock()
	le, ok := c.entries[hash]
	c.mu.RUnlock()
	if !ok || !now.Before(le.expires) {
		return nil, false
	}
	return le.entry, true
}

// generation returns the value that a load passes to put.
func (c *localCache) generation() uint64 {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// put stores e unless an invalidation ran since generation was read.
func (c *localCache) put(hash string, e *entry, generation uint64, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != generation {
		return
	}
	if _, ok := c.entries[hash]; !ok && len(c.entries) >= c.maxSize {
		c.evict(now)
	}
	c.entries[hash] = localEntry{entry: e, expires: now.Add(c.ttl)}
}

// evict makes room in a full map: it removes the expired entries and, when
// that frees less than an eighth, further entries in map order, which Go
// randomizes. The caller holds mu.
func (c *localCache) evict(now time.Time) {
	for hash, le := range c.entries {
		if !now.Before(le.expires) {
			delete(c.entries, hash)
		}
	}
	target := c.maxSize - max(c.maxSize/8, 1)
	for hash := range c.entries {
		if len(c.entries) <= target {
			break
		}
		delete(c.entries, hash)
	}
}

// invalidate removes hashes and makes loads that are under way discard
// what they read.
func (c *localCache) invalidate(hashes ...string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, hash := range hashes {
		delete(c.entries, hash)
	}
}

// redisCache is the cache that all API processes share. Keys are named
// after the HMAC of a secret, never the secret.
type redisCache struct {
	rdb     *redis.Client
	prefix  string
	ttl     time.Duration
	channel string
}

func newRedisCache(rdb *redis.Client, prefix string, ttl time.Duration) *redisCache {
	return &redisCache{rdb: rdb, prefix: prefix, ttl: ttl, channel: prefix + "apikey-invalidations"}
}

// key returns the Redis key of hash. The braces make the entry and its
// tombstone share a Redis Cluster slot, as the fill script needs.
func (r *redisCache) key(hash string) string {
	return r.prefix + "apikey:{" + hash + "}"
}

func (r *redisCache) tombstone(hash string) string {
	return r.key(hash) + ":tombstone"
}

// record is the Redis form of an entry. Nil lists encode as null and
// empty lists as [], which keeps "allow all" apart from "allow none".
type record struct {
	ID            string     `json:"id"`
	UserID        string     `json:"user_id"`
	Name          string     `json:"name"`
	AllowedModels []string   `json:"allowed_models"`
	AllowedIPs    []string   `json:"allowed_ips"`
	ExpiresAt     *time.Time `json:"expires_at"`
	IsActive      bool       `json:"is_active"`
	OwnerDisabled bool       `json:"owner_disabled,omitempty"`
}

// get returns the entry of hash, or nil when Redis has none.
func (r *redisCache) get(ctx context.Context, hash string) (*entry, error) {
	raw, err := r.rdb.Get(ctx, r.key(hash)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}

	var rec record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("decode cached API key: %w", err)
	}
	prefixes, err := parsePrefixes(rec.AllowedIPs)
	if err != nil {
		return nil, fmt.Errorf("decode cached API key %s: %w", rec.ID, err)
	}
	return &entry{
		principal: Principal{
			KeyID: rec.ID, UserID: rec.UserID, Name: rec.Name,
			AllowedModels: rec.AllowedModels, AllowedIPs: prefixes, ExpiresAt: rec.ExpiresAt,
		},
		active:        rec.IsActive,
		ownerDisabled: rec.OwnerDisabled,
	}, nil
}

// fillScript sets KEYS[1] to ARGV[1] for ARGV[2] milliseconds unless the
// tombstone KEYS[2] exists.
var fillScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[2]) == 1 then
	return 0
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return 1
`)

// fill stores e under hash unless a change of the key is under way.
func (r *redisCache) fill(ctx context.Context, hash string, e *entry) error {
	p := e.principal
	body, err := json.Marshal(record{
		ID: p.KeyID, UserID: p.UserID, Name: p.Name,
		AllowedModels: p.AllowedModels, AllowedIPs: prefixStrings(p.AllowedIPs),
		ExpiresAt: p.ExpiresAt, IsActive: e.active, OwnerDisabled: e.ownerDisabled,
	})
	if err != nil {
		return fmt.Errorf("encode API key %s: %w", p.KeyID, err)
	}
	keys := []string{r.key(hash), r.tombstone(hash)}
	return fillScript.Run(ctx, r.rdb, keys, body, strconv.FormatInt(r.ttl.Milliseconds(), 10)).Err()
}

// block deletes the entry of hash and refuses refills for tombstoneTTL, in
// one transaction.
func (r *redisCache) block(ctx context.Context, hash string) error {
	_, err := r.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Set(ctx, r.tombstone(hash), "1", tombstoneTTL)
		pipe.Del(ctx, r.key(hash))
		return nil
	})
	return err
}

// drop deletes the entries of hashes and publishes each hash on the
// invalidation channel.
func (r *redisCache) drop(ctx context.Context, hashes ...string) error {
	_, err := r.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		keys := make([]string, len(hashes))
		for i, hash := range hashes {
			keys[i] = r.key(hash)
		}
		pipe.Del(ctx, keys...)
		for _, hash := range hashes {
			pipe.Publish(ctx, r.channel, hash)
		}
		return nil
	})
	return err
}

// listen drops the local copy of every hash published on the invalidation
// channel until ctx ends. go-redis resubscribes after a lost connection;
// messages sent meanwhile are lost, which LocalCacheTTL bounds.
func (s *Service) listen(ctx context.Context) {
	pubsub := s.shared.rdb.Subscribe(ctx, s.shared.channel)
	defer pubsub.Close()

	// Receive returns once Redis confirms the subscription.
	if _, err := pubsub.Receive(ctx); err != nil {
		if ctx.Err() != nil {
			return
		}
		s.logger.Warn("subscribe to API key invalidations failed; retrying in the background", "channel", s.shared.channel, "error", err)
	} else {
		s.subscribedOnce.Do(func() { close(s.subscribed) })
	}

	messages := pubsub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-messages:
			if !ok {
				return
			}
			s.local.invalidate(msg.Payload)
		}
	}
}

// throttledLog writes a warning at most once per interval and counts the
// ones it held back, so that a Redis outage does not log every request.
type throttledLog struct {
	every      time.Duration
	last       atomic.Int64
	suppressed atomic.Int64
}

func (t *throttledLog) warn(logger *slog.Logger, msg string, err error) {
	now := time.Now().UnixNano()
	last := t.last.Load()
	if now-last < int64(t.every) || !t.last.CompareAndSwap(last, now) {
		t.suppressed.Add(1)
		return
	}
	logger.Warn(msg, "error", err, "suppressed_since_last", t.suppressed.Swap(0))
}

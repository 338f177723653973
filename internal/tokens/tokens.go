// Package tokens keeps the state of login sessions in Redis, so that access
// and refresh tokens can be revoked before they expire.
//
// A session starts at login and is named by the sid claim of its tokens.
// Redis stores one hash per session with the jti of its live refresh token,
// the jti that the last rotation replaced and when, and the session's expiry.
// A sorted set per user lists the user's sessions by expiry, so that all of
// them can be revoked at once. Both keys carry the user ID as a hash tag and
// so sit in one Redis Cluster slot.
//
// Refresh rotation rule: a refresh token is accepted once. Rotate swaps the
// session's live jti for the new one in one Lua script, so two requests with
// the same token cannot both win. A later request with the replaced jti is
// either a lost race or a replayed, possibly stolen, token:
//   - within ReuseGrace after the rotation it is a lost race. It fails with
//     ErrRefreshSuperseded and the session stays live, because the winner
//     holds its new tokens.
//   - after ReuseGrace, or with any older jti, it is a reuse. The session is
//     revoked with all its tokens, and Rotate returns ErrRefreshReused.
//
// Each rotation also moves the session's expiry to the expiry of the new
// refresh token, so a session that refreshes stays live.
package tokens

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultReuseGrace is how long a replaced refresh token counts as a lost
// race instead of a reuse. It covers two requests of one client that were
// sent together, such as two browser tabs.
const DefaultReuseGrace = 10 * time.Second

var (
	// ErrSessionRevoked is returned when the session is not live: it was
	// revoked, expired, or never recorded.
	ErrSessionRevoked = errors.New("session revoked or expired")
	// ErrRefreshReused is returned when a replaced refresh token is presented
	// after the grace window, or a token older than that. Rotate has revoked
	// the session.
	ErrRefreshReused = errors.New("refresh token reused; session revoked")
	// ErrRefreshSuperseded is returned to the loser of a refresh race: the
	// token was replaced less than ReuseGrace ago. The session stays live.
	ErrRefreshSuperseded = errors.New("refresh token already rotated by a concurrent request")
)

// Options configures a Store.
type Options struct {
	// Prefix starts every key, as REDIS_PREFIX does for the rest of the app.
	Prefix string
	// ReuseGrace defaults to DefaultReuseGrace when zero.
	ReuseGrace time.Duration
	// Now defaults to time.Now. Tests pass the clock of their auth.Issuer.
	Now func() time.Time
}

// Store records login sessions in Redis.
type Store struct {
	rdb    redis.Cmdable
	prefix string
	grace  time.Duration
	now    func() time.Time
}

// New returns a Store that keeps its keys in rdb under opts.Prefix.
func New(rdb redis.Cmdable, opts Options) *Store {
	s := &Store{rdb: rdb, prefix: opts.Prefix, grace: opts.ReuseGrace, now: opts.Now}
	if s.grace <= 0 {
		s.grace = DefaultReuseGrace
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

func (s *Store) sessionKey(userID, sessionID string) string {
	return s.prefix + "session:{" + userID + "}:" + sessionID
}

// sessionKeyPrefix is sessionKey without the session ID. The revoke-all
// script appends the IDs from the user's index.
func (s *Store) sessionKeyPrefix(userID string) string {
	return s.prefix + "session:{" + userID + "}:"
}

func (s *Store) userKey(userID string) string {
	return s.prefix + "sessions:{" + userID + "}"
}

// extendIndexTTL is a Lua function for the scripts that add to the user's
// index (KEYS[2]). It sets the index to expire with its longest session. now
// is the current Unix time in milliseconds.
const extendIndexTTL = `
local function extend_index(now)
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIRE', KEYS[2], math.max(1, tonumber(last[2]) - now))
  end
end
`

// createScript records a new session.
// KEYS: session hash, user index. ARGV: refresh jti, expiry ms, now ms, sid.
var createScript = redis.NewScript(extendIndexTTL + `
local now = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'jti', ARGV[1], 'exp', ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(ARGV[2]) - now))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
extend_index(now)
return 'ok'
`)

// rotateScript applies the rotation rule in the package comment.
// KEYS: session hash, user index. ARGV: presented jti, new jti, now ms,
// grace ms, new expiry ms, sid.
var rotateScript = redis.NewScript(extendIndexTTL + `
local now = tonumber(ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'jti', 'prev', 'rotated', 'exp')
if not s[1] or tonumber(s[4]) <= now then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[6])
  return 'revoked'
end
if s[1] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'jti', ARGV[2], 'prev', ARGV[1], 'rotated', ARGV[3], 'exp', ARGV[5])
  redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(ARGV[5]) - now))
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
  extend_index(now)
  return 'rotated'
end
if s[2] == ARGV[1] and now - tonumber(s[3]) <= tonumber(ARGV[4]) then
  return 'superseded'
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[6])
return 'reused'
`)

// revokeAllScript deletes every session in the user's index and the index.
// KEYS: user index. ARGV: session key prefix. The session keys are built in
// the script, which Redis Cluster allows because they share the index's
// {userID} hash slot.
var revokeAllScript = redis.NewScript(`
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local revoked = 0
for _, id in ipairs(ids) do
  revoked = revoked + redis.call('DEL', ARGV[1] .. id)
end
redis.call('DEL', KEYS[1])
return revoked
`)

// Create records a new session of userID whose live refresh token has the
// jti refreshID and expires at expiresAt.
func (s *Store) Create(ctx context.Context, userID, sessionID, refreshID string, expiresAt time.Time) error {
	now := s.now()
	if !expiresAt.After(now) {
		return fmt.Errorf("create session %s: expiry %v is not after now %v", sessionID, expiresAt, now)
	}
	keys := []string{s.sessionKey(userID, sessionID), s.userKey(userID)}
	err := createScript.Run(ctx, s.rdb, keys, refreshID, expiresAt.UnixMilli(), now.UnixMilli(), sessionID).Err()
	if err != nil {
		return fmt.Errorf("create session %s: %w", sessionID, err)
	}
	return nil
}

// Check returns nil when the session is live and ErrSessionRevoked when it
// is not. It costs one Redis round trip.
func (s *Store) Check(ctx context.Context, userID, sessionID string) error {
	exp, err := s.rdb.HGet(ctx, s.sessionKey(userID, sessionID), "exp").Int64()
	if errors.Is(err, redis.Nil) {
		return ErrSessionRevoked
	}
	if err != nil {
		return fmt.Errorf("check session %s: %w", sessionID, err)
	}

	// The key's Redis TTL removes it at expiry too, but this check follows
	// s.now, which may differ from the Redis server's clock.
	if exp <= s.now().UnixMilli() {
		return ErrSessionRevoked
	}
	return nil
}

// Rotate replaces the session's live refresh jti presentedID with newID and
// moves the session's expiry to expiresAt. It returns ErrSessionRevoked,
// ErrRefreshSuperseded or ErrRefreshReused as the package comment describes.
func (s *Store) Rotate(ctx context.Context, userID, sessionID, presentedID, newID string, expiresAt time.Time) error {
	now := s.now()
	if !expiresAt.After(now) {
		return fmt.Errorf("rotate session %s: expiry %v is not after now %v", sessionID, expiresAt, now)
	}
	keys := []string{s.sessionKey(userID, sessionID), s.userKey(userID)}
	result, err := rotateScript.Run(ctx, s.rdb, keys,
		presentedID, newID, now.UnixMilli(), s.grace.Milliseconds(), expiresAt.UnixMilli(), sessionID).Text()
	if err != nil {
		return fmt.Errorf("rotate session %s: %w", sessionID, err)
	}

	switch result {
	case "rotated":
		return nil
	case "revoked":
		return ErrSessionRevoked
	case "superseded":
		return ErrRefreshSuperseded
	case "reused":
		return ErrRefreshReused
	}
	return fmt.Errorf("rotate session %s: unexpected script result %q", sessionID, result)
}

// Revoke ends one session. Revoking a session that is not live is not an
// error.
func (s *Store) Revoke(ctx context.Context, userID, sessionID string) error {
	_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Del(ctx, s.sessionKey(userID, sessionID))
		pipe.ZRem(ctx, s.userKey(userID), sessionID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke session %s: %w", sessionID, err)
	}
	return nil
}

// RevokeAll ends every session of userID and returns how many session keys
// it deleted. Sessions that Redis already removed at their TTL are not
// counted.
func (s *Store) RevokeAll(ctx context.Context, userID string) (int, error) {
	n, err := revokeAllScript.Run(ctx, s.rdb, []string{s.userKey(userID)}, s.sessionKeyPrefix(userID)).Int()
	if err != nil {
		return 0, fmt.Errorf("revoke sessions of user %s: %w", userID, err)
	}
	return n, nil
}

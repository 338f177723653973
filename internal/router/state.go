package router

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aihigress/aihigress/internal/providers"
)

// redisNames are the Redis keys and the channel of one router.
type redisNames struct {
	prefix string
	// cooldowns is the hash of cooldown ends, field entryKey.field().
	cooldowns string
	// channel carries every change of the shared state; see apply.
	channel string
}

func newRedisNames(prefix string) redisNames {
	return redisNames{
		prefix:    prefix,
		cooldowns: prefix + "router:cooldowns",
		channel:   prefix + "router:changes",
	}
}

// failures counts a candidate's recent failures.
func (n redisNames) failures(e entryKey) string { return n.prefix + "router:failures:" + e.field() }

// streak counts a candidate's cooldowns in a row, which sets the length of
// the next one.
func (n redisNames) streak(e entryKey) string { return n.prefix + "router:streak:" + e.field() }

// requests counts the requests through a key in one second of the router's
// clock.
func (n redisNames) requests(keyID string, second int64) string {
	return n.prefix + "router:requests:" + keyID + ":" + strconv.FormatInt(second, 10)
}

// entryKey identifies a candidate or a provider key. It is a struct rather
// than a string so that mirror lookups do not allocate.
type entryKey struct {
	kind byte   // 'c' for a candidate, 'k' for a provider key
	id   string // provider ID or key ID
	// model is the candidate's upstream model; empty for a key.
	model string
}

func candidateEntry(providerID, model string) entryKey {
	return entryKey{kind: 'c', id: providerID, model: model}
}

func keyEntry(keyID string) entryKey {
	return entryKey{kind: 'k', id: keyID}
}

func (e entryKey) field() string {
	if e.kind == 'c' {
		return "c:" + e.id + "|" + e.model
	}
	return "k:" + e.id
}

func parseField(field string) (entryKey, bool) {
	switch {
	case strings.HasPrefix(field, "c:"):
		providerID, model, ok := strings.Cut(field[2:], "|")
		return candidateEntry(providerID, model), ok
	case strings.HasPrefix(field, "k:"):
		return keyEntry(field[2:]), true
	}
	return entryKey{}, false
}

// mirror is the process's copy of the shared state. Values are Unix
// milliseconds.
type mirror struct {
	mu sync.RWMutex
	// until maps a candidate or key to the end of its cooldown.
	until map[entryKey]int64
	// failingUntil maps a candidate with a failure count in Redis to when
	// that count expires.
	failingUntil map[entryKey]int64
}

func newMirror() mirror {
	return mirror{until: make(map[entryKey]int64), failingUntil: make(map[entryKey]int64)}
}

func (m *mirror) setUntil(e entryKey, until int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.until[e] = max(m.until[e], until)
}

func (m *mirror) clearUntil(e entryKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.until, e)
}

func (m *mirror) setFailing(e entryKey, until int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failingUntil[e] = max(m.failingUntil[e], until)
}

func (m *mirror) clearFailing(e entryKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.failingUntil, e)
}

func (m *mirror) failing(e entryKey, now int64) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.failingUntil[e] > now
}

// replace swaps in cooldowns loaded from Redis and drops failure marks that
// have expired.
func (m *mirror) replace(until map[entryKey]int64, now int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.until = until
	for e, expires := range m.failingUntil {
		if expires <= now {
			delete(m.failingUntil, e)
		}
	}
}

// cooldowns returns the cooldown end of each entry, 0 for none. It reads
// the mirror while Run keeps it current and Redis otherwise. When Redis
// fails it logs and returns zeros, so that routing goes on without
// cooldowns.
func (r *Router) cooldowns(ctx context.Context, entries []entryKey) []int64 {
	until := make([]int64, len(entries))
	if r.live.Load() {
		r.mirror.mu.RLock()
		for i, e := range entries {
			until[i] = r.mirror.until[e]
		}
		r.mirror.mu.RUnlock()
		return until
	}

	if r.redisPaused() {
		return until
	}
	fields := make([]string, len(entries))
	for i, e := range entries {
		fields[i] = e.field()
	}
	values, err := r.rdb.HMGet(ctx, r.names.cooldowns, fields...).Result()
	if err != nil {
		r.redisFailed("read cooldowns", err)
		return until
	}
	for i, v := range values {
		if s, ok := v.(string); ok {
			until[i], _ = strconv.ParseInt(s, 10, 64)
		}
	}
	return until
}

// Cooldown is one active cooldown.
type Cooldown struct {
	// ProviderID and Model name a cooling candidate, and are empty for a
	// key.
	ProviderID string
	Model      string
	// KeyID names a cooling provider key, and is empty for a candidate.
	KeyID string
	Until time.Time
}

// Cooldowns reads the active cooldowns of every process from Redis, sorted
// by end.
func (r *Router) Cooldowns(ctx context.Context) ([]Cooldown, error) {
	fields, err := r.rdb.HGetAll(ctx, r.names.cooldowns).Result()
	if err != nil {
		return nil, fmt.Errorf("load cooldowns: %w", err)
	}
	now := r.opts.Now().UnixMilli()
	var list []Cooldown
	for field, value := range fields {
		end, err := strconv.ParseInt(value, 10, 64)
		e, ok := parseField(field)
		if err != nil || !ok || end <= now {
			continue
		}
		c := Cooldown{Until: time.UnixMilli(end)}
		if e.kind == 'c' {
			c.ProviderID, c.Model = e.id, e.model
		} else {
			c.KeyID = e.id
		}
		list = append(list, c)
	}
	slices.SortFunc(list, func(a, b Cooldown) int { return a.Until.Compare(b.Until) })
	return list, nil
}

// Every script publishes what it changed, in the formats that apply reads.

// setCooldownScript extends the cooldown of field ARGV[1] to ARGV[2] (Unix
// ms), unless it already lasts longer. It returns the cooldown end.
var setCooldownScript = redis.NewScript(`
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local wanted = tonumber(ARGV[2])
if current >= wanted then
  return current
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], 'set ' .. ARGV[2] .. ' ' .. ARGV[1])
return wanted
`)

// recordFailureScript counts a failure of candidate field ARGV[1]. When the
// count reaches the threshold and the candidate is not cooling down already,
// it starts a cooldown whose length doubles with each cooldown in a row.
//
// KEYS: failure counter, streak counter, cooldown hash.
// ARGV: field, threshold, window ms, first cooldown ms, max cooldown ms,
// now ms, streak TTL ms, channel.
// It returns the failure count and the cooldown end, 0 when none started.
var recordFailureScript = redis.NewScript(`
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
local now = tonumber(ARGV[6])
local started = 0
if count >= tonumber(ARGV[2]) then
  local current = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
  if current <= now then
    local streak = redis.call('INCR', KEYS[2])
    redis.call('PEXPIRE', KEYS[2], ARGV[7])
    local length = tonumber(ARGV[4])
    local cap = tonumber(ARGV[5])
    for i = 2, streak do
      length = length * 2
      if length >= cap then
        break
      end
    end
    if length > cap then
      length = cap
    end
    started = now + length
    redis.call('HSET', KEYS[3], ARGV[1], started)
    redis.call('PUBLISH', ARGV[8], 'set ' .. started .. ' ' .. ARGV[1])
    -- The count outlives the cooldown, so that one more failure after it
    -- starts the next, longer cooldown at once.
    redis.call('PEXPIRE', KEYS[1], length + tonumber(ARGV[3]))
  end
end
local expires = now + redis.call('PTTL', KEYS[1])
redis.call('PUBLISH', ARGV[8], 'fail ' .. expires .. ' ' .. ARGV[1])
return {count, started, expires}
`)

// pruneScript deletes the fields in ARGV[2..] whose cooldown ended before
// ARGV[1] (Unix ms). It checks each field again, because another process
// may have started a new cooldown since the caller read the hash.
var pruneScript = redis.NewScript(`
local removed = 0
for i = 2, #ARGV do
  local current = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if current <= tonumber(ARGV[1]) then
    removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return removed
`)

// coolDown puts an entry into cooldown for d in Redis and in the mirror.
// logArgs describe the entry for the log.
func (r *Router) coolDown(ctx context.Context, e entryKey, d time.Duration, why string, logArgs ...any) {
	until := r.opts.Now().Add(d).UnixMilli()
	r.mirror.setUntil(e, until)
	if r.redisPaused() {
		return
	}

	result, err := setCooldownScript.Run(ctx, r.rdb, []string{r.names.cooldowns},
		e.field(), strconv.FormatInt(until, 10), r.names.channel).Int64()
	if err != nil {
		r.redisFailed("store cooldown", err)
		return
	}
	r.mirror.setUntil(e, result)
	r.logger.Warn("cooling down after upstream failure",
		append(logArgs, "reason", why, "until", time.UnixMilli(result).UTC().Format(time.RFC3339Nano))...)
}

// recordFailure counts a failure of a candidate and starts its cooldown when
// the count reaches the threshold.
func (r *Router) recordFailure(ctx context.Context, e entryKey, kind providers.ErrorKind) {
	if r.redisPaused() {
		return
	}
	now := r.opts.Now().UnixMilli()
	streakTTL := 2*r.opts.MaxCooldown + r.opts.FailureWindow
	result, err := recordFailureScript.Run(ctx, r.rdb,
		[]string{r.names.failures(e), r.names.streak(e), r.names.cooldowns},
		e.field(), r.opts.FailureThreshold, r.opts.FailureWindow.Milliseconds(),
		r.opts.FailureCooldown.Milliseconds(), r.opts.MaxCooldown.Milliseconds(),
		now, streakTTL.Milliseconds(), r.names.channel,
	).Int64Slice()
	if err == nil && len(result) != 3 {
		err = fmt.Errorf("unexpected reply %v from the failure script", result)
	}
	if err != nil {
		r.redisFailed("count upstream failure", err)
		return
	}
	count, started, expires := result[0], result[1], result[2]
	r.mirror.setFailing(e, expires)
	if started == 0 {
		return
	}
	r.mirror.setUntil(e, started)
	r.opts.OnCooldown(e.id, CooldownFailures)
	r.logger.Warn("cooling down after repeated upstream failures", "provider", e.id, "model", e.model,
		"error_kind", kind, "failures", count, "until", time.UnixMilli(started).UTC().Format(time.RFC3339Nano))
}

// clearFailures resets a candidate's failure count and streak after a
// success.
func (r *Router) clearFailures(ctx context.Context, e entryKey) {
	r.mirror.clearFailing(e)
	if r.redisPaused() {
		return
	}
	_, err := r.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Del(ctx, r.names.failures(e), r.names.streak(e))
		pipe.Publish(ctx, r.names.channel, "ok "+e.field())
		return nil
	})
	if err != nil {
		r.redisFailed("clear failure count", err)
	}
}

func (r *Router) clearCooldown(ctx context.Context, e entryKey) error {
	r.mirror.clearUntil(e)
	_, err := r.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.HDel(ctx, r.names.cooldowns, e.field())
		pipe.Publish(ctx, r.names.channel, "del "+e.field())
		return nil
	})
	return err
}

// takeRequest counts a request through key in the current second and
// reports whether it stays within the key's MaxQPS. A request over the
// limit is counted too, which does not matter because the second is full
// either way.
//
// NOTE: windows follow each process's clock, so processes whose clocks
// differ by a fraction of a second split a second's budget between two
// counters and may together exceed MaxQPS briefly.
func (r *Router) takeRequest(ctx context.Context, key providers.ProviderKey, now time.Time) bool {
	if r.redisPaused() {
		return true
	}
	counter := r.names.requests(key.ID, now.Unix())
	var incr *redis.IntCmd
	_, err := r.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		incr = pipe.Incr(ctx, counter)
		pipe.Expire(ctx, counter, 2*time.Second)
		return nil
	})
	if err != nil {
		r.redisFailed("count key requests", err)
		return true
	}
	return incr.Val() <= int64(key.MaxQPS)
}

// redisPause is how long the router leaves Redis alone after a failed call.
// During an outage each call could wait for dial retries and timeouts, so
// this limits that cost to about one call per second per process.
const redisPause = time.Second

// redisPaused reports whether a Redis call failed less than redisPause ago.
// It uses the real clock, because Options.Now may be a test clock.
func (r *Router) redisPaused() bool {
	return time.Now().UnixNano() < r.redisPausedUntil.Load()
}

// redisFailed pauses Redis calls and logs the failure, at most once per
// redisWarnInterval with a count of the records left out, so that an outage
// at hundreds of requests per second does not flood the log.
func (r *Router) redisFailed(operation string, err error) {
	now := time.Now().UnixNano()
	r.redisPausedUntil.Store(now + int64(redisPause))

	last := r.lastRedisWarning.Load()
	if now-last < int64(redisWarnInterval) || !r.lastRedisWarning.CompareAndSwap(last, now) {
		r.suppressedRedisWarnings.Add(1)
		return
	}
	r.logger.Warn("router Redis call failed; routing goes on without shared cooldowns",
		"operation", operation, "error", err, "suppressed", r.suppressedRedisWarnings.Swap(0))
}

const redisWarnInterval = 10 * time.Second

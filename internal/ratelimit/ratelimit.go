// Package ratelimit counts requests per client in Redis and decides whether
// a client is over its limit.
//
// It uses a sliding-window counter: each client has a count for the current
// fixed window and one for the previous window, and the requests in the
// sliding window that ends now are estimated as
//
//	previous * (window - elapsed) / window + current
//
// A sliding-window log (a sorted set of request times) would be exact, but it
// stores one member per request. At the default API key limit of 6000 per
// minute that is 6000 members for each busy key, and each check trims them.
// The counter stores three integers in one hash per client, so memory and
// time per check do not grow with the limit. Its cost is precision, because
// it assumes the previous window's requests were spread evenly:
//
//   - A client never gets more than the limit into one fixed window, so over
//     time it never exceeds the limit per window on average.
//   - A client that sends its whole quota at the end of one window and then
//     paces itself can get up to about twice the limit into one sliding
//     window that spans the two.
//
// Each check is one EVALSHA of a Lua script that reads, decides and counts
// atomically, so concurrent API processes share one limit. Rejected requests
// are not counted.
package ratelimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed window.lua
var windowScript string

// DefaultTimeout bounds one check when Options.Timeout is zero.
//
// NOTE: chosen without load data. A Redis round trip on a LAN takes well
// under a millisecond, so a check that takes longer than this means Redis is
// in trouble.
const DefaultTimeout = 100 * time.Millisecond

// Options configures a Limiter.
type Options struct {
	// Prefix starts every key, such as "aih:". The limiter adds "rl:".
	Prefix string
	// Timeout bounds each check; zero selects DefaultTimeout.
	Timeout time.Duration
	// Now is the clock; nil selects time.Now. All API processes must have
	// synchronized clocks, because a clock that is off by d moves the window
	// edges of its own checks by d.
	Now func() time.Time
}

// ClientOptions adapts the options of a Redis client for a Limiter, so that
// Options.Timeout bounds a check even when Redis hangs. go-redis ignores
// context deadlines on socket reads and writes unless ContextTimeoutEnabled
// is set, and waits seconds with its default timeouts. The Limiter should
// get its own client because these settings are too strict for blocking
// commands and Pub/Sub.
func ClientOptions(opts *redis.Options, timeout time.Duration) *redis.Options {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	opts.ContextTimeoutEnabled = true
	opts.DialTimeout = timeout
	opts.ReadTimeout = timeout
	opts.WriteTimeout = timeout
	opts.PoolTimeout = timeout
	return opts
}

// Limiter runs rate limit checks against Redis.
type Limiter struct {
	rdb     redis.Scripter
	script  *redis.Script
	prefix  string
	timeout time.Duration
	now     func() time.Time
}

// New returns a Limiter that keeps its counts in rdb.
func New(rdb redis.Scripter, opts Options) *Limiter {
	l := &Limiter{
		rdb:     rdb,
		script:  redis.NewScript(windowScript),
		prefix:  opts.Prefix + "rl:",
		timeout: opts.Timeout,
		now:     opts.Now,
	}
	if l.timeout <= 0 {
		l.timeout = DefaultTimeout
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l
}

// Rule is one limit, such as 10 logins per minute, applied separately to
// each client ID.
type Rule struct {
	limiter   *Limiter
	name      string
	keyPrefix string
	limit     int
	window    time.Duration

	// The script arguments that do not change between checks, boxed once.
	windowArg any
	limitArg  any

	// leases is nil unless EnableLeases was called.
	leases *leases
}

// NewRule returns a rule that allows limit requests per sliding window for
// each client. name separates the counts of different rules and appears in
// the Redis keys, so it must be unique per Limiter. window has millisecond
// resolution.
func (l *Limiter) NewRule(name string, limit int, window time.Duration) (*Rule, error) {
	if name == "" {
		return nil, errors.New("rate limit rule needs a name")
	}
	if limit < 1 {
		return nil, fmt.Errorf("rate limit %q: limit must be at least 1, got %d", name, limit)
	}
	if window < time.Millisecond {
		return nil, fmt.Errorf("rate limit %q: window must be at least 1ms, got %s", name, window)
	}
	return &Rule{
		limiter:   l,
		name:      name,
		keyPrefix: l.prefix + name + ":",
		limit:     limit,
		window:    window,
		windowArg: window.Milliseconds(),
		limitArg:  int64(limit),
	}, nil
}

// Name returns the rule's name.
func (r *Rule) Name() string { return r.name }

// Limit returns the number of requests allowed per window.
func (r *Rule) Limit() int { return r.limit }

// Window returns the window length.
func (r *Rule) Window() time.Duration { return r.window }

// Result is the outcome of one check.
type Result struct {
	Allowed bool
	// Limit is the rule's requests per window.
	Limit int
	// Remaining is how many more requests the client may send now.
	Remaining int
	// Reset is the time until Remaining grows by one if the client sends
	// nothing more. After a rejection it is the time until a retry succeeds.
	Reset time.Duration
}

// RetryAfter returns the time until a rejected client may retry, or zero
// when the request was allowed.
func (r Result) RetryAfter() time.Duration {
	if r.Allowed {
		return 0
	}
	return r.Reset
}

// Allow checks one request of client id against the rule and counts it when
// it is allowed. The error wraps the Redis failure; the caller decides
// whether to let the request through.
func (r *Rule) Allow(ctx context.Context, id string) (Result, error) {
	l := r.limiter
	now := l.now()
	wanted := 1
	if r.leases != nil {
		result, batch, ok := r.leases.take(id, now, r.limit)
		if ok {
			return result, nil
		}
		wanted = batch
	}

	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()

	keys := []string{r.keyPrefix + id}
	reply, err := l.script.Run(ctx, l.rdb, keys, now.UnixMilli(), r.windowArg, r.limitArg, wanted).Int64Slice()
	if err != nil {
		return Result{}, fmt.Errorf("rate limit %q: %w", r.name, err)
	}
	if len(reply) != 4 {
		return Result{}, fmt.Errorf("rate limit %q: script returned %d values, want 4", r.name, len(reply))
	}
	result := Result{
		Allowed:   reply[0] == 1,
		Limit:     r.limit,
		Remaining: int(reply[1]),
		Reset:     time.Duration(reply[2]) * time.Millisecond,
	}
	if r.leases != nil && result.Allowed {
		r.leases.store(id, int(reply[3])-1, result, now)
	}
	return result, nil
}

// maxLeaseEntries bounds the clients that a Rule keeps leases for. Past it,
// expired entries are dropped.
const maxLeaseEntries = 10000

// EnableLeases lets each check reserve up to maxBatch slots for the client
// in one Redis round trip, and decides the client's next requests in
// process until those slots are used or ttl has passed. A client starts at
// one slot per check. The batch doubles when a lease runs out before ttl and
// halves when slots expire unused, so a slow client stays exact.
//
// Reserved slots count in Redis at once, so leases only make the limit
// stricter: each process can hold at most maxBatch-1 unused slots per client
// until ttl ends, and Remaining in the results served from a lease is an
// estimate. Call it before the Rule is used.
func (r *Rule) EnableLeases(maxBatch int, ttl time.Duration) {
	if maxBatch < 2 || ttl <= 0 {
		return
	}
	r.leases = &leases{maxBatch: maxBatch, ttl: ttl, byID: make(map[string]*lease)}
}

// leases holds the slots that Redis reserved for clients of one Rule.
type leases struct {
	maxBatch int
	ttl      time.Duration

	mu   sync.Mutex
	byID map[string]*lease
}

type lease struct {
	// left is the number of reserved slots not used yet.
	left int
	// until is when the unused slots are given up.
	until time.Time
	// batch is the number of slots that the next Redis check requests.
	batch int
	// remaining and reset are reported for requests served from the lease.
	remaining int
	reset     time.Duration
}

// take serves a request from the client's lease. When it cannot, it
// returns the number of slots that the Redis check should ask for.
func (l *leases) take(id string, now time.Time, limit int) (Result, int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()

	e := l.byID[id]
	if e == nil {
		return Result{}, 1, false
	}
	live := now.Before(e.until)
	if e.left > 0 && live {
		e.left--
		e.remaining = max(e.remaining-1, 0)
		return Result{Allowed: true, Limit: limit, Remaining: e.remaining, Reset: e.reset}, 0, true
	}

	switch {
	case e.left > 0:
		e.batch = max(1, e.batch/2)
	case live:
		e.batch = min(l.maxBatch, e.batch*2)
	}
	e.left = 0
	return Result{}, e.batch, false
}

// store records the unused slots of an allowed check.
func (l *leases) store(id string, unused int, result Result, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()

	e := l.byID[id]
	if e == nil {
		if len(l.byID) >= maxLeaseEntries {
			for key, old := range l.byID {
				if !now.Before(old.until) {
					delete(l.byID, key)
				}
			}
		}
		e = &lease{batch: 1}
		l.byID[id] = e
	}
	e.left += max(unused, 0)
	e.until = now.Add(l.ttl)
	// Redis counted the unused slots as used, but the client can still
	// send that many requests.
	e.remaining = result.Remaining + e.left
	e.reset = result.Reset
}

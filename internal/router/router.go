package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aihigress/aihigress/internal/providers"
)

var (
	// ErrNoKey is wrapped by the error that Acquire returns when the
	// candidate's provider is missing from the catalog or disabled.
	ErrNoKey = errors.New("no usable provider key")
	// ErrAllCoolingDown is wrapped by the *CooldownError that Plan returns
	// when every candidate of the model is cooling down.
	ErrAllCoolingDown = errors.New("every candidate is cooling down")
	// ErrCoolingDown is wrapped by the *CooldownError that Acquire returns
	// when the candidate, or every key of its provider, is cooling down.
	ErrCoolingDown = errors.New("cooling down")
	// ErrKeysAtLimit is wrapped by the *CooldownError that Acquire returns
	// when every usable key of the provider has reached its MaxQPS in the
	// current second.
	ErrKeysAtLimit = errors.New("every provider key is at its requests-per-second limit")
)

// CooldownError reports that nothing can be used before RetryAt.
type CooldownError struct {
	// Err is ErrAllCoolingDown, ErrCoolingDown or ErrKeysAtLimit.
	Err error
	// Subject names what is unavailable, such as `logical model "gpt-4o"`.
	Subject string
	// RetryAt is the earliest time at which something becomes usable again.
	RetryAt time.Time
}

func (e *CooldownError) Error() string {
	return fmt.Sprintf("%s: %v until %s", e.Subject, e.Err, e.RetryAt.UTC().Format(time.RFC3339Nano))
}

func (e *CooldownError) Unwrap() error { return e.Err }

// RetryAfter returns the wait from now until RetryAt, or 0 when it has passed.
func (e *CooldownError) RetryAfter(now time.Time) time.Duration {
	return max(e.RetryAt.Sub(now), 0)
}

// Pick is one candidate with the key chosen for it. Provider.APIKey holds the
// key's secret and Provider.Keys is nil, so Provider can be passed to the
// upstream client as it is.
type Pick struct {
	Candidate providers.Candidate
	Provider  providers.Provider
	// KeyID is the provider key used, or "" for a provider without keys.
	KeyID string
}

// Options tune a Router. Zero values select the defaults in the comments.
type Options struct {
	// Rand is the source of the weighted random choices. Nil uses the
	// runtime's source through the math/rand/v2 functions. A Source given
	// here is guarded by a mutex, so it need not be safe for concurrent use.
	Rand rand.Source
	// Now returns the current time. Nil means time.Now. Cooldown ends and
	// MaxQPS windows come from this clock, while Redis TTLs, which only
	// bound memory, run on the server's clock.
	Now func() time.Time

	// FailureThreshold is the number of failures within FailureWindow that
	// puts a candidate into cooldown. Default 3.
	FailureThreshold int
	// FailureWindow is how long a failure counts, from the first failure of
	// a series. Default 1 minute.
	FailureWindow time.Duration
	// FailureCooldown is the first cooldown after FailureThreshold failures.
	// Each further cooldown in a row doubles it, up to MaxCooldown. Default
	// 10 seconds.
	FailureCooldown time.Duration
	// MaxCooldown caps growing cooldowns and the upstream's Retry-After.
	// Default 5 minutes.
	MaxCooldown time.Duration
	// RateLimitCooldown is the cooldown after an HTTP 429 without a
	// Retry-After header. Default 5 seconds.
	RateLimitCooldown time.Duration
	// AuthCooldown is how long a key rejected with HTTP 401 or 403 stays out
	// of use in every process, which covers the time until the catalog
	// reload drops the disabled key. Default 10 minutes.
	AuthCooldown time.Duration

	// DisableKey disables a provider key in the database after the upstream
	// rejected it. Nil only cools the key down.
	DisableKey func(ctx context.Context, keyID, reason string) error

	// ResyncInterval is how often Run reloads every cooldown from Redis, to
	// repair messages that were lost. Default 30 seconds.
	ResyncInterval time.Duration
	// PingInterval is how long Run waits for a message before it pings
	// Redis, and how long it waits for the PONG. Default 1 second.
	PingInterval time.Duration
	// RedisTimeout bounds the Redis calls of Report, which run even when the
	// caller's context has ended. Default 2 seconds.
	RedisTimeout time.Duration

	// Logger receives failures that the router handles itself. Nil discards
	// them.
	Logger *slog.Logger

	// OnCooldown is called with the provider and the reason each time this
	// router starts a cooldown. The reasons are CooldownRateLimited,
	// CooldownFailures and CooldownCredentialRejected. Nil ignores them.
	OnCooldown func(providerID, reason string)
}

// Reasons that Options.OnCooldown receives.
const (
	CooldownRateLimited        = "rate_limited"
	CooldownFailures           = "failures"
	CooldownCredentialRejected = "credential_rejected"
	// CooldownProbeFailed is the reason of CoolDownProvider after a failed
	// health probe.
	CooldownProbeFailed = "probe_failed"
)

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FailureThreshold <= 0 {
		o.FailureThreshold = 3
	}
	if o.FailureWindow <= 0 {
		o.FailureWindow = time.Minute
	}
	if o.FailureCooldown <= 0 {
		o.FailureCooldown = 10 * time.Second
	}
	if o.MaxCooldown <= 0 {
		o.MaxCooldown = 5 * time.Minute
	}
	if o.RateLimitCooldown <= 0 {
		o.RateLimitCooldown = 5 * time.Second
	}
	if o.AuthCooldown <= 0 {
		o.AuthCooldown = 10 * time.Minute
	}
	if o.ResyncInterval <= 0 {
		o.ResyncInterval = 30 * time.Second
	}
	if o.PingInterval <= 0 {
		o.PingInterval = time.Second
	}
	if o.RedisTimeout <= 0 {
		o.RedisTimeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.OnCooldown == nil {
		o.OnCooldown = func(string, string) {}
	}
	return o
}

// Router orders candidates and chooses keys from a catalog, with cooldowns
// shared through Redis. All methods are safe for concurrent use.
type Router struct {
	catalog *providers.Catalog
	rdb     *redis.Client
	names   redisNames
	opts    Options
	logger  *slog.Logger

	randMu sync.Mutex
	rand   *rand.Rand // nil when Options.Rand is nil

	mirror mirror
	// live is true while Run holds a confirmed subscription and has loaded
	// the cooldown hash, so that the mirror can replace Redis reads.
	live    atomic.Bool
	running atomic.Bool

	// redisPausedUntil and the warning counters are in Unix nanoseconds of
	// the real clock; see redisFailed.
	redisPausedUntil        atomic.Int64
	lastRedisWarning        atomic.Int64
	suppressedRedisWarnings atomic.Int64
}

// New returns a Router over catalog that keeps its shared state in rdb under
// keys that start with prefix. Call Run to keep a local mirror of the
// cooldowns; without it every Plan and Acquire reads them from Redis.
func New(catalog *providers.Catalog, rdb *redis.Client, prefix string, opts Options) *Router {
	opts = opts.withDefaults()
	r := &Router{
		catalog: catalog,
		rdb:     rdb,
		names:   newRedisNames(prefix),
		opts:    opts,
		logger:  opts.Logger.With("component", "router"),
		mirror:  newMirror(),
	}
	if opts.Rand != nil {
		r.rand = rand.New(opts.Rand)
	}
	return r
}

// Plan returns the usable candidates for a logical model, best first:
// priority tiers from the highest, and a weighted random order inside each
// tier. The error wraps providers.ErrUnknownModel or providers.ErrCapability,
// or is a *CooldownError wrapping ErrAllCoolingDown. A model whose providers
// are all disabled yields no candidates and no error.
func (r *Router) Plan(ctx context.Context, logicalModel string, capability providers.Capability) ([]providers.Candidate, error) {
	candidates, err := r.catalog.Candidates(logicalModel, capability)
	if err != nil || len(candidates) == 0 {
		return candidates, err
	}

	lookup, keys := r.planLookup(candidates)
	until := r.cooldowns(ctx, lookup)
	usable, earliest := usableCandidates(candidates, until, keys, r.opts.Now().UnixMilli())
	if len(usable) == 0 {
		return nil, &CooldownError{
			Err:     ErrAllCoolingDown,
			Subject: fmt.Sprintf("logical model %q", logicalModel),
			RetryAt: time.UnixMilli(earliest),
		}
	}

	// Catalog.Candidates sorts by priority, highest first, so each tier is
	// a contiguous run.
	for start := 0; start < len(usable); {
		end := start + 1
		for end < len(usable) && usable[end].Priority == usable[start].Priority {
			end++
		}
		weightedShuffle(usable[start:end], func(c providers.Candidate) int { return c.Weight }, r.intN)
		start = end
	}
	return usable, nil
}

// PlanRun returns the candidates that a new run tries, in order: Plan's,
// or all of them in catalog order when every candidate is cooling down,
// because the run's attempts come later, after backoff, and check the
// cooldowns again.
func (r *Router) PlanRun(ctx context.Context, logicalModel string, capability providers.Capability) ([]providers.Candidate, error) {
	candidates, err := r.Plan(ctx, logicalModel, capability)
	if errors.Is(err, ErrAllCoolingDown) {
		return r.catalog.Candidates(logicalModel, capability)
	}
	return candidates, err
}

// providerKeys locates the keys of one provider in a lookup table.
type providerKeys struct {
	providerID string
	start, end int
}

// planLookup builds the table of cooldowns that Plan reads: one entry per
// candidate, in order, then the keys of each distinct provider, so that one
// read covers them all.
func (r *Router) planLookup(candidates []providers.Candidate) ([]entryKey, []providerKeys) {
	lookup := make([]entryKey, 0, len(candidates)*2)
	for _, c := range candidates {
		lookup = append(lookup, candidateEntry(c.ProviderID, c.Model))
	}

	var keys []providerKeys
	for _, c := range candidates {
		if _, seen := findProviderKeys(keys, c.ProviderID); seen {
			continue
		}
		provider, _ := r.catalog.Provider(c.ProviderID)
		pk := providerKeys{providerID: c.ProviderID, start: len(lookup)}
		for _, key := range provider.Keys {
			lookup = append(lookup, keyEntry(key.ID))
		}
		pk.end = len(lookup)
		keys = append(keys, pk)
	}
	return lookup, keys
}

func findProviderKeys(keys []providerKeys, providerID string) (providerKeys, bool) {
	for _, pk := range keys {
		if pk.providerID == providerID {
			return pk, true
		}
	}
	return providerKeys{}, false
}

// usableCandidates filters candidates in place, leaving out those that are
// cooling down and those whose provider has keys that all are. until holds
// the cooldown ends of the planLookup table. It also returns the earliest
// end among the candidates left out, 0 when none was.
func usableCandidates(candidates []providers.Candidate, until []int64, keys []providerKeys, now int64) ([]providers.Candidate, int64) {
	var earliest int64
	usable := candidates[:0]
	for i, c := range candidates {
		if until[i] > now {
			earliest = earlier(earliest, until[i])
			continue
		}

		pk, _ := findProviderKeys(keys, c.ProviderID)
		if pk.end > pk.start {
			keysBack, anyUsable := int64(0), false
			for _, end := range until[pk.start:pk.end] {
				if end <= now {
					anyUsable = true
					break
				}
				keysBack = earlier(keysBack, end)
			}
			if !anyUsable {
				earliest = earlier(earliest, keysBack)
				continue
			}
		}

		usable = append(usable, c)
	}
	return usable, earliest
}

// Acquire chooses a key of the candidate's provider: a weighted random
// choice among the keys that are not cooling down and are below their
// MaxQPS. The error wraps ErrNoKey for a missing or disabled provider, or is
// a *CooldownError wrapping ErrCoolingDown or ErrKeysAtLimit.
func (r *Router) Acquire(ctx context.Context, candidate providers.Candidate) (Pick, error) {
	provider, ok := r.catalog.Provider(candidate.ProviderID)
	if !ok || provider.Disabled {
		return Pick{}, fmt.Errorf("provider %q is not configured or disabled: %w", candidate.ProviderID, ErrNoKey)
	}

	lookup := make([]entryKey, 0, 1+len(provider.Keys))
	lookup = append(lookup, candidateEntry(candidate.ProviderID, candidate.Model))
	for _, key := range provider.Keys {
		lookup = append(lookup, keyEntry(key.ID))
	}
	until := r.cooldowns(ctx, lookup)
	now := r.opts.Now()
	nowMilli := now.UnixMilli()

	subject := func() string { return fmt.Sprintf("candidate %s/%s", candidate.ProviderID, candidate.Model) }
	if until[0] > nowMilli {
		return Pick{}, &CooldownError{Err: ErrCoolingDown, Subject: subject(), RetryAt: time.UnixMilli(until[0])}
	}

	keys := provider.Keys
	pick := Pick{Candidate: candidate, Provider: provider}
	pick.Provider.Keys = nil
	if len(keys) == 0 {
		return pick, nil
	}

	var earliest int64
	usable := keys[:0]
	for i, key := range keys {
		if until[i+1] > nowMilli {
			earliest = earlier(earliest, until[i+1])
			continue
		}
		usable = append(usable, key)
	}
	if len(usable) == 0 {
		return Pick{}, &CooldownError{Err: ErrCoolingDown, Subject: "every key of " + subject(), RetryAt: time.UnixMilli(earliest)}
	}

	weightedShuffle(usable, func(k providers.ProviderKey) int { return k.Weight }, r.intN)
	for _, key := range usable {
		if key.MaxQPS > 0 && !r.takeRequest(ctx, key, now) {
			continue
		}
		pick.KeyID = key.ID
		pick.Provider.APIKey = key.Secret
		return pick, nil
	}
	return Pick{}, &CooldownError{Err: ErrKeysAtLimit, Subject: subject(), RetryAt: now.Truncate(time.Second).Add(time.Second)}
}

// Report records the outcome of an attempt made with pick; err is nil on
// success. Errors other than *providers.UpstreamError, such as a canceled
// context, say nothing about the upstream and are ignored. Report keeps
// going when ctx has ended, because the outcome is still true.
func (r *Router) Report(ctx context.Context, pick Pick, err error) {
	candidate := candidateEntry(pick.Candidate.ProviderID, pick.Candidate.Model)
	if err == nil {
		if r.mirror.failing(candidate, r.opts.Now().UnixMilli()) {
			ctx, cancel := r.reportContext(ctx)
			defer cancel()
			r.clearFailures(ctx, candidate)
		}
		return
	}

	var upstreamErr *providers.UpstreamError
	if !errors.As(err, &upstreamErr) {
		return
	}
	ctx, cancel := r.reportContext(ctx)
	defer cancel()

	switch upstreamErr.Kind {
	case providers.ErrorRateLimited:
		wait := r.opts.RateLimitCooldown
		if upstreamErr.RetryAfter > 0 {
			wait = min(upstreamErr.RetryAfter, r.opts.MaxCooldown)
		}
		r.coolDown(ctx, candidate, wait, "rate limited", "provider", pick.Candidate.ProviderID, "model", pick.Candidate.Model)
		r.opts.OnCooldown(pick.Candidate.ProviderID, CooldownRateLimited)

	case providers.ErrorServer, providers.ErrorTimeout, providers.ErrorConnect, providers.ErrorMalformed:
		r.recordFailure(ctx, candidate, upstreamErr.Kind)

	case providers.ErrorStreamCut:
		if !upstreamErr.Streamed {
			r.recordFailure(ctx, candidate, upstreamErr.Kind)
		}

	case providers.ErrorAuth:
		r.rejectKey(ctx, pick, upstreamErr)

	case providers.ErrorBadRequest:
		// The request was at fault, not the upstream.
	}
}

// ClearKeyCooldown ends the cooldown of a provider key in every process,
// for example after an administrator re-enabled it with a new secret.
func (r *Router) ClearKeyCooldown(ctx context.Context, keyID string) error {
	if err := r.clearCooldown(ctx, keyEntry(keyID)); err != nil {
		return fmt.Errorf("clear cooldown of provider key %s: %w", keyID, err)
	}
	return nil
}

// CoolDownProvider puts every candidate of providerID, in every logical
// model of the catalog, into cooldown for d in every process, and returns
// the number of candidates. A candidate that already cools down longer
// keeps its end. reason goes to Options.OnCooldown once.
func (r *Router) CoolDownProvider(ctx context.Context, providerID string, d time.Duration, reason string) (int, error) {
	var entries []entryKey
	seen := make(map[entryKey]bool)
	for _, model := range r.catalog.Models() {
		for _, candidate := range model.Candidates {
			e := candidateEntry(candidate.ProviderID, candidate.Model)
			if candidate.ProviderID == providerID && !seen[e] {
				seen[e] = true
				entries = append(entries, e)
			}
		}
	}
	if len(entries) == 0 {
		return 0, nil
	}

	until := r.opts.Now().Add(d).UnixMilli()
	for _, e := range entries {
		r.mirror.setUntil(e, until)
		end, err := setCooldownScript.Run(ctx, r.rdb, []string{r.names.cooldowns},
			e.field(), strconv.FormatInt(until, 10), r.names.channel).Int64()
		if err != nil {
			return 0, fmt.Errorf("store cooldown of candidate %s/%s: %w", e.id, e.model, err)
		}
		r.mirror.setUntil(e, end)
	}
	r.opts.OnCooldown(providerID, reason)
	r.logger.Warn("cooling down every candidate of a provider", "provider", providerID, "reason", reason,
		"candidates", len(entries), "until", time.UnixMilli(until).UTC().Format(time.RFC3339Nano))
	return len(entries), nil
}

func (r *Router) reportContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), r.opts.RedisTimeout)
}

// rejectKey takes a key that the upstream rejected out of use in every
// process and disables it in the database through Options.DisableKey.
func (r *Router) rejectKey(ctx context.Context, pick Pick, upstreamErr *providers.UpstreamError) {
	providerID := pick.Candidate.ProviderID
	r.opts.OnCooldown(providerID, CooldownCredentialRejected)
	if pick.KeyID == "" {
		// The credential is the provider's configured APIKey, which only a
		// configuration change can fix, so its candidate stays out of use.
		r.coolDown(ctx, candidateEntry(providerID, pick.Candidate.Model), r.opts.AuthCooldown, "credential rejected",
			"provider", providerID, "model", pick.Candidate.Model, "status", upstreamErr.StatusCode)
		return
	}

	r.coolDown(ctx, keyEntry(pick.KeyID), r.opts.AuthCooldown, "credential rejected",
		"provider", providerID, "key_id", pick.KeyID, "status", upstreamErr.StatusCode)
	if r.opts.DisableKey == nil {
		return
	}
	reason := fmt.Sprintf("upstream returned %d at %s", upstreamErr.StatusCode, r.opts.Now().UTC().Format(time.RFC3339))
	if err := r.opts.DisableKey(ctx, pick.KeyID, reason); err != nil {
		r.logger.Error("disable provider key failed; it stays in cooldown", "provider", providerID, "key_id", pick.KeyID, "error", err)
		return
	}
	r.logger.Warn("provider key disabled", "provider", providerID, "key_id", pick.KeyID, "reason", reason)
}

// intN returns a random int in [0, n).
func (r *Router) intN(n int) int {
	if r.rand == nil {
		return rand.IntN(n)
	}
	r.randMu.Lock()
	defer r.randMu.Unlock()
	return r.rand.IntN(n)
}

// weightedShuffle orders items by drawing each position from the remaining
// items with probability weight / (sum of remaining weights). Items with a
// weight of 0 or less come last, in no particular order.
func weightedShuffle[T any](items []T, weight func(T) int, intN func(n int) int) {
	if len(items) < 2 {
		return
	}
	total := 0
	for _, item := range items {
		total += max(weight(item), 0)
	}
	for i := 0; i < len(items)-1 && total > 0; i++ {
		x := intN(total)
		j := i
		for ; j < len(items)-1; j++ {
			w := max(weight(items[j]), 0)
			if x < w {
				break
			}
			x -= w
		}
		total -= max(weight(items[j]), 0)
		items[i], items[j] = items[j], items[i]
	}
}

// earlier returns the earlier of two Unix millisecond times, where 0 means
// unset.
func earlier(a, b int64) int64 {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

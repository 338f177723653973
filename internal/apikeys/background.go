package apikeys

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// sweepBatch is how many expired keys one sweep query marks inactive.
	sweepBatch = 500
	// usageThrottle is the minimum time between two last_used_at updates of
	// one key from one process.
	usageThrottle = time.Minute
	// usageFlushInterval is how often Run writes queued last_used_at
	// updates, so last_used_at lags real use by up to this much.
	usageFlushInterval = 10 * time.Second
	// maxPendingUsage bounds the queue of keys waiting for a last_used_at
	// update; uses beyond it are dropped until the next flush.
	maxPendingUsage = 10000
	// finalFlushTimeout bounds the last_used_at write when Run stops.
	finalFlushTimeout = 5 * time.Second
)

// Run receives cache invalidations from other API processes, writes
// last_used_at and, when SweepInterval is above zero, marks expired keys
// inactive every SweepInterval, until ctx ends. Start it once per Service.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if s.shared != nil {
		wg.Go(func() { s.listen(ctx) })
	}

	// A nil channel never delivers, which leaves the sweep out of the loop.
	var sweepTicks <-chan time.Time
	if s.sweepInterval > 0 {
		sweep := time.NewTicker(s.sweepInterval)
		defer sweep.Stop()
		sweepTicks = sweep.C
		s.sweepAndLog(ctx)
	}
	flush := time.NewTicker(usageFlushInterval)
	defer flush.Stop()

	for {
		select {
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalFlushTimeout)
			s.flushUsage(flushCtx)
			cancel()
			wg.Wait()
			return
		case <-sweepTicks:
			s.sweepAndLog(ctx)
		case <-flush.C:
			s.flushUsage(ctx)
		}
	}
}

func (s *Service) sweepAndLog(ctx context.Context) {
	n, err := s.Sweep(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Error("sweep of expired API keys failed", "swept", n, "error", err)
		}
		return
	}
	if n > 0 {
		s.logger.Info("expired API keys marked inactive", "swept", n)
	} else {
		s.logger.Debug("no expired API key to sweep")
	}
}

// Sweep marks every active key whose expires_at has passed as inactive with
// disabled_reason "expired", drops their cache entries and returns how many
// it found. When several API processes sweep at once, a key may be counted
// by more than one of them.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		expired, err := s.store.ExpireAPIKeys(ctx, s.now(), sweepBatch)
		if err != nil {
			return total, fmt.Errorf("sweep expired API keys: %w", err)
		}
		hashes := make([]string, len(expired))
		for i, k := range expired {
			hashes[i] = k.KeyHash
		}
		s.dropCache(ctx, hashes...)
		total += len(expired)
		if len(expired) < sweepBatch {
			return total, nil
		}
	}
}

// usageTracker queues keys for a last_used_at update at most once per
// usageThrottle. Most requests only do a sync.Map lookup and an atomic load.
type usageTracker struct {
	// queuedAt maps a key ID to the *atomic.Int64 Unix nanoseconds when it
	// was last queued.
	queuedAt sync.Map

	mu      sync.Mutex
	pending map[string]struct{}
}

func newUsageTracker() usageTracker {
	return usageTracker{pending: make(map[string]struct{})}
}

func (u *usageTracker) touch(id string, now time.Time) {
	v, ok := u.queuedAt.Load(id)
	if !ok {
		v, _ = u.queuedAt.LoadOrStore(id, new(atomic.Int64))
	}
	queuedAt := v.(*atomic.Int64)
	last := queuedAt.Load()
	nanos := now.UnixNano()
	if last != 0 && nanos-last < int64(usageThrottle) {
		return
	}
	// Of concurrent requests past the throttle, only one queues the key.
	if !queuedAt.CompareAndSwap(last, nanos) {
		return
	}

	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.pending) < maxPendingUsage {
		u.pending[id] = struct{}{}
	}
}

// take empties the queue and returns the key IDs that were in it.
func (u *usageTracker) take() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.pending) == 0 {
		return nil
	}
	ids := make([]string, 0, len(u.pending))
	for id := range u.pending {
		ids = append(ids, id)
	}
	clear(u.pending)
	return ids
}

// forget drops the throttle state of keys not queued since before, so the
// map holds only keys used within the last usageThrottle.
func (u *usageTracker) forget(before time.Time) {
	limit := before.UnixNano()
	u.queuedAt.Range(func(id, v any) bool {
		if v.(*atomic.Int64).Load() < limit {
			u.queuedAt.Delete(id)
		}
		return true
	})
}

// flushUsage sets last_used_at to now on the queued keys. A failed write is
// logged and not retried: last_used_at is informational.
func (s *Service) flushUsage(ctx context.Context) {
	now := s.now()
	s.usage.forget(now.Add(-usageThrottle))
	ids := s.usage.take()
	for chunk := range slices.Chunk(ids, sweepBatch) {
		if err := s.store.TouchAPIKeys(ctx, chunk, now); err != nil {
			s.logger.Warn("update last_used_at of API keys failed", "keys", len(chunk), "error", err)
		}
	}
}

package router_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/internal/testenv"
)

// fakeClock is a settable clock for cooldown ends and MaxQPS windows.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// commandCounter is a go-redis hook that counts the round trips of a
// client: one per command, and one per pipeline whatever its length.
type commandCounter struct {
	n atomic.Int64
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

// redisEnv is one Redis server and key prefix that several routers share,
// as the processes of one deployment do.
type redisEnv struct {
	t      *testing.T
	url    string
	prefix string
}

func newRedisEnv(t *testing.T) *redisEnv {
	t.Helper()
	url, prefix := testenv.Redis(t)
	return &redisEnv{t: t, url: url, prefix: prefix}
}

// client returns a new Redis client with a command counter.
func (e *redisEnv) client() (*redis.Client, *commandCounter) {
	e.t.Helper()
	opts, err := redis.ParseURL(e.url)
	if err != nil {
		e.t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	e.t.Cleanup(func() { _ = rdb.Close() })
	counter := &commandCounter{}
	rdb.AddHook(counter)
	return rdb, counter
}

// router returns a router with its own Redis client. Options without a
// clock get clock, and options without a random source get a seeded one.
func (e *redisEnv) router(catalog *providers.Catalog, clock *fakeClock, opts router.Options) (*router.Router, *commandCounter) {
	e.t.Helper()
	rdb, counter := e.client()
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.NewPCG(1, 2)
	}
	return router.New(catalog, rdb, e.prefix, opts), counter
}

// runMirror runs r's mirror until the test ends and waits until it is live.
func runMirror(t *testing.T, r *router.Router) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitUntil(t, 5*time.Second, "mirror to go live", r.MirrorLive)
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// catalogSpec describes a test catalog: providers with their keys, and one
// logical model per entry of models.
type catalogSpec struct {
	providers []providers.Provider
	models    []providers.LogicalModel
}

func buildCatalog(t testing.TB, spec catalogSpec) *providers.Catalog {
	t.Helper()
	catalog := providers.NewCatalog()
	for i, p := range spec.providers {
		if p.BaseURL == "" {
			p.BaseURL = "http://127.0.0.1:1/v1"
		}
		var models []providers.LogicalModel
		if i == len(spec.providers)-1 {
			models = spec.models
		}
		if err := catalog.AddProvider(p, models...); err != nil {
			t.Fatal(err)
		}
	}
	return catalog
}

func candidate(providerID, model string, priority, weight int) providers.Candidate {
	return providers.Candidate{ProviderID: providerID, Model: model, Priority: priority, Weight: weight}
}

func chatModel(name string, candidates ...providers.Candidate) providers.LogicalModel {
	return providers.LogicalModel{Name: name, Capabilities: []providers.Capability{providers.CapabilityChat}, Candidates: candidates}
}

func names(candidates []providers.Candidate) string {
	parts := make([]string, len(candidates))
	for i, c := range candidates {
		parts[i] = c.ProviderID + "/" + c.Model
	}
	return strings.Join(parts, ",")
}

func upstreamErr(kind providers.ErrorKind, status int) *providers.UpstreamError {
	return &providers.UpstreamError{Kind: kind, StatusCode: status, Message: "injected"}
}

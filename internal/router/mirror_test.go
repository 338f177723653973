package router_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
)

func twoCandidateCatalog(t testing.TB) *providers.Catalog {
	t.Helper()
	return buildCatalog(t, catalogSpec{
		providers: []providers.Provider{{ID: "p", Keys: []providers.ProviderKey{{ID: "k1", Secret: "s1", Weight: 1}}}},
		models:    []providers.LogicalModel{chatModel("m", candidate("p", "a", 1, 1), candidate("p", "b", 0, 1))},
	})
}

func planNames(t *testing.T, r *router.Router) string {
	t.Helper()
	plan, err := r.Plan(context.Background(), "m", providers.CapabilityChat)
	if errors.Is(err, router.ErrAllCoolingDown) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return names(plan)
}

func TestCooldownSharedBetweenProcesses(t *testing.T) {
	tests := []struct {
		name string
		// mirror runs the reading router's mirror.
		mirror bool
		// within is how soon the reading router must see the cooldown.
		within time.Duration
	}{
		{name: "reader without mirror", mirror: false, within: 0},
		{name: "reader with mirror", mirror: true, within: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newRedisEnv(t)
			catalog := twoCandidateCatalog(t)
			clock := newFakeClock()
			writer, _ := env.router(catalog, clock, router.Options{})
			reader, _ := env.router(catalog, clock, router.Options{})
			if tt.mirror {
				runMirror(t, reader)
			}
			if got := planNames(t, reader); got != "p/a,p/b" {
				t.Fatalf("plan before the cooldown = %s, want p/a,p/b", got)
			}

			start := time.Now()
			writer.Report(context.Background(), router.Pick{Candidate: candidate("p", "a", 1, 1), KeyID: "k1"},
				upstreamErr(providers.ErrorRateLimited, 429))
			for planNames(t, reader) != "p/b" {
				if time.Since(start) > tt.within {
					t.Fatalf("the reader did not see the cooldown within %s", tt.within)
				}
				time.Sleep(time.Millisecond)
			}
			t.Logf("cooldown seen by the other router after %s", time.Since(start))
		})
	}
}

func TestMirrorReadsNoRedis(t *testing.T) {
	env := newRedisEnv(t)
	catalog := twoCandidateCatalog(t)
	r, counter := env.router(catalog, newFakeClock(), router.Options{})
	ctx := context.Background()

	countCommands := func() int64 {
		before := counter.n.Load()
		for range 20 {
			plan, err := r.Plan(ctx, "m", providers.CapabilityChat)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Acquire(ctx, plan[0]); err != nil {
				t.Fatal(err)
			}
			r.Report(ctx, router.Pick{Candidate: plan[0]}, nil)
		}
		return counter.n.Load() - before
	}

	// The first calls open the connection, whose handshake is counted too.
	countCommands()

	// Without the mirror every Plan and Acquire reads Redis once.
	if n := countCommands(); n != 40 {
		t.Errorf("20 Plan+Acquire+Report without mirror sent %d Redis commands, want 40", n)
	}
	runMirror(t, r)
	if n := countCommands(); n != 0 {
		t.Errorf("20 Plan+Acquire+Report with a live mirror sent %d Redis commands, want 0", n)
	}
}

func TestMirrorResyncRepairsMissedMessages(t *testing.T) {
	env := newRedisEnv(t)
	catalog := twoCandidateCatalog(t)
	clock := newFakeClock()
	r, _ := env.router(catalog, clock, router.Options{ResyncInterval: 50 * time.Millisecond, PingInterval: 20 * time.Millisecond})
	runMirror(t, r)

	// A cooldown written without its message, as when the message was lost.
	rdb, _ := env.client()
	until := clock.Now().Add(time.Minute).UnixMilli()
	if err := rdb.HSet(context.Background(), env.prefix+"router:cooldowns", "c:p|a", until).Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Second, "resync to load the cooldown", func() bool { return planNames(t, r) == "p/b" })
}

func TestMirrorPrunesEndedCooldowns(t *testing.T) {
	env := newRedisEnv(t)
	catalog := twoCandidateCatalog(t)
	clock := newFakeClock()
	r, _ := env.router(catalog, clock, router.Options{RateLimitCooldown: time.Second, ResyncInterval: 20 * time.Millisecond, PingInterval: 10 * time.Millisecond})
	r.Report(context.Background(), router.Pick{Candidate: candidate("p", "a", 1, 1)}, upstreamErr(providers.ErrorRateLimited, 429))
	clock.Advance(2 * time.Second)
	runMirror(t, r)

	rdb, _ := env.client()
	waitUntil(t, 2*time.Second, "ended cooldown to leave the hash", func() bool {
		n, err := rdb.HLen(context.Background(), env.prefix+"router:cooldowns").Result()
		return err == nil && n == 0
	})
}

func TestMirrorRecoversFromConnectionLoss(t *testing.T) {
	tests := []struct {
		name string
		cut  func(p *tcpProxy)
	}{
		// The server closes the connection, so reads fail at once.
		{name: "connection closed", cut: (*tcpProxy).closeAll},
		// The connection stays open but nothing arrives, as after a
		// network partition; only the unanswered PING reveals it.
		{name: "connection silent", cut: (*tcpProxy).blackhole},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newRedisEnv(t)
			catalog := twoCandidateCatalog(t)
			clock := newFakeClock()

			opts, err := redis.ParseURL(env.url)
			if err != nil {
				t.Fatal(err)
			}
			proxy := startProxy(t, opts.Addr)
			opts.Addr = proxy.addr()
			opts.MaxRetries = -1
			opts.DialerRetries = 1
			opts.DialTimeout = 200 * time.Millisecond
			opts.ReadTimeout = 200 * time.Millisecond
			opts.WriteTimeout = 200 * time.Millisecond
			rdb := redis.NewClient(opts)
			t.Cleanup(func() { _ = rdb.Close() })
			reader := router.New(catalog, rdb, env.prefix, router.Options{
				Now: clock.Now, Rand: rand.NewPCG(1, 2), PingInterval: 50 * time.Millisecond,
			})
			writer, _ := env.router(catalog, clock, router.Options{})
			runMirror(t, reader)

			tt.cut(proxy)
			waitUntil(t, 2*time.Second, "mirror to notice the lost connection", func() bool { return !reader.MirrorLive() })

			// A change while the reader is cut off reaches it only through
			// the reload after it reconnects.
			writer.Report(context.Background(), router.Pick{Candidate: candidate("p", "a", 1, 1), KeyID: "k1"},
				upstreamErr(providers.ErrorRateLimited, 429))
			proxy.restore()
			waitUntil(t, 10*time.Second, "mirror to reconnect", reader.MirrorLive)
			if got := planNames(t, reader); got != "p/b" {
				t.Errorf("plan after reconnecting = %s, want p/b", got)
			}
		})
	}
}

func TestRedisDownFailsOpen(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	listener.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })

	catalog := buildCatalog(t, catalogSpec{
		providers: []providers.Provider{{ID: "p", Keys: []providers.ProviderKey{{ID: "k1", Secret: "s1", Weight: 1, MaxQPS: 1}}}},
		models:    []providers.LogicalModel{chatModel("m", candidate("p", "a", 0, 1))},
	})
	r := router.New(catalog, rdb, "down:", router.Options{RedisTimeout: 100 * time.Millisecond})
	ctx := context.Background()

	plan, err := r.Plan(ctx, "m", providers.CapabilityChat)
	if err != nil || names(plan) != "p/a" {
		t.Fatalf("Plan with Redis down = %s, %v; want p/a", names(plan), err)
	}
	for i := range 3 {
		pick, err := r.Acquire(ctx, plan[0])
		if err != nil || pick.KeyID != "k1" {
			t.Fatalf("Acquire %d with Redis down = %q, %v; want k1 without a MaxQPS check", i, pick.KeyID, err)
		}
	}
	r.Report(ctx, router.Pick{Candidate: plan[0], KeyID: "k1"}, upstreamErr(providers.ErrorServer, 500))
	r.Report(ctx, router.Pick{Candidate: plan[0], KeyID: "k1"}, upstreamErr(providers.ErrorAuth, 401))

	runCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := r.Run(runCtx); err != nil {
		t.Errorf("Run with Redis down = %v, want nil when its context ends", err)
	}
	if r.MirrorLive() {
		t.Error("mirror is live without Redis")
	}
}

func TestRunTwiceFails(t *testing.T) {
	env := newRedisEnv(t)
	r, _ := env.router(twoCandidateCatalog(t), newFakeClock(), router.Options{})
	runMirror(t, r)
	if err := r.Run(context.Background()); err == nil {
		t.Error("a second Run returned nil, want an error")
	}
}

// tcpProxy forwards loopback connections to a Redis server and can break
// them on demand.
type tcpProxy struct {
	t        *testing.T
	target   string
	listener net.Listener

	mu     sync.Mutex
	conns  []net.Conn
	silent bool
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{t: t, target: target, listener: listener}
	t.Cleanup(func() {
		listener.Close()
		p.closeAll()
	})
	go p.serve()
	return p
}

func (p *tcpProxy) addr() string { return p.listener.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		client, err := p.listener.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.silent {
			// Accept and hold the connection without forwarding anything.
			p.conns = append(p.conns, client)
			p.mu.Unlock()
			continue
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			client.Close()
			continue
		}
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		go p.pipe(server, client)
		go p.pipe(client, server)
	}
}

// pipe copies src to dst and drops the data while the proxy is silent.
func (p *tcpProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			silent := p.silent
			p.mu.Unlock()
			if !silent {
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
		}
		if err != nil {
			// Closing the other side passes the end on, as a real
			// connection would.
			_ = dst.Close()
			return
		}
	}
}

func (p *tcpProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *tcpProxy) blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.silent = true
}

// restore drops every held connection and forwards new ones again.
func (p *tcpProxy) restore() {
	p.mu.Lock()
	p.silent = false
	p.mu.Unlock()
	p.closeAll()
}

package apikeys

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
)

const testMasterKey = "apikeys-test-master-key-0123456789abcdef"

// fakeClock is a concurrency-safe clock that tests move by hand.
type fakeClock struct{ nanos atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.nanos.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.nanos.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.nanos.Add(int64(d)) }

// env is one test's database and Redis, shared by the Services that a test
// creates, as API processes share them.
type env struct {
	t      *testing.T
	store  *store.Store
	rdb    *redis.Client
	prefix string
	// queries counts the SELECTs that reach the database.
	queries atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, store: testenv.Store(t)}
	redisURL, prefix := testenv.Redis(t)
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	e.rdb = redis.NewClient(opts)
	e.prefix = prefix
	t.Cleanup(func() { _ = e.rdb.Close() })

	err = e.store.DB.Callback().Query().Before("gorm:query").Register("count_queries", func(*gorm.DB) { e.queries.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// service returns a Service on the env. Its Run loop runs until the test
// ends when run is true.
func (e *env) service(opts Options, run bool) *Service {
	e.t.Helper()
	if opts.Redis == nil {
		opts.Redis = e.rdb
	}
	opts.RedisPrefix = e.prefix
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := NewService(e.store, testMasterKey, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Run(ctx)
		}()
		e.t.Cleanup(func() {
			cancel()
			<-done
		})
		select {
		case <-s.subscribed:
		case <-time.After(5 * time.Second):
			e.t.Fatal("the invalidation subscription was not confirmed within 5s")
		}
	}
	return s
}

func (e *env) user() string {
	e.t.Helper()
	name := "u" + testenv.Suffix()
	u := &models.User{Username: name, Email: name + "@example.com", PasswordHash: "x", IsActive: true}
	if err := e.store.CreateUser(context.Background(), u); err != nil {
		e.t.Fatal(err)
	}
	return u.ID
}

func (e *env) create(s *Service, userID string, in NewKey) (string, *models.APIKey) {
	e.t.Helper()
	if in.Name == "" {
		in.Name = "test key"
	}
	secret, key, err := s.Create(context.Background(), userID, in)
	if err != nil {
		e.t.Fatal(err)
	}
	return secret, key
}

func mustPrefixes(t *testing.T, items ...string) []netip.Prefix {
	t.Helper()
	out := make([]netip.Prefix, len(items))
	for i, item := range items {
		p, err := ParsePrefix(item)
		if err != nil {
			t.Fatalf("ParsePrefix(%q): %v", item, err)
		}
		out[i] = p
	}
	return out
}

var anyAddr = netip.MustParseAddr("192.0.2.10")

func TestCreateAndAuthenticate(t *testing.T) {
	e := newEnv(t)
	s := e.service(Options{}, false)
	userID := e.user()
	expires := time.Now().Add(time.Hour)
	secret, key := e.create(s, userID, NewKey{Name: "ci", ExpiresAt: &expires, AllowedModels: []string{"m1"}})

	if !strings.HasPrefix(secret, SecretPrefix) || len(secret) != 47 {
		t.Errorf("secret = %q, want %q and 43 base64url characters", secret, SecretPrefix)
	}
	if key.Prefix != secret[:visiblePrefixLength] {
		t.Errorf("prefix = %q, want %q", key.Prefix, secret[:visiblePrefixLength])
	}

	p, err := s.Authenticate(context.Background(), secret, anyAddr)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if p.KeyID != key.ID || p.UserID != userID || p.Name != "ci" {
		t.Errorf("principal = %+v, want key %s of user %s named ci", p, key.ID, userID)
	}
	// Stored times have microsecond precision, as in PostgreSQL.
	if want := expires.Truncate(time.Microsecond); p.ExpiresAt == nil || !p.ExpiresAt.Equal(want) {
		t.Errorf("principal expires_at = %v, want %v", p.ExpiresAt, want)
	}
	if !p.AllowsModel("m1") || p.AllowsModel("m2") {
		t.Errorf("principal allowed models = %v, want only m1", p.AllowedModels)
	}

	// The secret is stored nowhere in clear.
	var row map[string]any
	if err := e.store.DB.Table("api_keys").Where("id = ?", key.ID).Take(&row).Error; err != nil {
		t.Fatal(err)
	}
	for column, value := range row {
		if text, ok := value.(string); ok && strings.Contains(text, secret[visiblePrefixLength:]) {
			t.Errorf("column %s contains the secret", column)
		}
	}
	if row["key_hash"] != s.mac.Sum(secret) {
		t.Errorf("key_hash = %v, want the HMAC of the secret", row["key_hash"])
	}
}

func TestAuthenticateRejects(t *testing.T) {
	e := newEnv(t)
	s := e.service(Options{}, false)
	clock := newFakeClock()
	s.now = clock.now
	userID := e.user()
	ctx := context.Background()

	valid, _ := e.create(s, userID, NewKey{})
	past := clock.now().Add(-time.Minute)
	expired, _ := e.create(s, userID, NewKey{ExpiresAt: &past})
	disabled, disabledKey := e.create(s, userID, NewKey{})
	if _, err := s.Update(ctx, userID, disabledKey.ID, Change{IsActive: new(false)}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		secret string
		want   error
	}{
		{"wrong secret", SecretPrefix + strings.Repeat("A", 43), ErrInvalidKey},
		{"one character changed", valid[:len(valid)-1] + flip(valid[len(valid)-1]), ErrInvalidKey},
		{"missing prefix", strings.TrimPrefix(valid, SecretPrefix), ErrInvalidKey},
		{"empty", "", ErrInvalidKey},
		{"too long", valid + strings.Repeat("A", maxSecretLength), ErrInvalidKey},
		{"expired", expired, ErrExpired},
		{"disabled", disabled, ErrDisabled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Twice: once from the database, once from the cache.
			for range 2 {
				p, err := s.Authenticate(ctx, tt.secret, anyAddr)
				if !errors.Is(err, tt.want) {
					t.Fatalf("Authenticate = %+v, %v; want %v", p, err, tt.want)
				}
			}
		})
	}
}

func flip(b byte) string {
	if b == 'A' {
		return "B"
	}
	return "A"
}

func TestExpiryCheckedOnCachedKey(t *testing.T) {
	e := newEnv(t)
	s := e.service(Options{}, false)
	clock := newFakeClock()
	s.now = clock.now
	ctx := context.Background()

	expires := clock.now().Add(300 * time.Millisecond)
	secret, _ := e.create(s, e.user(), NewKey{ExpiresAt: &expires})
	if _, err := s.Authenticate(ctx, secret, anyAddr); err != nil {
		t.Fatalf("Authenticate before expiry: %v", err)
	}

	// Still within the local cache TTL, so the database is not asked.
	clock.advance(500 * time.Millisecond)
	before := e.queries.Load()
	if _, err := s.Authenticate(ctx, secret, anyAddr); !errors.Is(err, ErrExpired) {
		t.Fatalf("Authenticate after expiry = %v, want ErrExpired", err)
	}
	if n := e.queries.Load() - before; n != 0 {
		t.Errorf("expired cached key cost %d queries, want 0 (served from the cache)", n)
	}
}

func TestAllowedIPs(t *testing.T) {
	e := newEnv(t)
	s := e.service(Options{}, false)
	userID := e.user()
	ctx := context.Background()

	tests := []struct {
		name    string
		allowed []string
		client  string
		want    error
	}{
		{"no list allows IPv4", nil, "198.51.100.7", nil},
		{"no list allows IPv6", nil, "2001:db8::1", nil},
		{"IPv4 inside prefix", []string{"198.51.100.0/24"}, "198.51.100.7", nil},
		{"IPv4 outside prefix", []string{"198.51.100.0/24"}, "198.51.101.7", ErrIPNotAllowed},
		{"IPv4 bare address", []string{"198.51.100.7"}, "198.51.100.7", nil},
		{"IPv4 bare address other client", []string{"198.51.100.7"}, "198.51.100.8", ErrIPNotAllowed},
		{"IPv6 inside prefix", []string{"2001:db8:1::/48"}, "2001:db8:1:2::5", nil},
		{"IPv6 outside prefix", []string{"2001:db8:1::/48"}, "2001:db8:2::5", ErrIPNotAllowed},
		{"IPv6 bare address", []string{"2001:db8::1"}, "2001:db8::1", nil},
		{"IPv4-mapped client matches IPv4 prefix", []string{"198.51.100.0/24"}, "::ffff:198.51.100.7", nil},
		{"IPv4-mapped client outside IPv4 prefix", []string{"198.51.100.0/24"}, "::ffff:203.0.113.1", ErrIPNotAllowed},
		{"IPv4-mapped prefix matches IPv4 client", []string{"::ffff:198.51.100.0/120"}, "198.51.100.7", nil},
		{"IPv4-mapped address matches IPv4 client", []string{"::ffff:198.51.100.7"}, "198.51.100.7", nil},
		{"IPv4 client against IPv6 list", []string{"2001:db8::/32"}, "198.51.100.7", ErrIPNotAllowed},
		{"second entry matches", []string{"10.0.0.0/8", "2001:db8::/32"}, "2001:db8::9", nil},
		{"invalid client address", []string{"10.0.0.0/8"}, "", ErrIPNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var allowed []netip.Prefix
			if tt.allowed != nil {
				allowed = mustPrefixes(t, tt.allowed...)
			}
			secret, _ := e.create(s, userID, NewKey{AllowedIPs: allowed})
			var client netip.Addr
			if tt.client != "" {
				client = netip.MustParseAddr(tt.client)
			}
			_, err := s.Authenticate(ctx, secret, client)
			if !errors.Is(err, tt.want) {
				t.Errorf("Authenticate from %q = %v, want %v", tt.client, err, tt.want)
			}
		})
	}
}

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"203.0.113.5", "203.0.113.5/32"},
		{"203.0.113.5/24", "203.0.113.0/24"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"2001:db8::1/32", "2001:db8::/32"},
		{"::ffff:203.0.113.5", "203.0.113.5/32"},
		{"::ffff:203.0.113.0/120", "203.0.113.0/24"},
		{"0.0.0.0/0", "0.0.0.0/0"},
	}
	for _, tt := range tests {
		got, err := ParsePrefix(tt.in)
		if err != nil || got.String() != tt.want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}

	for _, bad := range []string{"", "example.com", "203.0.113.5/33", "2001:db8::/129", "fe80::1%eth0", "::ffff:203.0.113.0/64", "203.0.113.5/", "1.2.3"} {
		if got, err := ParsePrefix(bad); err == nil {
			t.Errorf("ParsePrefix(%q) = %v, want an error", bad, got)
		}
	}
}

func TestAllowedModels(t *testing.T) {
	e := newEnv(t)
	s := e.service(Options{}, false)
	userID := e.user()

	tests := []struct {
		name    string
		allowed []string
		model   string
		want    bool
	}{
		{"nil allows any", nil, "m1", true},
		{"empty allows none", []string{}, "m1", false},
		{"listed", []string{"m1", "m2"}, "m2", true},
		{"not listed", []string{"m1"}, "m2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret, _ := e.create(s, userID, NewKey{AllowedModels: tt.allowed})
			// Check the principal from the database and from Redis, because
			// both must keep nil apart from empty.
			other := e.service(Options{LocalCacheSize: -1}, false)
			for _, svc := range []*Service{s, other} {
				p, err := svc.Authenticate(context.Background(), secret, anyAddr)
				if err != nil {
					t.Fatal(err)
				}
				if got := p.AllowsModel(tt.model); got != tt.want {
					t.Errorf("AllowsModel(%q) with %v = %v, want %v", tt.model, p.AllowedModels, got, tt.want)
				}
			}
		})
	}
}

func TestCacheHitSkipsDatabase(t *testing.T) {
	e := newEnv(t)
	s := e.service(Options{}, false)
	secret, _ := e.create(s, e.user(), NewKey{AllowedIPs: mustPrefixes(t, "192.0.2.0/24")})
	ctx := context.Background()

	before := e.queries.Load()
	if _, err := s.Authenticate(ctx, secret, anyAddr); err != nil {
		t.Fatal(err)
	}
	if n := e.queries.Load() - before; n != 1 {
		t.Fatalf("cold lookup ran %d queries, want 1", n)
	}

	before = e.queries.Load()
	for range 100 {
		if _, err := s.Authenticate(ctx, secret, anyAddr); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.queries.Load() - before; n != 0 {
		t.Errorf("100 warm lookups ran %d queries, want 0", n)
	}

	// A second process with a cold local cache finds the key in Redis.
	second := e.service(Options{LocalCacheSize: -1}, false)
	before = e.queries.Load()
	for range 10 {
		p, err := second.Authenticate(ctx, secret, anyAddr)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.AllowedIPs) != 1 || p.AllowedIPs[0].String() != "192.0.2.0/24" {
			t.Errorf("principal from Redis has allowed IPs %v, want [192.0.2.0/24]", p.AllowedIPs)
		}
	}
	if n := e.queries.Load() - before; n != 0 {
		t.Errorf("10 lookups through Redis ran %d queries, want 0", n)
	}

	// Redis names the entry after the HMAC, never the secret.
	keys, err := e.rdb.Keys(ctx, e.prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	hash := s.mac.Sum(secret)
	found := false
	for _, k := range keys {
		if strings.Contains(k, secret[len(SecretPrefix):]) {
			t.Errorf("Redis key %q contains the secret", k)
		}
		found = found || strings.Contains(k, hash)
		value, _ := e.rdb.Get(ctx, k).Result()
		if strings.Contains(value, secret[len(SecretPrefix):]) {
			t.Errorf("Redis value of %q contains the secret", k)
		}
	}
	if !found {
		t.Errorf("no Redis key among %v contains the key hash", keys)
	}
}

// TestInvalidationAcrossProcesses runs two Services on one database and
// Redis, as two API processes. The second one trusts its local copy for a
// minute, so only the invalidation message can make it notice the change
// within a second.
func TestInvalidationAcrossProcesses(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, s *Service, userID, id string)
		want   error
	}{
		{"disable", func(t *testing.T, s *Service, userID, id string) {
			if _, err := s.Update(context.Background(), userID, id, Change{IsActive: new(false)}); err != nil {
				t.Fatal(err)
			}
		}, ErrDisabled},
		{"delete", func(t *testing.T, s *Service, userID, id string) {
			if err := s.Delete(context.Background(), userID, id); err != nil {
				t.Fatal(err)
			}
		}, ErrInvalidKey},
		{"restrict addresses", func(t *testing.T, s *Service, userID, id string) {
			change := Change{SetAllowedIPs: true, AllowedIPs: mustPrefixes(t, "10.0.0.0/8")}
			if _, err := s.Update(context.Background(), userID, id, change); err != nil {
				t.Fatal(err)
			}
		}, ErrIPNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			first := e.service(Options{}, true)
			second := e.service(Options{LocalCacheTTL: time.Minute}, true)
			userID := e.user()
			secret, key := e.create(first, userID, NewKey{})
			ctx := context.Background()
			for _, s := range []*Service{first, second} {
				if _, err := s.Authenticate(ctx, secret, anyAddr); err != nil {
					t.Fatal(err)
				}
			}

			tt.change(t, first, userID, key.ID)
			changed := time.Now()
			for {
				_, err := second.Authenticate(ctx, secret, anyAddr)
				if errors.Is(err, tt.want) {
					t.Logf("second process noticed the change after %s", time.Since(changed))
					break
				}
				if time.Since(changed) > time.Second {
					t.Fatalf("second process still returns %v one second after the change, want %v", err, tt.want)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// TestMissedInvalidationExpires checks the bound for a process that did not
// receive the message: it runs no subscription at all.
func TestMissedInvalidationExpires(t *testing.T) {
	e := newEnv(t)
	first := e.service(Options{}, false)
	deaf := e.service(Options{}, false)
	userID := e.user()
	secret, key := e.create(first, userID, NewKey{})
	ctx := context.Background()
	if _, err := deaf.Authenticate(ctx, secret, anyAddr); err != nil {
		t.Fatal(err)
	}

	if _, err := first.Update(ctx, userID, key.ID, Change{IsActive: new(false)}); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	for {
		_, err := deaf.Authenticate(ctx, secret, anyAddr)
		if errors.Is(err, ErrDisabled) {
			break
		}
		// The local TTL is 1s; allow scheduling slack on a busy machine.
		if time.Since(changed) > 1500*time.Millisecond {
			t.Fatalf("process without the message still returns %v after %s", err, time.Since(changed))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConcurrentAuthenticateAndDisable hammers one key from many goroutines
// while it is disabled, then checks that no cache brings it back.
func TestConcurrentAuthenticateAndDisable(t *testing.T) {
	e := newEnv(t)
	first := e.service(Options{}, true)
	second := e.service(Options{LocalCacheTTL: time.Minute}, true)
	userID := e.user()
	secret, key := e.create(first, userID, NewKey{})
	ctx := context.Background()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures atomic.Int64
	for i := range 8 {
		s := first
		if i%2 == 1 {
			s = second
		}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := s.Authenticate(ctx, secret, anyAddr)
				if err != nil && !errors.Is(err, ErrDisabled) {
					failures.Add(1)
				}
			}
		})
	}

	time.Sleep(50 * time.Millisecond)
	if _, err := first.Update(ctx, userID, key.ID, Change{IsActive: new(false)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Errorf("%d lookups failed with an error other than ErrDisabled", n)
	}

	for _, s := range []*Service{first, second} {
		for range 20 {
			if _, err := s.Authenticate(ctx, secret, anyAddr); !errors.Is(err, ErrDisabled) {
				t.Fatalf("Authenticate one second after disabling = %v, want ErrDisabled", err)
			}
		}
	}
	raw, err := e.rdb.Get(ctx, first.shared.key(first.mac.Sum(secret))).Result()
	if err == nil && !strings.Contains(raw, `"is_active":false`) {
		t.Errorf("Redis still holds the key as active: %s", raw)
	}
}

func TestStaleFillIsRefused(t *testing.T) {
	e := newEnv(t)
	s := e.service(Options{}, false)
	ctx := context.Background()
	stale := &entry{principal: Principal{KeyID: uuid.NewString(), UserID: uuid.NewString()}, active: true}
	hash := "00" + testenv.Suffix()

	// Redis: a fill after the block of a change does not land.
	if err := s.shared.block(ctx, hash); err != nil {
		t.Fatal(err)
	}
	if err := s.shared.fill(ctx, hash, stale); err != nil {
		t.Fatal(err)
	}
	if got, err := s.shared.get(ctx, hash); err != nil || got != nil {
		t.Errorf("Redis entry after a blocked fill = %+v, %v; want none", got, err)
	}
	other := hash + "ff"
	if err := s.shared.fill(ctx, other, stale); err != nil {
		t.Fatal(err)
	}
	if got, err := s.shared.get(ctx, other); err != nil || got == nil || got.principal.KeyID != stale.principal.KeyID {
		t.Errorf("Redis entry after an unblocked fill = %+v, %v; want the entry", got, err)
	}

	// Local: a load that began before an invalidation does not store.
	now := time.Now()
	generation := s.local.generation()
	s.local.invalidate(hash)
	s.local.put(hash, stale, generation, now)
	if got, ok := s.local.get(hash, now); ok {
		t.Errorf("local entry after a stale put = %+v, want none", got)
	}
	s.local.put(hash, stale, s.local.generation(), now)
	if _, ok := s.local.get(hash, now); !ok {
		t.Error("local entry after a current put is missing")
	}
}

func TestLocalCacheBounds(t *testing.T) {
	c := newLocalCache(time.Second, 64)
	now := time.Now()
	e := &entry{active: true}
	for i := range 1000 {
		c.put(strings.Repeat("x", i%7)+testenv.Suffix(), e, c.generation(), now)
		if len(c.entries) > 64 {
			t.Fatalf("cache holds %d entries after %d puts, want at most 64", len(c.entries), i+1)
		}
	}

	c.put("kept", e, c.generation(), now)
	if _, ok := c.get("kept", now.Add(999*time.Millisecond)); !ok {
		t.Error("entry is gone before its TTL")
	}
	if _, ok := c.get("kept", now.Add(time.Second)); ok {
		t.Error("entry is still served at its TTL")
	}
}

func TestSweep(t *testing.T) {
	e := newEnv(t)
	s := e.service(Options{}, false)
	clock := newFakeClock()
	s.now = clock.now
	userID := e.user()
	ctx := context.Background()

	past := clock.now().Add(-time.Hour)
	future := clock.now().Add(time.Hour)
	expired, expiredKey := e.create(s, userID, NewKey{Name: "expired", ExpiresAt: &past})
	_, futureKey := e.create(s, userID, NewKey{Name: "future", ExpiresAt: &future})
	_, foreverKey := e.create(s, userID, NewKey{Name: "forever"})
	_, disabledKey := e.create(s, userID, NewKey{Name: "disabled then expired", ExpiresAt: &past})
	if err := e.store.UpdateAPIKey(ctx, userID, disabledKey.ID, map[string]any{"is_active": false, "disabled_reason": store.APIKeyDisabledByUser}); err != nil {
		t.Fatal(err)
	}

	// Warm the caches so the sweep has an entry to drop.
	if _, err := s.Authenticate(ctx, expired, anyAddr); !errors.Is(err, ErrExpired) {
		t.Fatalf("Authenticate expired key before the sweep = %v, want ErrExpired", err)
	}
	hash := s.mac.Sum(expired)
	if n, _ := e.rdb.Exists(ctx, s.shared.key(hash)).Result(); n != 1 {
		t.Fatal("the expired key is not in Redis before the sweep")
	}

	n, err := s.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("Sweep swept %d keys, want 1", n)
	}

	want := map[string]struct {
		active bool
		reason string
	}{
		expiredKey.ID:  {false, store.APIKeyDisabledExpired},
		futureKey.ID:   {true, ""},
		foreverKey.ID:  {true, ""},
		disabledKey.ID: {false, store.APIKeyDisabledByUser},
	}
	for id, w := range want {
		row, err := e.store.APIKey(ctx, userID, id)
		if err != nil {
			t.Fatal(err)
		}
		if row.IsActive != w.active || row.DisabledReason != w.reason {
			t.Errorf("key %q: is_active=%v disabled_reason=%q, want %v %q", row.Name, row.IsActive, row.DisabledReason, w.active, w.reason)
		}
	}
	if n, _ := e.rdb.Exists(ctx, s.shared.key(hash)).Result(); n != 0 {
		t.Error("the swept key is still in Redis")
	}
	if _, ok := s.local.get(hash, clock.now()); ok {
		t.Error("the swept key is still in the local cache")
	}
	if _, err := s.Authenticate(ctx, expired, anyAddr); !errors.Is(err, ErrExpired) {
		t.Errorf("Authenticate swept key = %v, want ErrExpired", err)
	}

	if n, err := s.Sweep(ctx); err != nil || n != 0 {
		t.Errorf("second Sweep = %d, %v; want 0, nil", n, err)
	}
}

func TestRunSweepsPeriodically(t *testing.T) {
	e := newEnv(t)
	s := e.service(Options{SweepInterval: 50 * time.Millisecond}, true)
	userID := e.user()
	expires := time.Now().Add(200 * time.Millisecond)
	_, key := e.create(s, userID, NewKey{ExpiresAt: &expires})

	deadline := time.Now().Add(3 * time.Second)
	for {
		row, err := e.store.APIKey(context.Background(), userID, key.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !row.IsActive && row.DisabledReason == store.APIKeyDisabledExpired {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("key is still is_active=%v disabled_reason=%q 3s after it expired", row.IsActive, row.DisabledReason)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRunWithoutSweepInterval checks that Run leaves expired keys to the
// worker's schedule when SweepInterval is zero, as `serve` runs it by
// default.
func TestRunWithoutSweepInterval(t *testing.T) {
	e := newEnv(t)
	s := e.service(Options{}, true)
	userID := e.user()
	expires := time.Now().Add(time.Hour)
	_, key := e.create(s, userID, NewKey{ExpiresAt: &expires})
	if err := e.store.DB.Model(&models.APIKey{}).Where("id = ?", key.ID).Update("expires_at", time.Now().Add(-time.Minute).UTC()).Error; err != nil {
		t.Fatal(err)
	}

	// Run sweeps at its start when it sweeps at all, so a short wait
	// suffices.
	time.Sleep(300 * time.Millisecond)
	row, err := e.store.APIKey(context.Background(), userID, key.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !row.IsActive {
		t.Errorf("Run without a SweepInterval marked the key inactive with %q", row.DisabledReason)
	}
}

func TestUpdateAndDeleteRules(t *testing.T) {
	e := newEnv(t)
	s := e.service(Options{}, false)
	clock := newFakeClock()
	s.now = clock.now
	owner, other := e.user(), e.user()
	ctx := context.Background()

	expires := clock.now().Add(time.Hour)
	secret, key := e.create(s, owner, NewKey{ExpiresAt: &expires})

	if _, err := s.Update(ctx, other, key.ID, Change{IsActive: new(false)}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Update by another user = %v, want store.ErrNotFound", err)
	}
	if err := s.Delete(ctx, other, key.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delete by another user = %v, want store.ErrNotFound", err)
	}
	if _, err := s.Authenticate(ctx, secret, anyAddr); err != nil {
		t.Fatalf("key stopped working after another user's attempts: %v", err)
	}

	updated, err := s.Update(ctx, owner, key.ID, Change{IsActive: new(false)})
	if err != nil {
		t.Fatal(err)
	}
	if updated.IsActive || updated.DisabledReason != store.APIKeyDisabledByUser {
		t.Errorf("after disable: is_active=%v disabled_reason=%q", updated.IsActive, updated.DisabledReason)
	}
	updated, err = s.Update(ctx, owner, key.ID, Change{IsActive: new(true)})
	if err != nil {
		t.Fatal(err)
	}
	if !updated.IsActive || updated.DisabledReason != "" {
		t.Errorf("after enable: is_active=%v disabled_reason=%q", updated.IsActive, updated.DisabledReason)
	}

	clock.advance(2 * time.Hour)
	if _, err := s.Update(ctx, owner, key.ID, Change{IsActive: new(true)}); !errors.Is(err, ErrEnableExpired) {
		t.Errorf("enable an expired key = %v, want ErrEnableExpired", err)
	}
	name := "renamed"
	if _, err := s.Update(ctx, owner, key.ID, Change{Name: &name}); err != nil {
		t.Errorf("rename an expired key = %v, want success", err)
	}
}

func TestRedisUnavailable(t *testing.T) {
	e := newEnv(t)
	// Nothing listens on port 1 of the loopback address.
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = down.Close() })
	s := e.service(Options{Redis: down}, false)
	userID := e.user()
	secret, key := e.create(s, userID, NewKey{})
	ctx := context.Background()

	if _, err := s.Authenticate(ctx, secret, anyAddr); err != nil {
		t.Errorf("Authenticate with Redis down = %v, want the key from the database", err)
	}

	_, err := s.Update(ctx, userID, key.ID, Change{IsActive: new(false)})
	if !errors.Is(err, ErrCacheUnavailable) {
		t.Errorf("Update with Redis down = %v, want ErrCacheUnavailable", err)
	}
	if err := s.Delete(ctx, userID, key.ID); !errors.Is(err, ErrCacheUnavailable) {
		t.Errorf("Delete with Redis down = %v, want ErrCacheUnavailable", err)
	}
	row, err := e.store.APIKey(ctx, userID, key.ID)
	if err != nil {
		t.Fatalf("the key is gone after a refused Delete: %v", err)
	}
	if !row.IsActive {
		t.Error("the key was disabled although Update reported that it was not")
	}
}

func TestLastUsedAt(t *testing.T) {
	e := newEnv(t)
	s := e.service(Options{}, false)
	clock := newFakeClock()
	s.now = clock.now
	userID := e.user()
	secret, key := e.create(s, userID, NewKey{})
	ctx := context.Background()

	before := e.queries.Load()
	for range 5 {
		if _, err := s.Authenticate(ctx, secret, anyAddr); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.queries.Load() - before; n != 1 {
		t.Errorf("5 lookups ran %d queries, want 1: last_used_at must not be written on the request path", n)
	}
	row, _ := e.store.APIKey(ctx, userID, key.ID)
	if row.LastUsedAt != nil {
		t.Errorf("last_used_at = %v before the flush, want NULL", row.LastUsedAt)
	}

	s.flushUsage(ctx)
	row, _ = e.store.APIKey(ctx, userID, key.ID)
	if row.LastUsedAt == nil || row.LastUsedAt.Sub(clock.now()).Abs() > time.Second {
		t.Fatalf("last_used_at = %v after the flush, want about %v", row.LastUsedAt, clock.now())
	}
	first := *row.LastUsedAt

	// Within the throttle, use does not queue another write.
	clock.advance(30 * time.Second)
	if _, err := s.Authenticate(ctx, secret, anyAddr); err != nil {
		t.Fatal(err)
	}
	if ids := s.usage.take(); len(ids) != 0 {
		t.Errorf("use 30s after the last write queued %v, want nothing", ids)
	}

	clock.advance(31 * time.Second)
	if _, err := s.Authenticate(ctx, secret, anyAddr); err != nil {
		t.Fatal(err)
	}
	s.flushUsage(ctx)
	row, _ = e.store.APIKey(ctx, userID, key.ID)
	if row.LastUsedAt == nil || !row.LastUsedAt.After(first) {
		t.Errorf("last_used_at = %v after a use past the throttle, want later than %v", row.LastUsedAt, first)
	}
}

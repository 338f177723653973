package tokens

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aihigress/aihigress/internal/testenv"
)

// fakeClock starts at the real time, so that the Redis TTLs derived from it
// are sane, and moves only when a test advances it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
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

const testGrace = 5 * time.Second

func newTestStore(t *testing.T) (*Store, *redis.Client, *fakeClock) {
	t.Helper()
	rdb, prefix := testenv.RedisClient(t)
	clock := &fakeClock{now: time.Now()}
	return New(rdb, Options{Prefix: prefix, ReuseGrace: testGrace, Now: clock.Now}), rdb, clock
}

func TestCreateAndCheck(t *testing.T) {
	ctx := context.Background()
	st, rdb, clock := newTestStore(t)
	if err := st.Create(ctx, "user-a", "sess-1", "jti-1", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		userID  string
		session string
		want    error
	}{
		{"recorded session", "user-a", "sess-1", nil},
		{"other user's session ID", "user-b", "sess-1", ErrSessionRevoked},
		{"unknown session", "user-a", "sess-2", ErrSessionRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := st.Check(ctx, tt.userID, tt.session); !errors.Is(err, tt.want) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
		})
	}

	ttl, err := rdb.PTTL(ctx, st.sessionKey("user-a", "sess-1")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > time.Hour {
		t.Errorf("session key TTL = %v, want in (0, 1h]", ttl)
	}
	members, err := rdb.ZRange(ctx, st.userKey("user-a"), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 1 || members[0] != "sess-1" {
		t.Errorf("user index = %v, want [sess-1]", members)
	}
	for _, key := range []string{st.sessionKey("user-a", "sess-1"), st.userKey("user-a")} {
		if !strings.HasPrefix(key, st.prefix) || st.prefix == "" {
			t.Errorf("key %q lacks the test prefix %q", key, st.prefix)
		}
	}

	if err := st.Create(ctx, "user-a", "sess-3", "jti-3", clock.Now()); err == nil {
		t.Error("Create accepted an expiry that is not in the future")
	}
}

func TestRotateReuseRule(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// extraRotation rotates once more before the replay, so that the
		// replayed "jti-1" is two generations old.
		extraRotation bool
		advance       time.Duration
		presented     string
		want          error
		wantLive      bool
	}{
		{"live token rotates", false, 0, "jti-2", nil, true},
		{"replaced token at once", false, 0, "jti-1", ErrRefreshSuperseded, true},
		{"replaced token within grace", false, testGrace / 2, "jti-1", ErrRefreshSuperseded, true},
		{"replaced token at grace end", false, testGrace, "jti-1", ErrRefreshSuperseded, true},
		{"replaced token after grace", false, testGrace + time.Millisecond, "jti-1", ErrRefreshReused, false},
		{"two generations old", true, 0, "jti-1", ErrRefreshReused, false},
		{"unknown jti", false, 0, "jti-forged", ErrRefreshReused, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _, clock := newTestStore(t)
			expires := func() time.Time { return clock.Now().Add(time.Hour) }
			if err := st.Create(ctx, "user-a", "sess-1", "jti-1", expires()); err != nil {
				t.Fatal(err)
			}
			if err := st.Rotate(ctx, "user-a", "sess-1", "jti-1", "jti-2", expires()); err != nil {
				t.Fatalf("first rotation: %v", err)
			}
			live := "jti-2"
			if tt.extraRotation {
				if err := st.Rotate(ctx, "user-a", "sess-1", "jti-2", "jti-3", expires()); err != nil {
					t.Fatalf("second rotation: %v", err)
				}
				live = "jti-3"
			}
			clock.Advance(tt.advance)

			err := st.Rotate(ctx, "user-a", "sess-1", tt.presented, "jti-new", expires())
			if !errors.Is(err, tt.want) {
				t.Fatalf("Rotate(%s) = %v, want %v", tt.presented, err, tt.want)
			}
			if err == nil {
				live = "jti-new"
			}

			checkErr := st.Check(ctx, "user-a", "sess-1")
			if tt.wantLive && checkErr != nil {
				t.Errorf("session not live after Rotate: %v", checkErr)
			}
			if !tt.wantLive && !errors.Is(checkErr, ErrSessionRevoked) {
				t.Errorf("Check after reuse = %v, want ErrSessionRevoked", checkErr)
			}

			// The live token must keep working unless the session was revoked.
			err = st.Rotate(ctx, "user-a", "sess-1", live, "jti-after", expires())
			if tt.wantLive && err != nil {
				t.Errorf("live token %s rejected after the replay: %v", live, err)
			}
			if !tt.wantLive && !errors.Is(err, ErrSessionRevoked) {
				t.Errorf("live token %s after reuse = %v, want ErrSessionRevoked", live, err)
			}
		})
	}
}

func TestRotateRaceHasOneWinner(t *testing.T) {
	ctx := context.Background()
	st, _, clock := newTestStore(t)
	expiresAt := clock.Now().Add(time.Hour)
	if err := st.Create(ctx, "user-a", "sess-1", "jti-0", expiresAt); err != nil {
		t.Fatal(err)
	}

	const rounds, racers = 50, 8
	live := "jti-0"
	for round := range rounds {
		errs := make([]error, racers)
		var start, done sync.WaitGroup
		start.Add(1)
		for i := range racers {
			done.Add(1)
			go func() {
				defer done.Done()
				start.Wait()
				errs[i] = st.Rotate(ctx, "user-a", "sess-1", live, fmt.Sprintf("jti-%d-%d", round+1, i), expiresAt)
			}()
		}
		start.Done()
		done.Wait()

		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: racers %d and %d both won", round, winner, i)
				}
				winner = i
			case !errors.Is(err, ErrRefreshSuperseded):
				t.Fatalf("round %d: racer %d got %v, want nil or ErrRefreshSuperseded", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no racer won: %v", round, errs)
		}
		if err := st.Check(ctx, "user-a", "sess-1"); err != nil {
			t.Fatalf("round %d: the winner's session is not live: %v", round, err)
		}
		live = fmt.Sprintf("jti-%d-%d", round+1, winner)
	}
}

func TestRevokeAndRevokeAll(t *testing.T) {
	ctx := context.Background()
	st, rdb, clock := newTestStore(t)
	expiresAt := clock.Now().Add(time.Hour)
	sessions := []struct{ user, id string }{
		{"user-a", "a1"}, {"user-a", "a2"}, {"user-a", "a3"}, {"user-b", "b1"},
	}
	for _, s := range sessions {
		if err := st.Create(ctx, s.user, s.id, "jti-"+s.id, expiresAt); err != nil {
			t.Fatal(err)
		}
	}

	if err := st.Revoke(ctx, "user-a", "a1"); err != nil {
		t.Fatal(err)
	}
	if err := st.Check(ctx, "user-a", "a1"); !errors.Is(err, ErrSessionRevoked) {
		t.Errorf("Check(a1) after Revoke = %v, want ErrSessionRevoked", err)
	}
	if err := st.Check(ctx, "user-a", "a2"); err != nil {
		t.Errorf("Check(a2) after revoking a1 = %v, want nil", err)
	}
	if err := st.Revoke(ctx, "user-a", "a1"); err != nil {
		t.Errorf("second Revoke(a1) = %v, want nil", err)
	}
	if err := st.Rotate(ctx, "user-a", "a1", "jti-a1", "jti-a1-next", expiresAt); !errors.Is(err, ErrSessionRevoked) {
		t.Errorf("Rotate on a revoked session = %v, want ErrSessionRevoked", err)
	}

	n, err := st.RevokeAll(ctx, "user-a")
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("RevokeAll returned %d, want 2", n)
	}
	for _, id := range []string{"a1", "a2", "a3"} {
		if err := st.Check(ctx, "user-a", id); !errors.Is(err, ErrSessionRevoked) {
			t.Errorf("Check(%s) after RevokeAll = %v, want ErrSessionRevoked", id, err)
		}
	}
	if err := st.Check(ctx, "user-b", "b1"); err != nil {
		t.Errorf("another user's session was revoked: %v", err)
	}
	if exists, err := rdb.Exists(ctx, st.userKey("user-a")).Result(); err != nil || exists != 0 {
		t.Errorf("user index still exists (%d, %v)", exists, err)
	}

	n, err = st.RevokeAll(ctx, "user-a")
	if err != nil || n != 0 {
		t.Errorf("second RevokeAll = %d, %v; want 0, nil", n, err)
	}
}

func TestSessionExpiry(t *testing.T) {
	ctx := context.Background()
	st, rdb, clock := newTestStore(t)
	start := clock.Now()
	if err := st.Create(ctx, "user-a", "short", "jti-s", start.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, "user-a", "sliding", "jti-1", start.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	// A rotation at 30 minutes moves the sliding session's expiry to 90.
	clock.Advance(30 * time.Minute)
	if err := st.Rotate(ctx, "user-a", "sliding", "jti-1", "jti-2", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	clock.Advance(45 * time.Minute)
	if err := st.Check(ctx, "user-a", "short"); !errors.Is(err, ErrSessionRevoked) {
		t.Errorf("Check(short) after its expiry = %v, want ErrSessionRevoked", err)
	}
	if err := st.Check(ctx, "user-a", "sliding"); err != nil {
		t.Errorf("Check(sliding) = %v, want nil because the rotation extended it", err)
	}

	// The next login prunes expired sessions from the index.
	if err := st.Create(ctx, "user-a", "next", "jti-n", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	members, err := rdb.ZRange(ctx, st.userKey("user-a"), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(members, ",") != "sliding,next" {
		t.Errorf("user index = %v, want [sliding next]", members)
	}
	if err := st.Rotate(ctx, "user-a", "short", "jti-s", "jti-s2", clock.Now().Add(time.Hour)); !errors.Is(err, ErrSessionRevoked) {
		t.Errorf("Rotate(short) after its expiry = %v, want ErrSessionRevoked", err)
	}

	clock.Advance(time.Hour)
	if err := st.Check(ctx, "user-a", "sliding"); !errors.Is(err, ErrSessionRevoked) {
		t.Errorf("Check(sliding) after its new expiry = %v, want ErrSessionRevoked", err)
	}
}

package activities_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/aihigress/aihigress/activities"
	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/workflows"
)

const maintenanceMasterKey = "maintenance-test-master-key-0123456789"

// maintenanceFixture is a database, a Redis prefix and the maintenance
// activities over them, run in Temporal's activity test environment.
type maintenanceFixture struct {
	store  *store.Store
	rdb    *redis.Client
	prefix string
	m      *activities.Maintenance
	env    *testsuite.TestActivityEnvironment
	user   models.User
}

func newMaintenanceFixture(t *testing.T, settings config.Maintenance) *maintenanceFixture {
	t.Helper()
	st := testenv.Store(t)
	rdb, prefix := testenv.RedisClient(t)
	keys, err := apikeys.NewService(st, maintenanceMasterKey, apikeys.Options{Redis: rdb, RedisPrefix: prefix, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f := &maintenanceFixture{store: st, rdb: rdb, prefix: prefix}
	f.m = &activities.Maintenance{Store: st, APIKeys: keys, Settings: settings, Logger: slog.New(slog.DiscardHandler)}

	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	f.env = suite.NewTestActivityEnvironment()
	f.env.RegisterActivity(f.m)

	f.user = models.User{Username: "u" + testenv.Suffix(), Email: testenv.Suffix() + "@example.com", PasswordHash: "x", IsActive: true}
	if err := st.CreateUser(context.Background(), &f.user); err != nil {
		t.Fatal(err)
	}
	return f
}

// run executes one activity and decodes its result into out, which may be
// nil.
func (f *maintenanceFixture) run(t *testing.T, activity any, out any, args ...any) {
	t.Helper()
	value, err := f.env.ExecuteActivity(activity, args...)
	if err != nil {
		t.Fatalf("activity: %v", err)
	}
	if out != nil {
		if err := value.Get(out); err != nil {
			t.Fatal(err)
		}
	}
}

// apiProcess returns an API key service as an API process runs it: with a
// local cache whose TTL is an hour, so that only an invalidation message
// can make it see a change within the test, and with Run listening.
func (f *maintenanceFixture) apiProcess(t *testing.T) *apikeys.Service {
	t.Helper()
	s, err := apikeys.NewService(f.store, maintenanceMasterKey, apikeys.Options{
		Redis: f.rdb, RedisPrefix: f.prefix, LocalCacheTTL: time.Hour, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitForCondition(t, 5*time.Second, "the API process to subscribe to invalidations", func() bool {
		counts, err := f.rdb.PubSubNumSub(context.Background(), f.prefix+"apikey-invalidations").Result()
		return err == nil && counts[f.prefix+"apikey-invalidations"] > 0
	})
	return s
}

func (f *maintenanceFixture) createKey(t *testing.T, name string) (string, *models.APIKey) {
	t.Helper()
	secret, key, err := f.m.APIKeys.Create(context.Background(), f.user.ID, apikeys.NewKey{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return secret, key
}

func (f *maintenanceFixture) key(t *testing.T, id string) models.APIKey {
	t.Helper()
	var key models.APIKey
	if err := f.store.DB.Where("id = ?", id).Take(&key).Error; err != nil {
		t.Fatal(err)
	}
	return key
}

func waitForCondition(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExpireAPIKeysActivity(t *testing.T) {
	f := newMaintenanceFixture(t, config.Maintenance{})
	_, expired := f.createKey(t, "expired")
	_, future := f.createKey(t, "expires later")
	_, forever := f.createKey(t, "never expires")
	set := func(id string, expiresAt time.Time) {
		if err := f.store.DB.Model(&models.APIKey{}).Where("id = ?", id).Update("expires_at", expiresAt.UTC()).Error; err != nil {
			t.Fatal(err)
		}
	}
	set(expired.ID, time.Now().Add(-time.Minute))
	set(future.ID, time.Now().Add(time.Hour))

	var result workflows.ExpireAPIKeysResult
	f.run(t, f.m.ExpireAPIKeys, &result)
	if result.Expired != 1 {
		t.Errorf("Expired = %d, want 1", result.Expired)
	}
	tests := []struct {
		id         string
		wantActive bool
		wantReason string
	}{
		{expired.ID, false, store.APIKeyDisabledExpired},
		{future.ID, true, ""},
		{forever.ID, true, ""},
	}
	for _, tt := range tests {
		key := f.key(t, tt.id)
		if key.IsActive != tt.wantActive || key.DisabledReason != tt.wantReason {
			t.Errorf("key %s: active %v reason %q, want %v %q", key.Name, key.IsActive, key.DisabledReason, tt.wantActive, tt.wantReason)
		}
	}

	f.run(t, f.m.ExpireAPIKeys, &result)
	if result.Expired != 0 {
		t.Errorf("second run expired %d keys, want 0", result.Expired)
	}
}

// logRows writes n request log rows of key with status, created at at.
func (f *maintenanceFixture) logRows(t *testing.T, keyID string, n, status int, at time.Time) {
	t.Helper()
	rows := make([]models.RequestLog, n)
	for i := range rows {
		rows[i] = models.RequestLog{
			CreatedAt: at.UTC(), RequestID: testenv.Suffix(), APIKeyID: &keyID, UserID: &f.user.ID,
			Method: "POST", Path: "/v1/chat/completions", LogicalModel: "m", StatusCode: status, LatencyMS: 12,
		}
	}
	if err := f.store.DB.CreateInBatches(rows, 500).Error; err != nil {
		t.Fatal(err)
	}
}

func TestDisableFailingAPIKeys(t *testing.T) {
	rule := config.APIKeyErrorRate{Threshold: 0.8, Window: 10 * time.Minute, MinRequests: 10}
	f := newMaintenanceFixture(t, config.Maintenance{APIKeyErrorRate: rule})
	api := f.apiProcess(t)

	failingSecret, failing := f.createKey(t, "mostly client errors")
	_, serverErrors := f.createKey(t, "upstream outage")
	_, throttled := f.createKey(t, "rate limited")
	_, clientClosed := f.createKey(t, "client went away")
	_, few := f.createKey(t, "too few requests")
	_, belowThreshold := f.createKey(t, "half failing")
	_, reenabled := f.createKey(t, "enabled again")
	_, outside := f.createKey(t, "errors before the window")
	// Only requests after a key's updated_at count, so the rows come after
	// the keys.
	time.Sleep(5 * time.Millisecond)
	now := time.Now().UTC()

	f.logRows(t, failing.ID, 9, 400, now)
	f.logRows(t, failing.ID, 2, 403, now)
	f.logRows(t, failing.ID, 1, 200, now)
	f.logRows(t, serverErrors.ID, 12, 502, now)
	f.logRows(t, throttled.ID, 12, 429, now)
	f.logRows(t, clientClosed.ID, 12, 499, now)
	f.logRows(t, few.ID, 9, 404, now)
	f.logRows(t, belowThreshold.ID, 6, 400, now)
	f.logRows(t, belowThreshold.ID, 6, 200, now)

	// Errors from before the key's last change, such as its user enabling
	// it again, do not count.
	f.logRows(t, reenabled.ID, 12, 400, now.Add(-5*time.Minute))

	if err := f.store.DB.Model(&models.APIKey{}).Where("id = ?", outside.ID).Update("updated_at", now.Add(-time.Hour)).Error; err != nil {
		t.Fatal(err)
	}
	f.logRows(t, outside.ID, 12, 400, now.Add(-20*time.Minute))

	// The API process has the key cached for an hour.
	clientIP := netip.MustParseAddr("127.0.0.1")
	if _, err := api.Authenticate(context.Background(), failingSecret, clientIP); err != nil {
		t.Fatalf("Authenticate before the job: %v", err)
	}

	var found []workflows.FailingAPIKey
	f.run(t, f.m.FindFailingAPIKeys, &found, workflows.FindFailingAPIKeysInput{AsOf: now.Add(time.Second)})
	if len(found) != 1 || found[0].KeyID != failing.ID {
		t.Fatalf("found = %+v, want only key %s", found, failing.ID)
	}
	if found[0].Requests != 12 || found[0].Errors != 11 || found[0].UserID != f.user.ID {
		t.Errorf("found = %+v, want 12 requests and 11 errors of user %s", found[0], f.user.ID)
	}

	var disabled workflows.DisableAPIKeysResult
	f.run(t, f.m.DisableAPIKeys, &disabled, workflows.DisableAPIKeysInput{Keys: found})
	if disabled.Disabled != 1 || disabled.Skipped != 0 {
		t.Errorf("DisableAPIKeys = %+v, want 1 disabled", disabled)
	}
	key := f.key(t, failing.ID)
	if key.IsActive || key.DisabledReason != store.APIKeyDisabledErrorRate {
		t.Errorf("key after the job: active %v reason %q, want inactive with %q", key.IsActive, key.DisabledReason, store.APIKeyDisabledErrorRate)
	}
	waitForCondition(t, time.Second, "the API process to reject the disabled key", func() bool {
		_, err := api.Authenticate(context.Background(), failingSecret, clientIP)
		return errors.Is(err, apikeys.ErrDisabled)
	})

	// A retry of the activity disables nothing twice.
	f.run(t, f.m.DisableAPIKeys, &disabled, workflows.DisableAPIKeysInput{Keys: found})
	if disabled.Disabled != 0 || disabled.Skipped != 1 {
		t.Errorf("second DisableAPIKeys = %+v, want 1 skipped", disabled)
	}
}

func TestDisableAPIKeysSkipsChangedKeys(t *testing.T) {
	rule := config.APIKeyErrorRate{Threshold: 0.5, Window: 10 * time.Minute, MinRequests: 2}
	f := newMaintenanceFixture(t, config.Maintenance{APIKeyErrorRate: rule})
	_, changed := f.createKey(t, "renamed after it was found")
	time.Sleep(5 * time.Millisecond)
	now := time.Now().UTC()
	f.logRows(t, changed.ID, 4, 400, now)

	var found []workflows.FailingAPIKey
	f.run(t, f.m.FindFailingAPIKeys, &found, workflows.FindFailingAPIKeysInput{AsOf: now.Add(time.Second)})
	if len(found) != 1 {
		t.Fatalf("found %d keys, want 1", len(found))
	}

	// The user changes the key between the two activities.
	time.Sleep(5 * time.Millisecond)
	name := "renamed"
	if _, err := f.m.APIKeys.Update(context.Background(), f.user.ID, changed.ID, apikeys.Change{Name: &name}); err != nil {
		t.Fatal(err)
	}
	var disabled workflows.DisableAPIKeysResult
	f.run(t, f.m.DisableAPIKeys, &disabled, workflows.DisableAPIKeysInput{Keys: found})
	if disabled.Disabled != 0 || disabled.Skipped != 1 {
		t.Errorf("DisableAPIKeys = %+v, want the changed key skipped", disabled)
	}
	if key := f.key(t, changed.ID); !key.IsActive {
		t.Error("the changed key was disabled")
	}
}

func TestFindFailingAPIKeysRuleOff(t *testing.T) {
	f := newMaintenanceFixture(t, config.Maintenance{})
	_, key := f.createKey(t, "failing")
	f.logRows(t, key.ID, 200, 400, time.Now())
	var found []workflows.FailingAPIKey
	f.run(t, f.m.FindFailingAPIKeys, &found, workflows.FindFailingAPIKeysInput{AsOf: time.Now().Add(time.Second)})
	if len(found) != 0 {
		t.Errorf("found %+v with the rule off, want none", found)
	}
}

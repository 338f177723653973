package activities_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/internal/mockupstream"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/worker"
	"github.com/aihigress/aihigress/workflows"
)

const probeMockKey = "sk-probe-test-key"

// disabledKeys records the provider keys that the router disables through
// router.Options.DisableKey.
type disabledKeys struct {
	mu  sync.Mutex
	ids []string
}

func (d *disabledKeys) disable(_ context.Context, keyID, _ string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ids = append(d.ids, keyID)
	return nil
}

func (d *disabledKeys) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.ids)
}

// TestProbeProvidersAgainstMockUpstream runs ProbeProvidersWorkflow with
// the real activities against the mock upstream: healthy OpenAI and Gemini
// providers, one whose model list fails with 500, one whose port is closed
// and one whose key the upstream rejects.
func TestProbeProvidersAgainstMockUpstream(t *testing.T) {
	mock, err := mockupstream.Start("", mockupstream.Options{APIKey: probeMockKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mock.Close() })
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + listener.Addr().String() + "/v1"
	_ = listener.Close()

	rejectedKeyID := uuid.NewString()
	catalog := providers.NewCatalog()
	add := func(p providers.Provider) {
		t.Helper()
		model := providers.LogicalModel{Name: "model-" + p.ID, Candidates: []providers.Candidate{{ProviderID: p.ID, Model: "upstream-" + p.ID}}}
		if err := catalog.AddProvider(p, model); err != nil {
			t.Fatal(err)
		}
	}
	add(providers.Provider{ID: "ok-openai", Kind: "openai", BaseURL: mock.URL() + "/v1", APIKey: probeMockKey})
	add(providers.Provider{ID: "ok-gemini", Kind: "gemini", BaseURL: mock.URL(), APIKey: probeMockKey})
	add(providers.Provider{ID: "failing", Kind: "openai", BaseURL: mock.URL() + "/v1", APIKey: probeMockKey,
		Headers: map[string]string{"X-Mock-Fault": "500"}})
	add(providers.Provider{ID: "down", Kind: "openai", BaseURL: closedURL})
	add(providers.Provider{ID: "rejected", Kind: "openai", BaseURL: mock.URL() + "/v1",
		Keys: []providers.ProviderKey{{ID: rejectedKeyID, Label: "default", Secret: "bad-probe-key", Weight: 1}}})
	add(providers.Provider{ID: "off", Kind: "openai", BaseURL: mock.URL() + "/v1", APIKey: probeMockKey, Disabled: true})

	f := newMaintenanceFixture(t, config.Maintenance{ProbeTimeout: 3 * time.Second, ProbeProvidersInterval: time.Minute})
	disabled := &disabledKeys{}
	f.m.Catalog = catalog
	f.m.Router = router.New(catalog, f.rdb, f.prefix, router.Options{DisableKey: disabled.disable})
	f.m.Client = providers.NewClient(providers.ClientOptions{ConnectTimeout: 2 * time.Second})

	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	worker.RegisterMaintenance(env, f.m)
	env.ExecuteWorkflow(workflows.ProbeProvidersWorkflowName, workflows.MaintenanceInput{})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var result workflows.ProbeProvidersResult
	if err := env.GetWorkflowResult(&result); err != nil {
		t.Fatal(err)
	}
	if result.Probed != 5 {
		t.Errorf("Probed = %d, want 5 (the disabled provider is left out)", result.Probed)
	}
	if want := []string{"down", "failing", "rejected"}; !slices.Equal(result.Unhealthy, want) {
		t.Errorf("Unhealthy = %v, want %v", result.Unhealthy, want)
	}
	if result.CoolDown != (workflows.CoolDownProvidersResult{Providers: 2, RejectedKeys: 1}) {
		t.Errorf("CoolDown = %+v, want 2 providers and 1 rejected key", result.CoolDown)
	}
	if got := mock.Handler().Stats().Models; got != 4 {
		t.Errorf("the mock served %d model lists, want 4", got)
	}

	var rows []models.ProviderHealth
	if err := f.store.DB.Order("provider_id").Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	wantRows := []struct {
		provider   string
		healthy    bool
		statusCode int
		hasError   bool
	}{
		{"down", false, 0, true},
		{"failing", false, 500, true},
		{"ok-gemini", true, 200, false},
		{"ok-openai", true, 200, false},
		{"rejected", false, 401, true},
	}
	if len(rows) != len(wantRows) {
		t.Fatalf("provider_health has %d rows, want %d: %+v", len(rows), len(wantRows), rows)
	}
	for i, want := range wantRows {
		row := rows[i]
		if row.ProviderID != want.provider || row.Healthy != want.healthy || row.StatusCode != want.statusCode || (row.Error != "") != want.hasError {
			t.Errorf("row %d = %+v, want provider %s healthy %v status %d error %v", i, row, want.provider, want.healthy, want.statusCode, want.hasError)
		}
		if row.CheckedAt.IsZero() || row.LatencyMS <= 0 {
			t.Errorf("row of %s has checked_at %s and latency %g ms, want both set", row.ProviderID, row.CheckedAt, row.LatencyMS)
		}
	}

	// Another process reads the cooldowns from Redis.
	other := router.New(catalog, f.rdb, f.prefix, router.Options{})
	tests := []struct {
		model       string
		wantCooling bool
	}{
		{"model-failing", true},
		{"model-down", true},
		{"model-rejected", true},
		{"model-ok-openai", false},
		{"model-ok-gemini", false},
	}
	for _, tt := range tests {
		_, err := other.Plan(context.Background(), tt.model, providers.CapabilityChat)
		var cooling *router.CooldownError
		if got := errors.As(err, &cooling); got != tt.wantCooling {
			t.Errorf("Plan(%s) error = %v, want cooling down: %v", tt.model, err, tt.wantCooling)
		}
	}
	if got := disabled.list(); !slices.Equal(got, []string{rejectedKeyID}) {
		t.Errorf("disabled provider keys = %v, want [%s]", got, rejectedKeyID)
	}
}

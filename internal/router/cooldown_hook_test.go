package router_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
)

// cooldownLog collects the calls of Options.OnCooldown.
type cooldownLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *cooldownLog) record(providerID, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, providerID+":"+reason)
}

func (l *cooldownLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.calls)
}

func TestOnCooldownReasons(t *testing.T) {
	keyed := candidate("keyed", "m", 0, 1)
	open := candidate("open", "m", 0, 1)
	tests := []struct {
		name    string
		pick    router.Pick
		errs    []error
		wantLog string
	}{
		{"success", router.Pick{Candidate: open}, []error{nil}, "[]"},
		{"429", router.Pick{Candidate: open}, []error{upstreamErr(providers.ErrorRateLimited, 429)}, "[open:rate_limited]"},
		{"401 on a key", router.Pick{Candidate: keyed, KeyID: "k1"}, []error{upstreamErr(providers.ErrorAuth, 401)}, "[keyed:credential_rejected]"},
		{"403 without a key", router.Pick{Candidate: open}, []error{upstreamErr(providers.ErrorAuth, 403)}, "[open:credential_rejected]"},
		{"two 5xx stay below the threshold", router.Pick{Candidate: open}, []error{upstreamErr(providers.ErrorServer, 500), upstreamErr(providers.ErrorServer, 502)}, "[]"},
		{"the third 5xx starts a cooldown", router.Pick{Candidate: open},
			[]error{upstreamErr(providers.ErrorServer, 500), upstreamErr(providers.ErrorTimeout, 0), upstreamErr(providers.ErrorConnect, 0)}, "[open:failures]"},
		{"bad request", router.Pick{Candidate: open}, []error{upstreamErr(providers.ErrorBadRequest, 400)}, "[]"},
		{"context canceled", router.Pick{Candidate: open}, []error{context.Canceled}, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			catalog := buildCatalog(t, catalogSpec{
				providers: []providers.Provider{
					{ID: "keyed", Keys: []providers.ProviderKey{{ID: "k1", Secret: "s1", Weight: 1}}},
					{ID: "open"},
				},
				models: []providers.LogicalModel{chatModel("m", keyed, open)},
			})
			log := &cooldownLog{}
			r, _ := newRedisEnv(t).router(catalog, newFakeClock(), router.Options{FailureThreshold: 3, OnCooldown: log.record})
			for _, err := range tt.errs {
				r.Report(context.Background(), tt.pick, err)
			}
			if got := log.String(); got != tt.wantLog {
				t.Errorf("OnCooldown calls = %s, want %s", got, tt.wantLog)
			}
		})
	}
}

package integration

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aihigress/aihigress/models"
)

type apiKeyCreated struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

// TestServeSweepsExpiredAPIKeys checks that Serve starts the API key sweep
// and stops it on shutdown.
func TestServeSweepsExpiredAPIKeys(t *testing.T) {
	s := newStack(t, stackOptions{noWorker: true, env: map[string]string{
		"HTTP_ADDR":              "127.0.0.1:0",
		"API_KEY_SWEEP_INTERVAL": "100ms",
	}})
	c := s.newUser()
	var key apiKeyCreated
	c.mustDo("POST", "/v1/api-keys", map[string]any{"name": "sweep me", "expires_in_days": 1}, 201, &key)
	err := s.app.Store.DB.Model(&models.APIKey{}).Where("id = ?", key.ID).
		Update("expires_at", time.Now().Add(-time.Second).UTC()).Error
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.app.Serve(ctx) }()

	waitFor(t, 5*time.Second, "the sweep to mark the expired key inactive", func() bool {
		var row models.APIKey
		if err := s.app.Store.DB.Where("id = ?", key.ID).Take(&row).Error; err != nil {
			t.Fatal(err)
		}
		return !row.IsActive && row.DisabledReason == "expired"
	})

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve returned %v after shutdown, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return within 15s of shutdown")
	}
}

// TestDisabledAPIKeyStopsOnEveryServer disables a key through one API server
// and expects the other, which has just authenticated it, to reject it
// within a second.
func TestDisabledAPIKeyStopsOnEveryServer(t *testing.T) {
	s := newStack(t, stackOptions{noWorker: true})
	ctx, cancel := context.WithCancel(context.Background())

	// A second API process with its background work running, as Serve
	// would run it.
	second, err := s.app.APIServer(nil)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		second.APIKeys.Run(ctx)
	}()
	srv := httptest.NewServer(second.Handler())
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-ran
	})

	c := s.newUser()
	var key apiKeyCreated
	c.mustDo("POST", "/v1/api-keys", map[string]any{"name": "shared"}, 201, &key)
	other := c.at(srv.URL)
	other.token = key.Key
	other.mustDo("GET", "/v1/models", nil, 200, nil)

	c.mustDo("PATCH", "/v1/api-keys/"+key.ID, map[string]any{"is_active": false}, 200, nil)
	disabled := time.Now()
	for {
		resp := other.request("GET", "/v1/models", nil, nil)
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		status := resp.StatusCode
		if status == http.StatusUnauthorized {
			checkError(t, status, resp.Header, raw, 401, "api_key_disabled")
			return
		}
		if time.Since(disabled) > time.Second {
			t.Fatalf("the second server still answers %d one second after the key was disabled: %s", status, raw)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package devenv_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/devenv"
	"github.com/aihigress/aihigress/internal/testenv"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestStartTemporalUICodecEndpoint checks that the dev server accepts
// --ui-codec-endpoint and that its Web UI hands the endpoint to browsers.
func TestStartTemporalUICodecEndpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal dev server")
	}
	cli, err := testenv.TemporalCLI()
	if err != nil {
		t.Fatal(err)
	}
	const endpoint = "http://127.0.0.1:8234/0123456789abcdef0123456789abcdef"
	uiPort := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := devenv.StartTemporal(ctx, devenv.TemporalOptions{
		CLIPath:         cli,
		Namespace:       "default",
		UIPort:          strconv.Itoa(uiPort),
		UICodecEndpoint: endpoint,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Stop() }()

	// The UI server may start responding a moment after the frontend.
	settingsURL := "http://127.0.0.1:" + strconv.Itoa(uiPort) + "/api/v1/settings"
	var body string
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(settingsURL)
		if err == nil {
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				body = string(raw)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s did not answer 200 within 30s: %v", settingsURL, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(body, endpoint) {
		t.Errorf("UI settings do not contain the codec endpoint %s: %s", endpoint, body)
	}
}

func TestDynamicConfigPutsDefaultsFirst(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   []string
	}{
		{"no values", nil, []string{"system.enableActivityEagerExecution=true"}},
		{"extra value", []string{"history.transferProcessorMaxPollRPS=1000"},
			[]string{"system.enableActivityEagerExecution=true", "history.transferProcessorMaxPollRPS=1000"}},
		{"override", []string{"system.enableActivityEagerExecution=false"},
			[]string{"system.enableActivityEagerExecution=true", "system.enableActivityEagerExecution=false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := devenv.DynamicConfig(tt.values)
			if !slices.Equal(got, tt.want) {
				t.Errorf("DynamicConfig(%q) = %q, want %q", tt.values, got, tt.want)
			}
		})
	}
}

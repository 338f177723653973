package metrics_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/metrics"
)

// TestTemporalHandlerReportsToRegistry checks the naming that the SDK's
// metrics get on /metrics: counters end in _total, timers become
// histograms in seconds, and tags become labels.
func TestTemporalHandlerReportsToRegistry(t *testing.T) {
	r := metrics.New(metrics.Options{})
	handler := r.TemporalHandler()
	if handler == nil {
		t.Fatal("no Temporal handler")
	}
	if r.TemporalHandler() != handler {
		t.Error("a second call returned another handler")
	}
	tagged := handler.WithTags(map[string]string{"namespace": "default", "operation": "StartWorkflowExecution"})
	tagged.Counter("temporal_request").Inc(2)
	tagged.Timer("temporal_request_latency").Record(30 * time.Millisecond)
	handler.Gauge("temporal_num_pollers").Update(3)

	want := []string{
		`temporal_request_total{namespace="default",operation="StartWorkflowExecution"} 2`,
		`temporal_request_latency_seconds_count{namespace="default",operation="StartWorkflowExecution"} 1`,
		`temporal_num_pollers 3`,
	}
	var text string
	deadline := time.Now().Add(5 * time.Second)
	for {
		text = scrape(t, r.Handler(""), "")
		missing := 0
		for _, line := range want {
			if !strings.Contains(text, line) {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, line := range want {
				if !strings.Contains(text, line) {
					t.Errorf("/metrics lacks %q after 5 s", line)
				}
			}
			break
		}
		// tally reports every second.
		time.Sleep(50 * time.Millisecond)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Errorf("close: %v", err)
	}
}

package config

import (
	"strings"
	"testing"
	"time"
)

func TestLoadMetrics(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    Metrics
		wantErr string
	}{
		{name: "defaults", want: Metrics{Enabled: true, WorkerAddr: DefaultWorkerMetricsAddr, FlushInterval: 30 * time.Second,
			DegradedErrorRate: 0.05, UnhealthyErrorRate: 0.25, HealthMinRequests: 10}},
		{name: "worker server off", env: map[string]string{"WORKER_METRICS_ADDR": "OFF"},
			want: Metrics{Enabled: true, FlushInterval: 30 * time.Second, DegradedErrorRate: 0.05, UnhealthyErrorRate: 0.25, HealthMinRequests: 10}},
		{name: "metrics off", env: map[string]string{"METRICS_ENABLED": "false"},
			want: Metrics{WorkerAddr: DefaultWorkerMetricsAddr, FlushInterval: 30 * time.Second, DegradedErrorRate: 0.05, UnhealthyErrorRate: 0.25, HealthMinRequests: 10}},
		{name: "every setting", env: map[string]string{
			"WORKER_METRICS_ADDR": "0.0.0.0:9100", "METRICS_FLUSH_INTERVAL": "5s", "METRICS_DEGRADED_ERROR_RATE": "0.1",
			"METRICS_UNHEALTHY_ERROR_RATE": "0.1", "METRICS_HEALTH_MIN_REQUESTS": "1"},
			want: Metrics{Enabled: true, WorkerAddr: "0.0.0.0:9100", FlushInterval: 5 * time.Second, DegradedErrorRate: 0.1, UnhealthyErrorRate: 0.1, HealthMinRequests: 1}},
		{name: "enabled not a switch", env: map[string]string{"METRICS_ENABLED": "maybe"}, wantErr: "METRICS_ENABLED"},
		{name: "flush interval too short", env: map[string]string{"METRICS_FLUSH_INTERVAL": "500ms"}, wantErr: "METRICS_FLUSH_INTERVAL"},
		{name: "rate not a number", env: map[string]string{"METRICS_DEGRADED_ERROR_RATE": "5%"}, wantErr: "METRICS_DEGRADED_ERROR_RATE"},
		{name: "rate above 1", env: map[string]string{"METRICS_UNHEALTHY_ERROR_RATE": "1.5"}, wantErr: "METRICS_UNHEALTHY_ERROR_RATE"},
		{name: "degraded rate 0", env: map[string]string{"METRICS_DEGRADED_ERROR_RATE": "0"}, wantErr: "METRICS_DEGRADED_ERROR_RATE"},
		{name: "degraded above unhealthy", env: map[string]string{"METRICS_DEGRADED_ERROR_RATE": "0.3"}, wantErr: "at most METRICS_UNHEALTHY_ERROR_RATE"},
		{name: "no minimum", env: map[string]string{"METRICS_HEALTH_MIN_REQUESTS": "0"}, wantErr: "METRICS_HEALTH_MIN_REQUESTS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(envOf(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Metrics != tt.want {
				t.Errorf("Metrics = %+v, want %+v", cfg.Metrics, tt.want)
			}
		})
	}
}

package config

import (
	"strings"
	"testing"
	"time"
)

func TestLoadMaintenanceDefaults(t *testing.T) {
	cfg, err := Load(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Maintenance
	want := Maintenance{
		Schedules:               true,
		ExpireAPIKeysInterval:   time.Minute,
		APIKeyErrorRateInterval: time.Minute,
		ProbeProvidersInterval:  time.Minute,
		RollupInterval:          time.Hour,
		RunEventsInterval:       time.Hour,
		APIKeyErrorRate:         APIKeyErrorRate{Threshold: 0.9, Window: 15 * time.Minute, MinRequests: 100},
		ProbeTimeout:            10 * time.Second,
		RequestLogRetention:     7 * 24 * time.Hour,
		MetricsMinuteRetention:  2 * 24 * time.Hour,
		RunEventsRetention:      30 * 24 * time.Hour,
	}
	if m != want {
		t.Errorf("Maintenance = %+v, want %+v", m, want)
	}
	if !m.ErrorRateJobEnabled() || !m.RunEventsJobEnabled() {
		t.Error("a default job is turned off")
	}
	if cfg.APIKeySweepInterval != 0 {
		t.Errorf("APIKeySweepInterval = %s, want 0 (the worker's schedule sweeps)", cfg.APIKeySweepInterval)
	}
}

func TestLoadMaintenanceValues(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, m Maintenance)
	}{
		{"days", map[string]string{"REQUEST_LOG_RETENTION": "14d", "RUN_EVENTS_RETENTION": "1d"}, func(t *testing.T, m Maintenance) {
			if m.RequestLogRetention != 14*24*time.Hour || m.RunEventsRetention != 24*time.Hour {
				t.Errorf("retentions = %s, %s; want 336h, 24h", m.RequestLogRetention, m.RunEventsRetention)
			}
		}},
		{"Go duration", map[string]string{"MAINTENANCE_ROLLUP_INTERVAL": "30m"}, func(t *testing.T, m Maintenance) {
			if m.RollupInterval != 30*time.Minute {
				t.Errorf("RollupInterval = %s, want 30m", m.RollupInterval)
			}
		}},
		{"interval off", map[string]string{"MAINTENANCE_PROBE_PROVIDERS_INTERVAL": "off"}, func(t *testing.T, m Maintenance) {
			if m.ProbeProvidersInterval != 0 {
				t.Errorf("ProbeProvidersInterval = %s, want 0", m.ProbeProvidersInterval)
			}
		}},
		{"threshold 0 turns the error rate job off", map[string]string{"API_KEY_ERROR_RATE_THRESHOLD": "0"}, func(t *testing.T, m Maintenance) {
			if m.ErrorRateJobEnabled() {
				t.Error("error rate job enabled with threshold 0")
			}
		}},
		{"run events retention off turns its job off", map[string]string{"RUN_EVENTS_RETENTION": "off"}, func(t *testing.T, m Maintenance) {
			if m.RunEventsJobEnabled() {
				t.Error("run events job enabled without a retention")
			}
		}},
		{"schedules off", map[string]string{"MAINTENANCE_SCHEDULES": "off"}, func(t *testing.T, m Maintenance) {
			if m.Schedules {
				t.Error("Schedules = true, want false")
			}
		}},
		{"window at the retention", map[string]string{"API_KEY_ERROR_RATE_WINDOW": "2h", "REQUEST_LOG_RETENTION": "2h"}, func(t *testing.T, m Maintenance) {
			if m.APIKeyErrorRate.Window != 2*time.Hour {
				t.Errorf("Window = %s, want 2h", m.APIKeyErrorRate.Window)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(envOf(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg.Maintenance)
		})
	}
}

func TestLoadMaintenanceRejects(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"interval below a second", map[string]string{"MAINTENANCE_EXPIRE_API_KEYS_INTERVAL": "500ms"}, "MAINTENANCE_EXPIRE_API_KEYS_INTERVAL"},
		{"interval not a duration", map[string]string{"MAINTENANCE_ROLLUP_INTERVAL": "hourly"}, "MAINTENANCE_ROLLUP_INTERVAL"},
		{"negative days", map[string]string{"REQUEST_LOG_RETENTION": "-3d"}, "REQUEST_LOG_RETENTION"},
		{"fractional days", map[string]string{"RUN_EVENTS_RETENTION": "1.5d"}, "RUN_EVENTS_RETENTION"},
		{"retention below an hour", map[string]string{"METRICS_MINUTE_RETENTION": "30m"}, "METRICS_MINUTE_RETENTION"},
		{"threshold above 1", map[string]string{"API_KEY_ERROR_RATE_THRESHOLD": "1.5"}, "API_KEY_ERROR_RATE_THRESHOLD"},
		{"window off while the rule is on", map[string]string{"API_KEY_ERROR_RATE_WINDOW": "off"}, "API_KEY_ERROR_RATE_WINDOW"},
		{"no minimum requests", map[string]string{"API_KEY_ERROR_RATE_MIN_REQUESTS": "0"}, "API_KEY_ERROR_RATE_MIN_REQUESTS"},
		{"window beyond the retention", map[string]string{"API_KEY_ERROR_RATE_WINDOW": "3h", "REQUEST_LOG_RETENTION": "2h"}, "REQUEST_LOG_RETENTION"},
		{"probe timeout too short", map[string]string{"PROVIDER_PROBE_TIMEOUT": "10ms"}, "PROVIDER_PROBE_TIMEOUT"},
		{"schedules neither on nor off", map[string]string{"MAINTENANCE_SCHEDULES": "sometimes"}, "MAINTENANCE_SCHEDULES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(envOf(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load error = %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

package config

import (
	"strings"
	"testing"
	"time"
)

func TestLoadShutdown(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    Shutdown
		wantErr string
	}{
		{name: "defaults", want: Shutdown{Timeout: 15 * time.Second, WorkerStopTimeout: 20 * time.Second}},
		{name: "every setting", env: map[string]string{"SHUTDOWN_TIMEOUT": "40s", "SHUTDOWN_DRAIN_DELAY": "5s", "WORKER_STOP_TIMEOUT": "2m"},
			want: Shutdown{Timeout: 40 * time.Second, DrainDelay: 5 * time.Second, WorkerStopTimeout: 2 * time.Minute}},
		{name: "drain delay half of timeout", env: map[string]string{"SHUTDOWN_TIMEOUT": "10s", "SHUTDOWN_DRAIN_DELAY": "5s"},
			want: Shutdown{Timeout: 10 * time.Second, DrainDelay: 5 * time.Second, WorkerStopTimeout: 20 * time.Second}},
		{name: "worker cancels at once", env: map[string]string{"WORKER_STOP_TIMEOUT": "0s"},
			want: Shutdown{Timeout: 15 * time.Second}},
		{name: "timeout without unit", env: map[string]string{"SHUTDOWN_TIMEOUT": "15"}, wantErr: "SHUTDOWN_TIMEOUT"},
		{name: "timeout negative", env: map[string]string{"SHUTDOWN_TIMEOUT": "-5s"}, wantErr: "SHUTDOWN_TIMEOUT"},
		{name: "timeout under 1s", env: map[string]string{"SHUTDOWN_TIMEOUT": "500ms"}, wantErr: "SHUTDOWN_TIMEOUT must be at least 1s"},
		{name: "drain delay over half", env: map[string]string{"SHUTDOWN_TIMEOUT": "10s", "SHUTDOWN_DRAIN_DELAY": "6s"}, wantErr: "SHUTDOWN_DRAIN_DELAY"},
		{name: "drain delay not a duration", env: map[string]string{"SHUTDOWN_DRAIN_DELAY": "soon"}, wantErr: "SHUTDOWN_DRAIN_DELAY"},
		{name: "worker stop timeout negative", env: map[string]string{"WORKER_STOP_TIMEOUT": "-1s"}, wantErr: "WORKER_STOP_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(envOf(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Shutdown != tt.want {
				t.Errorf("Shutdown = %+v, want %+v", cfg.Shutdown, tt.want)
			}
		})
	}
}

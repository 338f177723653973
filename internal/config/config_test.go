package config

import (
	"strings"
	"testing"
	"time"
)

func envOf(values map[string]string) func(string) string {
	return func(k string) string { return values[k] }
}

func TestLoadDefaults(t *testing.T) {
	cfg, err := Load(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:8080" || cfg.TemporalNamespace != "default" || cfg.SSEHeartbeat != 15*time.Second {
		t.Errorf("defaults = %+v", cfg)
	}
	if cfg.UsesPostgres() {
		t.Error("an unset DATABASE_URL selected PostgreSQL")
	}
	if cfg.DatabaseMaxOpenConns != 20 {
		t.Errorf("DatabaseMaxOpenConns = %d, want 20", cfg.DatabaseMaxOpenConns)
	}
	if len(cfg.JWTSecret) < 32 || len(cfg.MasterKey) < 32 {
		t.Error("generated secrets are too short")
	}
	if strings.Join(cfg.GeneratedSecrets, ",") != "JWT_SECRET,MASTER_KEY" {
		t.Errorf("GeneratedSecrets = %v", cfg.GeneratedSecrets)
	}
}

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"bad integer", map[string]string{"MAX_CONTENT_CHARS": "lots"}, "MAX_CONTENT_CHARS"},
		{"negative integer", map[string]string{"HISTORY_MAX_MESSAGES": "-1"}, "HISTORY_MAX_MESSAGES"},
		{"bad duration", map[string]string{"SYNC_WAIT_TIMEOUT": "10"}, "SYNC_WAIT_TIMEOUT"},
		{"short JWT secret", map[string]string{"JWT_SECRET": "short"}, "JWT_SECRET"},
		{"heartbeat too long", map[string]string{"SSE_HEARTBEAT": "30s"}, "SSE_HEARTBEAT"},
		{"zero attempts", map[string]string{"UPSTREAM_MAX_ATTEMPTS": "0"}, "UPSTREAM_MAX_ATTEMPTS"},
		{"empty database pool", map[string]string{"DATABASE_MAX_OPEN_CONNS": "0"}, "DATABASE_MAX_OPEN_CONNS"},
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

func TestUsesPostgres(t *testing.T) {
	for url, want := range map[string]bool{
		"postgres://u@h/db":   true,
		"postgresql://u@h/db": true,
		"":                    false,
		"mysql://u@h/db":      false,
	} {
		if got := (Config{DatabaseURL: url}).UsesPostgres(); got != want {
			t.Errorf("UsesPostgres(%q) = %v, want %v", url, got, want)
		}
	}
}

func TestLoadGuards(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"proxy CIDR and address", map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7, fd00::/8, ::1"}, ""},
		{"proxy bad CIDR", map[string]string{"TRUSTED_PROXIES": "10.0.0.0/33"}, "TRUSTED_PROXIES"},
		{"proxy host name", map[string]string{"TRUSTED_PROXIES": "proxy.internal"}, "TRUSTED_PROXIES"},
		{"proxy trusts everyone", map[string]string{"TRUSTED_PROXIES": "0.0.0.0/0"}, "TRUSTED_PROXIES"},
		{"proxy trusts every IPv6", map[string]string{"TRUSTED_PROXIES": "::/0"}, "TRUSTED_PROXIES"},
		{"origins", map[string]string{"CORS_ALLOWED_ORIGINS": "https://app.example.com, http://localhost:5173"}, ""},
		{"origin wildcard", map[string]string{"CORS_ALLOWED_ORIGINS": "*"}, ""},
		{"origin wildcard with others", map[string]string{"CORS_ALLOWED_ORIGINS": "*,https://app.example.com"}, "CORS_ALLOWED_ORIGINS"},
		{"origin without scheme", map[string]string{"CORS_ALLOWED_ORIGINS": "app.example.com"}, "CORS_ALLOWED_ORIGINS"},
		{"origin with path", map[string]string{"CORS_ALLOWED_ORIGINS": "https://app.example.com/chat"}, "CORS_ALLOWED_ORIGINS"},
		{"origin with trailing slash", map[string]string{"CORS_ALLOWED_ORIGINS": "https://app.example.com/"}, "CORS_ALLOWED_ORIGINS"},
		{"origin subdomain wildcard", map[string]string{"CORS_ALLOWED_ORIGINS": "https://*.example.com"}, "CORS_ALLOWED_ORIGINS"},
		{"origin null", map[string]string{"CORS_ALLOWED_ORIGINS": "null"}, "CORS_ALLOWED_ORIGINS"},
		{"rate limit window under 1ms", map[string]string{"RATE_LIMIT_USER": "10/500us"}, "RATE_LIMIT_USER"},
		{"rate limit off", map[string]string{"RATE_LIMIT_LOGIN": "off"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(envOf(tt.env))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Load error = %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Load error = %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

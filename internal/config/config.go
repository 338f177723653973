// Package config reads the service configuration from environment variables.
package config

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config is the whole service configuration. Load fills it from the
// environment; every field has a default that works for `aihigress dev`.
type Config struct {
	HTTPAddr string

	// DatabaseURL is a postgres:// URL. When empty, SQLitePath is used.
	DatabaseURL string
	SQLitePath  string
	// DatabaseMaxOpenConns caps the PostgreSQL connections of one process.
	// SQLite always uses one connection.
	DatabaseMaxOpenConns int

	// RedisURL is a redis:// URL. When empty, `dev` starts an embedded server.
	RedisURL    string
	RedisPrefix string

	// TemporalAddress is host:port. When empty, `dev` starts a dev server.
	TemporalAddress   string
	TemporalNamespace string
	TemporalCLIPath   string
	TemporalUIPort    int
	TemporalDBPath    string
	// TemporalUIURL is the Web UI that `aihigress runs search` links to.
	TemporalUIURL string
	// TemporalGRPCCompression is the compression of requests to the
	// Temporal server: "none" or "gzip".
	TemporalGRPCCompression string

	JWTSecret     string
	MasterKey     string
	AccessTTL     time.Duration
	RefreshTTL    time.Duration
	AdminUsername string
	AdminPassword string

	ProvidersFile string

	// MetricsToken, when set, protects /metrics with a bearer token.
	MetricsToken string

	// MockUpstreamAddr is the listen address of the mock upstream in `dev`.
	MockUpstreamAddr string

	// Chat limits.
	MaxContentChars     int
	HistoryMaxMessages  int
	HistoryMaxChars     int
	SyncWaitTimeout     time.Duration
	SSEHeartbeat        time.Duration
	DeltaMergeWindow    time.Duration
	UpstreamMaxAttempts int

	// Gateway.
	APIKeyCacheTTL time.Duration
	// APIKeySweepInterval is how often `serve` marks expired keys inactive
	// itself; 0, the default, leaves that to the worker's schedule.
	APIKeySweepInterval     time.Duration
	CatalogReloadInterval   time.Duration
	RequestLogFlushInterval time.Duration
	GatewayMaxBodyBytes     int64
	MaxBodyBytes            int64

	// Guards. Each rate limit is "<requests>/<window>", such as "10/1m";
	// "off" disables it.
	RateLimitLogin    RateLimit
	RateLimitRegister RateLimit
	RateLimitAPIKey   RateLimit
	RateLimitUser     RateLimit
	// CORSAllowedOrigins are the origins that may call the API from a
	// browser; "*" allows any origin. Empty disables CORS.
	CORSAllowedOrigins []string
	// TrustedProxies are the CIDR prefixes of reverse proxies whose
	// X-Forwarded-For header is believed. Empty trusts none.
	TrustedProxies []string
	// HSTSMaxAge, when above zero, adds Strict-Transport-Security.
	HSTSMaxAge time.Duration

	// Images.
	Images Images

	// Metrics configures the worker's metrics server and the provider
	// health report.
	Metrics Metrics
	// Payloads and CodecServer configure the encryption of Temporal
	// payloads, as temporal.go describes.
	Payloads    PayloadEncryption
	CodecServer CodecServer

	// Maintenance configures the worker's Temporal Schedules.
	Maintenance Maintenance

	// Worker tunes the chat and image Temporal workers.
	Worker Worker

	// Shutdown configures the graceful stop of `serve` and `worker`.
	Shutdown Shutdown

	// GeneratedSecrets lists the names of secrets that Load generated because
	// they were unset. They are fine for development but change on restart.
	GeneratedSecrets []string
}

// Load reads the configuration through getenv, usually os.Getenv.
func Load(getenv func(string) string) (Config, error) {
	env := lookup{getenv: getenv}
	cfg := Config{
		HTTPAddr:             env.str("HTTP_ADDR", "127.0.0.1:8080"),
		DatabaseURL:          env.str("DATABASE_URL", ""),
		SQLitePath:           env.str("SQLITE_PATH", "data/aihigress.db"),
		DatabaseMaxOpenConns: env.integer("DATABASE_MAX_OPEN_CONNS", 20),
		RedisURL:             env.str("REDIS_URL", ""),
		RedisPrefix:          env.str("REDIS_PREFIX", "aih:"),
		TemporalAddress:      env.str("TEMPORAL_ADDRESS", ""),
		TemporalNamespace:    env.str("TEMPORAL_NAMESPACE", "default"),
		TemporalCLIPath:      env.str("TEMPORAL_CLI_PATH", "bin/temporal"),
		TemporalDBPath:       env.str("TEMPORAL_DB_PATH", "data/temporal.db"),
		TemporalUIURL:        env.str("TEMPORAL_UI_URL", "http://127.0.0.1:8233"),
		JWTSecret:            env.str("JWT_SECRET", ""),
		MasterKey:            env.str("MASTER_KEY", ""),
		AdminUsername:        env.str("ADMIN_USERNAME", "admin"),
		AdminPassword:        env.str("ADMIN_PASSWORD", ""),
		ProvidersFile:        env.str("PROVIDERS_FILE", ""),
		MetricsToken:         env.str("METRICS_TOKEN", ""),
		MockUpstreamAddr:     env.str("MOCK_UPSTREAM_ADDR", "127.0.0.1:18081"),
		TemporalUIPort:       env.integer("TEMPORAL_UI_PORT", 8233),
		MaxContentChars:      env.integer("MAX_CONTENT_CHARS", 32000),
		HistoryMaxMessages:   env.integer("HISTORY_MAX_MESSAGES", 40),
		HistoryMaxChars:      env.integer("HISTORY_MAX_CHARS", 64000),
		UpstreamMaxAttempts:  env.integer("UPSTREAM_MAX_ATTEMPTS", 4),
		AccessTTL:            env.duration("ACCESS_TOKEN_TTL", 30*time.Minute),
		RefreshTTL:           env.duration("REFRESH_TOKEN_TTL", 7*24*time.Hour),
		SyncWaitTimeout:      env.duration("SYNC_WAIT_TIMEOUT", 60*time.Second),
		SSEHeartbeat:         env.duration("SSE_HEARTBEAT", 15*time.Second),
		DeltaMergeWindow:     env.duration("DELTA_MERGE_WINDOW", 50*time.Millisecond),

		APIKeyCacheTTL:          env.duration("API_KEY_CACHE_TTL", 60*time.Second),
		APIKeySweepInterval:     env.duration("API_KEY_SWEEP_INTERVAL", 0),
		CatalogReloadInterval:   env.duration("CATALOG_RELOAD_INTERVAL", 30*time.Second),
		RequestLogFlushInterval: env.duration("REQUEST_LOG_FLUSH_INTERVAL", time.Second),
		GatewayMaxBodyBytes:     int64(env.integer("GATEWAY_MAX_BODY_BYTES", 16<<20)),
		MaxBodyBytes:            int64(env.integer("MAX_BODY_BYTES", 1<<20)),

		RateLimitLogin:     env.rateLimit("RATE_LIMIT_LOGIN", RateLimit{Requests: 10, Window: time.Minute}),
		RateLimitRegister:  env.rateLimit("RATE_LIMIT_REGISTER", RateLimit{Requests: 5, Window: time.Minute}),
		RateLimitAPIKey:    env.rateLimit("RATE_LIMIT_API_KEY", RateLimit{Requests: 6000, Window: time.Minute}),
		RateLimitUser:      env.rateLimit("RATE_LIMIT_USER", RateLimit{Requests: 600, Window: time.Minute}),
		CORSAllowedOrigins: env.list("CORS_ALLOWED_ORIGINS"),
		TrustedProxies:     env.list("TRUSTED_PROXIES"),
		HSTSMaxAge:         env.duration("HSTS_MAX_AGE", 0),
	}
	cfg.Images = loadImages(&env)
	cfg.Metrics = loadMetrics(&env)
	cfg.Maintenance = loadMaintenance(&env)
	cfg.Worker = loadWorker(&env)
	cfg.Shutdown = loadShutdown(&env)
	cfg.Payloads = loadPayloadEncryption(&env)
	cfg.TemporalGRPCCompression = loadGRPCCompression(&env)
	cfg.CodecServer = loadCodecServer(&env, cfg.TemporalUIPort)
	if len(env.errs) > 0 {
		return Config{}, fmt.Errorf("invalid configuration: %s", strings.Join(env.errs, "; "))
	}

	if cfg.JWTSecret == "" {
		cfg.JWTSecret = randomHex(32)
		cfg.GeneratedSecrets = append(cfg.GeneratedSecrets, "JWT_SECRET")
	}
	if cfg.MasterKey == "" {
		cfg.MasterKey = randomHex(32)
		cfg.GeneratedSecrets = append(cfg.GeneratedSecrets, "MASTER_KEY")
	}
	if len(cfg.MasterKey) < 32 {
		return Config{}, fmt.Errorf("invalid configuration: MASTER_KEY must be at least 32 characters; generate one with `openssl rand -hex 32`")
	}
	if len(cfg.JWTSecret) < 16 {
		return Config{}, fmt.Errorf("invalid configuration: JWT_SECRET must be at least 16 characters")
	}
	if cfg.SSEHeartbeat <= 0 || cfg.SSEHeartbeat > 15*time.Second {
		return Config{}, fmt.Errorf("invalid configuration: SSE_HEARTBEAT must be between 1ms and 15s, got %s", cfg.SSEHeartbeat)
	}
	if cfg.UpstreamMaxAttempts < 1 {
		return Config{}, fmt.Errorf("invalid configuration: UPSTREAM_MAX_ATTEMPTS must be at least 1, got %d", cfg.UpstreamMaxAttempts)
	}
	if err := validateGuards(cfg); err != nil {
		return Config{}, err
	}
	if err := cfg.Images.validate(); err != nil {
		return Config{}, err
	}
	if err := cfg.Metrics.validate(); err != nil {
		return Config{}, err
	}
	if err := cfg.Maintenance.validate(); err != nil {
		return Config{}, err
	}
	if cfg.DatabaseMaxOpenConns < 1 {
		return Config{}, fmt.Errorf("invalid configuration: DATABASE_MAX_OPEN_CONNS must be at least 1, got %d", cfg.DatabaseMaxOpenConns)
	}
	if err := cfg.Worker.validate(); err != nil {
		return Config{}, err
	}
	if err := cfg.CodecServer.validate(); err != nil {
		return Config{}, err
	}
	if err := cfg.Shutdown.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// UsesPostgres reports whether DatabaseURL selects PostgreSQL.
func (c Config) UsesPostgres() bool {
	return strings.HasPrefix(c.DatabaseURL, "postgres://") || strings.HasPrefix(c.DatabaseURL, "postgresql://")
}

type lookup struct {
	getenv func(string) string
	errs   []string
}

func (l *lookup) str(name, fallback string) string {
	if v := strings.TrimSpace(l.getenv(name)); v != "" {
		return v
	}
	return fallback
}

func (l *lookup) integer(name string, fallback int) int {
	raw := strings.TrimSpace(l.getenv(name))
	if raw == "" {
		return fallback
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 0 {
		l.errs = append(l.errs, fmt.Sprintf("%s must be a non-negative integer, got %q", name, raw))
		return fallback
	}
	return n
}

func (l *lookup) duration(name string, fallback time.Duration) time.Duration {
	raw := strings.TrimSpace(l.getenv(name))
	if raw == "" {
		return fallback
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 {
		l.errs = append(l.errs, fmt.Sprintf("%s must be a Go duration such as 30s or 15m, got %q", name, raw))
		return fallback
	}
	return d
}

// RateLimit allows Requests per sliding Window. The zero value disables the
// limit.
type RateLimit struct {
	Requests int
	Window   time.Duration
}

// Enabled reports whether the limit applies.
func (r RateLimit) Enabled() bool { return r.Requests > 0 && r.Window > 0 }

// ParseRateLimit reads "<requests>/<window>", such as "10/1m", or "off".
func ParseRateLimit(raw string) (RateLimit, error) {
	if raw == "off" || raw == "0" {
		return RateLimit{}, nil
	}
	count, window, ok := strings.Cut(raw, "/")
	n, err := strconv.Atoi(count)
	if !ok || err != nil || n <= 0 {
		return RateLimit{}, fmt.Errorf("rate limit must look like 10/1m or be off, got %q", raw)
	}
	d, err := time.ParseDuration(window)
	if err != nil || d <= 0 {
		return RateLimit{}, fmt.Errorf("rate limit window must be a positive Go duration such as 1m, got %q", raw)
	}
	return RateLimit{Requests: n, Window: d}, nil
}

func (l *lookup) rateLimit(name string, fallback RateLimit) RateLimit {
	raw := strings.TrimSpace(l.getenv(name))
	if raw == "" {
		return fallback
	}
	limit, err := ParseRateLimit(raw)
	if err != nil {
		l.errs = append(l.errs, name+": "+err.Error())
		return fallback
	}
	return limit
}

// list reads a comma-separated list and drops empty items.
func (l *lookup) list(name string) []string {
	var items []string
	for _, item := range strings.Split(l.getenv(name), ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b)
}

// RandomToken returns n random bytes, hex-encoded.
func RandomToken(n int) string {
	return randomHex(n)
}

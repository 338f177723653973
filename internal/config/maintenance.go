package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// minRetention is the shortest retention of raw rows that Load accepts.
const minRetention = time.Hour

// Maintenance configures the Temporal Schedules that `aihigress worker`
// creates at start and the jobs that they run. An interval of 0 turns its
// schedule off.
type Maintenance struct {
	// Schedules is false when MAINTENANCE_SCHEDULES is "off". The worker
	// then neither creates, updates nor deletes schedules, but still runs
	// the jobs that a schedule or an operator starts.
	Schedules bool

	ExpireAPIKeysInterval   time.Duration
	APIKeyErrorRateInterval time.Duration
	ProbeProvidersInterval  time.Duration
	RollupInterval          time.Duration
	RunEventsInterval       time.Duration

	// APIKeyErrorRate is the rule by which the error rate job disables
	// API keys.
	APIKeyErrorRate APIKeyErrorRate

	// ProbeTimeout bounds each provider probe, from sending the request to
	// the end of the response.
	ProbeTimeout time.Duration

	// RequestLogRetention and MetricsMinuteRetention are the ages after
	// which rolled-up request log rows and provider metric minute buckets
	// are deleted. Zero keeps them. Provider probe results follow
	// MetricsMinuteRetention.
	RequestLogRetention    time.Duration
	MetricsMinuteRetention time.Duration
	// RunEventsRetention is the age after which the events of finished
	// runs are deleted, except their terminal events. Zero keeps them.
	RunEventsRetention time.Duration
}

// APIKeyErrorRate disables an API key whose requests in the last Window
// were at least MinRequests, of which at least the fraction Threshold were
// client errors. A Threshold of 0 turns the rule off.
type APIKeyErrorRate struct {
	Threshold   float64
	Window      time.Duration
	MinRequests int
}

// Enabled reports whether the rule applies.
func (r APIKeyErrorRate) Enabled() bool { return r.Threshold > 0 }

// ErrorRateJobEnabled reports whether the error rate schedule exists.
func (m Maintenance) ErrorRateJobEnabled() bool {
	return m.APIKeyErrorRateInterval > 0 && m.APIKeyErrorRate.Enabled()
}

// RunEventsJobEnabled reports whether the run event retention schedule
// exists.
func (m Maintenance) RunEventsJobEnabled() bool {
	return m.RunEventsInterval > 0 && m.RunEventsRetention > 0
}

func loadMaintenance(env *lookup) Maintenance {
	return Maintenance{
		Schedules:               env.switchOn("MAINTENANCE_SCHEDULES", true),
		ExpireAPIKeysInterval:   env.optionalDuration("MAINTENANCE_EXPIRE_API_KEYS_INTERVAL", time.Minute),
		APIKeyErrorRateInterval: env.optionalDuration("MAINTENANCE_API_KEY_ERROR_RATE_INTERVAL", time.Minute),
		ProbeProvidersInterval:  env.optionalDuration("MAINTENANCE_PROBE_PROVIDERS_INTERVAL", time.Minute),
		RollupInterval:          env.optionalDuration("MAINTENANCE_ROLLUP_INTERVAL", time.Hour),
		RunEventsInterval:       env.optionalDuration("MAINTENANCE_RUN_EVENTS_INTERVAL", time.Hour),
		APIKeyErrorRate: APIKeyErrorRate{
			Threshold:   env.fraction("API_KEY_ERROR_RATE_THRESHOLD", 0.9),
			Window:      env.optionalDuration("API_KEY_ERROR_RATE_WINDOW", 15*time.Minute),
			MinRequests: env.integer("API_KEY_ERROR_RATE_MIN_REQUESTS", 100),
		},
		ProbeTimeout:           env.duration("PROVIDER_PROBE_TIMEOUT", 10*time.Second),
		RequestLogRetention:    env.optionalDuration("REQUEST_LOG_RETENTION", 7*24*time.Hour),
		MetricsMinuteRetention: env.optionalDuration("METRICS_MINUTE_RETENTION", 2*24*time.Hour),
		RunEventsRetention:     env.optionalDuration("RUN_EVENTS_RETENTION", 30*24*time.Hour),
	}
}

func (m Maintenance) validate() error {
	intervals := []struct {
		name  string
		value time.Duration
	}{
		{"MAINTENANCE_EXPIRE_API_KEYS_INTERVAL", m.ExpireAPIKeysInterval},
		{"MAINTENANCE_API_KEY_ERROR_RATE_INTERVAL", m.APIKeyErrorRateInterval},
		{"MAINTENANCE_PROBE_PROVIDERS_INTERVAL", m.ProbeProvidersInterval},
		{"MAINTENANCE_ROLLUP_INTERVAL", m.RollupInterval},
		{"MAINTENANCE_RUN_EVENTS_INTERVAL", m.RunEventsInterval},
	}
	for _, interval := range intervals {
		if interval.value != 0 && interval.value < time.Second {
			return fmt.Errorf("invalid configuration: %s must be at least 1s, or off, got %s", interval.name, interval.value)
		}
	}

	retentions := []struct {
		name  string
		value time.Duration
	}{
		{"REQUEST_LOG_RETENTION", m.RequestLogRetention},
		{"METRICS_MINUTE_RETENTION", m.MetricsMinuteRetention},
		{"RUN_EVENTS_RETENTION", m.RunEventsRetention},
	}
	for _, retention := range retentions {
		if retention.value != 0 && retention.value < minRetention {
			return fmt.Errorf("invalid configuration: %s must be at least %s, or off, got %s", retention.name, minRetention, retention.value)
		}
	}

	if m.ProbeTimeout < 100*time.Millisecond {
		return fmt.Errorf("invalid configuration: PROVIDER_PROBE_TIMEOUT must be at least 100ms, got %s", m.ProbeTimeout)
	}

	rule := m.APIKeyErrorRate
	if !rule.Enabled() {
		return nil
	}
	if rule.Window <= 0 {
		return fmt.Errorf("invalid configuration: API_KEY_ERROR_RATE_WINDOW must be a positive duration while API_KEY_ERROR_RATE_THRESHOLD is above 0")
	}
	if rule.MinRequests < 1 {
		return fmt.Errorf("invalid configuration: API_KEY_ERROR_RATE_MIN_REQUESTS must be at least 1, got %d", rule.MinRequests)
	}
	// The rule reads the raw request log, which the roll-up job deletes
	// after REQUEST_LOG_RETENTION.
	if m.RequestLogRetention > 0 && rule.Window > m.RequestLogRetention {
		return fmt.Errorf("invalid configuration: API_KEY_ERROR_RATE_WINDOW (%s) must not exceed REQUEST_LOG_RETENTION (%s)",
			rule.Window, m.RequestLogRetention)
	}
	return nil
}

// optionalDuration reads a Go duration, a whole number of days such as
// "7d", or "off" or "0" for zero.
func (l *lookup) optionalDuration(name string, fallback time.Duration) time.Duration {
	raw := strings.TrimSpace(l.getenv(name))
	switch {
	case raw == "":
		return fallback
	case strings.EqualFold(raw, "off") || raw == "0":
		return 0
	}
	if days, ok := strings.CutSuffix(raw, "d"); ok {
		n, err := strconv.Atoi(days)
		// 100000 days keeps the multiplication far from overflowing.
		if err != nil || n < 0 || n > 100000 {
			l.errs = append(l.errs, fmt.Sprintf("%s must be a Go duration such as 90m, a number of days such as 7d, or off, got %q", name, raw))
			return fallback
		}
		return time.Duration(n) * 24 * time.Hour
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 {
		l.errs = append(l.errs, fmt.Sprintf("%s must be a Go duration such as 90m, a number of days such as 7d, or off, got %q", name, raw))
		return fallback
	}
	return d
}

// switchOn reads "on" or "off", and also accepts true, false, 1 and 0.
func (l *lookup) switchOn(name string, fallback bool) bool {
	raw := strings.ToLower(strings.TrimSpace(l.getenv(name)))
	switch raw {
	case "":
		return fallback
	case "on", "true", "1":
		return true
	case "off", "false", "0":
		return false
	}
	l.errs = append(l.errs, fmt.Sprintf("%s must be on or off (true, false, 1 and 0 are also accepted), got %q", name, raw))
	return fallback
}

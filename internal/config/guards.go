package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// validateGuards checks the guard settings that the HTTP server would
// otherwise reject or misread at run time.
func validateGuards(cfg Config) error {
	limits := []struct {
		name  string
		limit RateLimit
	}{
		{"RATE_LIMIT_LOGIN", cfg.RateLimitLogin},
		{"RATE_LIMIT_REGISTER", cfg.RateLimitRegister},
		{"RATE_LIMIT_API_KEY", cfg.RateLimitAPIKey},
		{"RATE_LIMIT_USER", cfg.RateLimitUser},
	}
	for _, l := range limits {
		// The limiter counts in whole milliseconds.
		if l.limit.Enabled() && l.limit.Window < time.Millisecond {
			return fmt.Errorf("invalid configuration: %s window must be at least 1ms, got %s", l.name, l.limit.Window)
		}
	}
	for _, proxy := range cfg.TrustedProxies {
		if err := validateProxy(proxy); err != nil {
			return fmt.Errorf("invalid configuration: TRUSTED_PROXIES: %w", err)
		}
	}
	for _, origin := range cfg.CORSAllowedOrigins {
		if err := validateOrigin(origin, len(cfg.CORSAllowedOrigins)); err != nil {
			return fmt.Errorf("invalid configuration: CORS_ALLOWED_ORIGINS: %w", err)
		}
	}
	return nil
}

// validateProxy accepts a CIDR prefix such as 10.0.0.0/8 or a single
// address, the two forms that gin's SetTrustedProxies takes.
func validateProxy(proxy string) error {
	if strings.Contains(proxy, "/") {
		prefix, err := netip.ParsePrefix(proxy)
		if err != nil {
			return fmt.Errorf("%q is not a CIDR prefix such as 10.0.0.0/8 or fd00::/8", proxy)
		}
		if prefix.Bits() == 0 {
			return fmt.Errorf("%q trusts every address, so any client could set its own IP; list your proxies' networks", proxy)
		}
		return nil
	}
	if _, err := netip.ParseAddr(proxy); err != nil {
		return fmt.Errorf("%q is neither an IP address nor a CIDR prefix", proxy)
	}
	return nil
}

// validateOrigin accepts "*" alone or a browser origin: scheme, host and an
// optional port, with no path.
func validateOrigin(origin string, count int) error {
	if origin == "*" {
		if count > 1 {
			return fmt.Errorf(`"*" allows every origin and cannot be combined with other origins`)
		}
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an origin such as https://app.example.com", origin)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") || strings.Contains(origin, "*") {
		return fmt.Errorf("%q must be scheme://host[:port] only, such as https://app.example.com", origin)
	}
	if u.Path == "/" {
		return fmt.Errorf("%q ends with a slash, which browsers never send in Origin; remove it", origin)
	}
	return nil
}

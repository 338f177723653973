package providers

import (
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
)

// String returns a description of p without the API key or header values,
// which may carry credentials.
func (p Provider) String() string {
	return fmt.Sprintf("Provider{ID:%q Name:%q Kind:%q BaseURL:%q APIKey:%s Headers:%v TimeoutSeconds:%d}",
		p.ID, p.Name, p.Kind, redactURL(p.BaseURL), redactSecret(p.APIKey), p.headerNames(), p.TimeoutSeconds)
}

// GoString makes the %#v verb print the redacted String form.
func (p Provider) GoString() string {
	return p.String()
}

// LogValue implements slog.LogValuer. It logs the header names but not their
// values, and replaces a non-empty API key with "[REDACTED]".
func (p Provider) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", p.ID),
		slog.String("name", p.Name),
		slog.String("kind", p.Kind),
		slog.String("base_url", redactURL(p.BaseURL)),
		slog.String("api_key", redactSecret(p.APIKey)),
		slog.Any("headers", p.headerNames()),
		slog.Int("timeout_seconds", p.TimeoutSeconds),
	)
}

func (p Provider) headerNames() []string {
	return slices.Sorted(maps.Keys(p.Headers))
}

func redactSecret(secret string) string {
	if secret == "" {
		return ""
	}
	return redactedKey
}

// redactURL hides the password of a URL with user info. A URL that does not
// parse is replaced as a whole, because its password cannot be located.
func redactURL(raw string) string {
	parsed, err := url.Parse(raw)
	if err != nil {
		return "[unparseable URL]"
	}
	return parsed.Redacted()
}

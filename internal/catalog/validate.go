package catalog

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/aihigress/aihigress/internal/providers"
)

// Limits on admin input. Integers stay well inside the INTEGER columns, so
// that no value reaches the database only to fail there.
const (
	maxIDChars       = 64
	maxNameChars     = 200
	maxURLChars      = 2048
	maxTimeout       = 3600
	maxHeaders       = 32
	maxHeaderValue   = 4096
	maxLabelChars    = 100
	maxSecretChars   = 4096
	maxWeight        = 1_000_000
	maxQPS           = 1_000_000
	maxPriority      = 1_000_000
	maxCandidates    = 64
	maxUpstreamModel = 200
)

// minSecretCharsForLast4 is the shortest secret whose last 4 characters are
// shown. Showing 4 characters of a shorter secret would reveal too much of
// it.
const minSecretCharsForLast4 = 12

// forbiddenHeaders are the headers that a provider may not set: credentials
// belong in provider keys, which are encrypted, and the client sets Host and
// Content-Length itself.
var forbiddenHeaders = []string{"Authorization", "Host", "Content-Length", "X-Goog-Api-Key"}

// InputError is invalid admin input. Param names the request field at
// fault, such as "base_url" or "candidates[1].provider_id".
type InputError struct {
	Code    string
	Param   string
	Message string
}

func (e *InputError) Error() string {
	return e.Param + ": " + e.Message
}

func inputError(code, param, format string, args ...any) *InputError {
	return &InputError{Code: code, Param: param, Message: fmt.Sprintf(format, args...)}
}

func validateProviderID(id string) error {
	if id == "" {
		return inputError("missing_field", "id", "id is required: choose a slug such as openai-main")
	}
	if len(id) > maxIDChars || !providers.ValidProviderID(id) {
		return inputError("invalid_id", "id", "invalid id %q: use 1 to %d lowercase letters, digits, '_' and '-', starting with a letter or digit", id, maxIDChars)
	}
	return nil
}

func validateDisplayName(param, name string) error {
	if name == "" || utf8.RuneCountInString(name) > maxNameChars || strings.ContainsFunc(name, unicode.IsControl) {
		return inputError("invalid_name", param, "%s must be 1 to %d characters without control characters", param, maxNameChars)
	}
	return nil
}

func validateKind(kind string) error {
	if kind != "openai" && kind != "gemini" {
		return inputError("invalid_kind", "kind", "invalid kind %q: use openai or gemini", kind)
	}
	return nil
}

// validateBaseURL accepts an http or https URL with a host and without user
// info. Credentials in the URL would be stored unencrypted.
func validateBaseURL(raw string) error {
	if len(raw) > maxURLChars {
		return inputError("invalid_base_url", "base_url", "base_url exceeds %d characters", maxURLChars)
	}
	if err := providers.ValidateBaseURL(raw); err != nil {
		return inputError("invalid_base_url", "base_url", "%s", err.Error())
	}
	parsed, err := url.Parse(raw)
	if err != nil {
		return inputError("invalid_base_url", "base_url", "invalid base_url: %v", err)
	}
	if parsed.User != nil {
		return inputError("invalid_base_url", "base_url", "base_url must not contain user info; add the credential as a provider key")
	}
	return nil
}

func validateTimeout(seconds int) error {
	if seconds < 0 || seconds > maxTimeout {
		return inputError("invalid_timeout", "timeout_seconds", "timeout_seconds must be from 0 (the client default) to %d, got %d", maxTimeout, seconds)
	}
	return nil
}

// validateHeaders checks the names and values of extra upstream headers.
// Messages name the header but never repeat its value.
func validateHeaders(headers map[string]string) error {
	if len(headers) > maxHeaders {
		return inputError("invalid_header", "headers", "headers has %d entries; at most %d are allowed", len(headers), maxHeaders)
	}
	for _, name := range sortedKeys(headers) {
		value := headers[name]
		param := "headers." + name
		if !providers.ValidHeaderName(name) {
			return inputError("invalid_header", "headers", "invalid header name %q: use a token such as X-Org-Id", name)
		}
		canonical := http.CanonicalHeaderKey(name)
		if slices.Contains(forbiddenHeaders, canonical) {
			return inputError("forbidden_header", param, "header %s may not be set on a provider; credentials belong in provider keys", canonical)
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return inputError("invalid_header", param, "the value of header %s contains a line break or NUL", canonical)
		}
		if len(value) > maxHeaderValue {
			return inputError("invalid_header", param, "the value of header %s exceeds %d bytes", canonical, maxHeaderValue)
		}
	}
	return nil
}

// ForbiddenHeader returns the first header of headers that a provider may
// not set, or "" when there is none.
func ForbiddenHeader(headers map[string]string) string {
	for _, name := range sortedKeys(headers) {
		if canonical := http.CanonicalHeaderKey(name); slices.Contains(forbiddenHeaders, canonical) {
			return canonical
		}
	}
	return ""
}

func validateLabel(label string) error {
	if label == "" || utf8.RuneCountInString(label) > maxLabelChars || strings.ContainsFunc(label, unicode.IsControl) {
		return inputError("invalid_label", "label", "label must be 1 to %d characters without control characters", maxLabelChars)
	}
	return nil
}

// validateSecret never puts the secret into its message.
func validateSecret(secret string) error {
	if secret == "" {
		return inputError("missing_field", "secret", "secret is required")
	}
	if len(secret) > maxSecretChars {
		return inputError("invalid_secret", "secret", "secret exceeds %d bytes", maxSecretChars)
	}
	if strings.ContainsFunc(secret, unicode.IsControl) || strings.TrimSpace(secret) != secret {
		return inputError("invalid_secret", "secret", "secret contains spaces at either end or a control character such as a line break")
	}
	return nil
}

func validateKeyWeight(weight int) error {
	if weight < 1 || weight > maxWeight {
		return inputError("invalid_weight", "weight", "weight must be from 1 to %d, got %d", maxWeight, weight)
	}
	return nil
}

func validateMaxQPS(qps int) error {
	if qps < 0 || qps > maxQPS {
		return inputError("invalid_max_qps", "max_qps", "max_qps must be from 0 (no cap) to %d, got %d", maxQPS, qps)
	}
	return nil
}

func validateModelName(name string) error {
	if name == "" {
		return inputError("missing_field", "name", "name is required")
	}
	if utf8.RuneCountInString(name) > maxNameChars {
		return inputError("invalid_name", "name", "name exceeds %d characters", maxNameChars)
	}
	if err := providers.ValidateModelName(name); err != nil {
		return inputError("invalid_name", "name", "%s", err.Error())
	}
	return nil
}

func validateCapabilities(capabilities []providers.Capability) error {
	if len(capabilities) == 0 {
		return inputError("invalid_capability", "capabilities", "capabilities must list at least one of %s, %s", providers.CapabilityChat, providers.CapabilityImageGeneration)
	}
	for i, capability := range capabilities {
		if capability != providers.CapabilityChat && capability != providers.CapabilityImageGeneration {
			return inputError("invalid_capability", fmt.Sprintf("capabilities[%d]", i), "unknown capability %q: use %s or %s",
				capability, providers.CapabilityChat, providers.CapabilityImageGeneration)
		}
		if slices.Contains(capabilities[:i], capability) {
			return inputError("invalid_capability", fmt.Sprintf("capabilities[%d]", i), "capability %q is listed twice", capability)
		}
	}
	return nil
}

// validateCandidates checks the fields of each candidate. Whether the
// providers exist is checked by the store, in the same transaction as the
// write.
func validateCandidates(candidates []CandidateInput) error {
	if len(candidates) == 0 {
		return inputError("invalid_candidate", "candidates", "candidates must list at least one {provider_id, model}")
	}
	if len(candidates) > maxCandidates {
		return inputError("invalid_candidate", "candidates", "candidates has %d entries; at most %d are allowed", len(candidates), maxCandidates)
	}
	for i, candidate := range candidates {
		param := fmt.Sprintf("candidates[%d]", i)
		if candidate.ProviderID == "" {
			return inputError("missing_field", param+".provider_id", "%s.provider_id is required", param)
		}
		if candidate.Model == "" {
			return inputError("missing_field", param+".model", "%s.model is required: the upstream model name", param)
		}
		if utf8.RuneCountInString(candidate.Model) > maxUpstreamModel || strings.ContainsFunc(candidate.Model, unicode.IsControl) {
			return inputError("invalid_candidate", param+".model", "%s.model must be 1 to %d characters without control characters", param, maxUpstreamModel)
		}
		if candidate.Priority < -maxPriority || candidate.Priority > maxPriority {
			return inputError("invalid_priority", param+".priority", "%s.priority must be from %d to %d", param, -maxPriority, maxPriority)
		}
		if candidate.Weight != nil && (*candidate.Weight < 0 || *candidate.Weight > maxWeight) {
			return inputError("invalid_weight", param+".weight", "%s.weight must be from 0 to %d, got %d", param, maxWeight, *candidate.Weight)
		}
		for j, earlier := range candidates[:i] {
			if earlier.ProviderID == candidate.ProviderID && earlier.Model == candidate.Model {
				return inputError("duplicate_candidate", param, "%s repeats candidates[%d]: provider %q, model %q", param, j, candidate.ProviderID, candidate.Model)
			}
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// last4 returns the last 4 characters of secret that listings show, or ""
// for a secret shorter than minSecretCharsForLast4.
func last4(secret string) string {
	runes := []rune(secret)
	if len(runes) < minSecretCharsForLast4 {
		return ""
	}
	return string(runes[len(runes)-4:])
}

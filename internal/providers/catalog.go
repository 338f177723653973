package providers

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"unicode"
)

var (
	// ErrUnknownModel is wrapped by the error that Candidates returns for a
	// logical model name that the catalog does not contain.
	ErrUnknownModel = errors.New("unknown model")
	// ErrCapability is wrapped by the error that Candidates returns for a
	// logical model that lacks the requested capability.
	ErrCapability = errors.New("unsupported capability")
)

// Catalog contains the upstream providers and the logical models that clients
// request. All methods are safe for concurrent use. Values returned by the
// query methods are copies, so callers may modify them.
type Catalog struct {
	mu        sync.RWMutex
	providers map[string]Provider
	// models stores each model's candidates already in Candidates order.
	models map[string]LogicalModel
}

// NewCatalog returns an empty catalog.
func NewCatalog() *Catalog {
	return &Catalog{
		providers: make(map[string]Provider),
		models:    make(map[string]LogicalModel),
	}
}

// AddProvider validates p and models and adds them to the catalog, or adds
// nothing and returns an error.
//
// A candidate with an empty ProviderID refers to p, and a candidate with
// Weight 0 gets the default weight 1. Models may also use providers that are
// already in the catalog. A model name that the catalog already contains is
// an error.
func (c *Catalog) AddProvider(p Provider, models ...LogicalModel) error {
	c.mu.Lock()
	defer c.mu.Unlock()

	p, err := normalizeProvider(p)
	if err != nil {
		return err
	}
	if _, ok := c.providers[p.ID]; ok {
		return fmt.Errorf("duplicate provider id %q", p.ID)
	}

	providerExists := func(id string) bool {
		_, ok := c.providers[id]
		return ok || id == p.ID
	}

	added := make(map[string]LogicalModel, len(models))
	for _, model := range models {
		model.Candidates = slices.Clone(model.Candidates)
		for i := range model.Candidates {
			if model.Candidates[i].ProviderID == "" {
				model.Candidates[i].ProviderID = p.ID
			}
			if model.Candidates[i].Weight == 0 {
				model.Candidates[i].Weight = 1
			}
		}

		model, err := normalizeModel(model, providerExists)
		if err != nil {
			return err
		}

		_, inCatalog := c.models[model.Name]
		_, inCall := added[model.Name]
		if inCatalog || inCall {
			return fmt.Errorf("duplicate logical model name %q", model.Name)
		}
		added[model.Name] = model
	}

	c.providers[p.ID] = p
	maps.Copy(c.models, added)
	return nil
}

// Empty reports whether the catalog has no logical models.
func (c *Catalog) Empty() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()

	return len(c.models) == 0
}

// Provider returns the provider with the given id.
func (c *Catalog) Provider(id string) (Provider, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()

	p, ok := c.providers[id]
	if !ok {
		return Provider{}, false
	}
	return cloneProvider(p), true
}

// Model returns the logical model with the given name. Its candidates are in
// Candidates order and include those of missing and disabled providers.
func (c *Catalog) Model(name string) (LogicalModel, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()

	model, ok := c.models[name]
	if !ok {
		return LogicalModel{}, false
	}
	return cloneModel(model), true
}

// Models returns all logical models sorted by name.
func (c *Catalog) Models() []LogicalModel {
	c.mu.RLock()
	defer c.mu.RUnlock()

	models := make([]LogicalModel, 0, len(c.models))
	for _, model := range c.models {
		models = append(models, cloneModel(model))
	}
	slices.SortFunc(models, func(a, b LogicalModel) int {
		return strings.Compare(a.Name, b.Name)
	})
	return models
}

// Candidates returns the candidates that serve the logical model with the
// given capability, ordered by priority (highest first), then weight (highest
// first), then provider id and upstream model name. Candidates whose provider
// is missing or disabled are left out. The error wraps ErrUnknownModel or
// ErrCapability.
func (c *Catalog) Candidates(logical string, capability Capability) ([]Candidate, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()

	model, ok := c.models[logical]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownModel, logical)
	}
	if !slices.Contains(model.Capabilities, capability) {
		return nil, fmt.Errorf("%w: logical model %q supports %v, not %q", ErrCapability, logical, model.Capabilities, capability)
	}

	candidates := make([]Candidate, 0, len(model.Candidates))
	for _, candidate := range model.Candidates {
		if p, ok := c.providers[candidate.ProviderID]; ok && !p.Disabled {
			candidates = append(candidates, candidate)
		}
	}
	return candidates, nil
}

// Providers returns all providers sorted by id.
func (c *Catalog) Providers() []Provider {
	c.mu.RLock()
	defer c.mu.RUnlock()

	list := make([]Provider, 0, len(c.providers))
	for _, p := range c.providers {
		list = append(list, cloneProvider(p))
	}
	slices.SortFunc(list, func(a, b Provider) int { return strings.Compare(a.ID, b.ID) })
	return list
}

// Replace swaps in the contents of next, so that every holder of c sees a
// reloaded catalog at once. next must not be used afterwards.
func (c *Catalog) Replace(next *Catalog) {
	next.mu.Lock()
	providers, models := next.providers, next.models
	next.providers, next.models = nil, nil
	next.mu.Unlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.providers, c.models = providers, models
}

// mergeModel adds a candidate and a capability to the logical model called
// name, and creates that model if the catalog lacks it. It serves the
// "models" shorthand and the OPENAI_* variables. The caller holds c.mu or
// owns c exclusively.
func (c *Catalog) mergeModel(name string, capability Capability, candidate Candidate) error {
	if err := validateModelName(name); err != nil {
		return err
	}

	model, ok := c.models[name]
	if !ok {
		model = LogicalModel{Name: name}
	}

	if !slices.Contains(model.Capabilities, capability) {
		model.Capabilities = append(model.Capabilities, capability)
	}
	if !slices.ContainsFunc(model.Candidates, sameUpstream(candidate)) {
		model.Candidates = append(model.Candidates, candidate)
		slices.SortFunc(model.Candidates, compareCandidates)
	}

	c.models[name] = model
	return nil
}

func compareCandidates(a, b Candidate) int {
	return cmp.Or(
		cmp.Compare(b.Priority, a.Priority),
		cmp.Compare(b.Weight, a.Weight),
		strings.Compare(a.ProviderID, b.ProviderID),
		strings.Compare(a.Model, b.Model),
	)
}

func sameUpstream(candidate Candidate) func(Candidate) bool {
	return func(other Candidate) bool {
		return other.ProviderID == candidate.ProviderID && other.Model == candidate.Model
	}
}

// normalizeProvider validates p and returns it with defaults applied and its
// own copy of Headers. Errors never contain the API key or header values.
func normalizeProvider(p Provider) (Provider, error) {
	if !isSlug(p.ID) {
		return Provider{}, fmt.Errorf("invalid provider id %q: use lowercase letters, digits, '_' and '-', starting with a letter or digit", p.ID)
	}

	switch p.Kind {
	case "":
		p.Kind = "openai"
	case "openai", "gemini":
	default:
		return Provider{}, fmt.Errorf("provider %q: invalid kind %q: use openai or gemini", p.ID, p.Kind)
	}

	if err := validateBaseURL(p.BaseURL); err != nil {
		return Provider{}, fmt.Errorf("provider %q: %w", p.ID, err)
	}

	if p.TimeoutSeconds < 0 {
		return Provider{}, fmt.Errorf("provider %q: invalid timeout_seconds %d: must be >= 0", p.ID, p.TimeoutSeconds)
	}

	if strings.ContainsFunc(p.APIKey, unicode.IsControl) {
		return Provider{}, fmt.Errorf("provider %q: api_key contains a control character such as a line break", p.ID)
	}

	for name, value := range p.Headers {
		if !isHeaderName(name) {
			return Provider{}, fmt.Errorf("provider %q: invalid header name %q", p.ID, name)
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return Provider{}, fmt.Errorf("provider %q: value of header %q contains a line break or NUL", p.ID, name)
		}
	}

	return cloneProvider(p), nil
}

func validateBaseURL(raw string) error {
	if raw == "" {
		return errors.New("missing base_url: set an http or https URL such as https://api.openai.com/v1")
	}

	parsed, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid base_url: %w", err)
	}
	if parsed.Scheme != "http" && parsed.Scheme != "https" {
		return fmt.Errorf("invalid base_url %q: the scheme must be http or https", parsed.Redacted())
	}
	if parsed.Host == "" {
		return fmt.Errorf("invalid base_url %q: missing host", parsed.Redacted())
	}
	return nil
}

// normalizeModel validates model and returns it with default capabilities,
// deduplicated capabilities and candidates in Candidates order.
func normalizeModel(model LogicalModel, providerExists func(id string) bool) (LogicalModel, error) {
	if err := validateModelName(model.Name); err != nil {
		return LogicalModel{}, err
	}

	var capabilities []Capability
	for _, capability := range model.Capabilities {
		if capability != CapabilityChat && capability != CapabilityImageGeneration {
			return LogicalModel{}, fmt.Errorf("logical model %q: invalid capability %q: use %s or %s",
				model.Name, capability, CapabilityChat, CapabilityImageGeneration)
		}
		if !slices.Contains(capabilities, capability) {
			capabilities = append(capabilities, capability)
		}
	}
	if len(capabilities) == 0 {
		capabilities = []Capability{CapabilityChat}
	}

	if len(model.Candidates) == 0 {
		return LogicalModel{}, fmt.Errorf("logical model %q has no candidates", model.Name)
	}
	candidates := make([]Candidate, 0, len(model.Candidates))
	for _, candidate := range model.Candidates {
		if !providerExists(candidate.ProviderID) {
			return LogicalModel{}, fmt.Errorf("logical model %q: candidate %q uses unknown provider %q", model.Name, candidate.Model, candidate.ProviderID)
		}
		if candidate.Model == "" {
			return LogicalModel{}, fmt.Errorf("logical model %q: candidate of provider %q has no model", model.Name, candidate.ProviderID)
		}
		if candidate.Weight < 0 {
			return LogicalModel{}, fmt.Errorf("logical model %q: candidate %q of provider %q has invalid weight %d: must be >= 0",
				model.Name, candidate.Model, candidate.ProviderID, candidate.Weight)
		}
		if slices.ContainsFunc(candidates, sameUpstream(candidate)) {
			return LogicalModel{}, fmt.Errorf("logical model %q: duplicate candidate %q of provider %q", model.Name, candidate.Model, candidate.ProviderID)
		}
		candidates = append(candidates, candidate)
	}
	slices.SortFunc(candidates, compareCandidates)

	return LogicalModel{Name: model.Name, Capabilities: capabilities, Candidates: candidates}, nil
}

func validateModelName(name string) error {
	if name == "" {
		return errors.New("missing logical model name")
	}
	if strings.TrimSpace(name) != name || strings.ContainsFunc(name, unicode.IsControl) {
		return fmt.Errorf("invalid logical model name %q: remove surrounding spaces and control characters", name)
	}
	return nil
}

// isSlug reports whether id matches [a-z0-9][a-z0-9_-]*.
func isSlug(id string) bool {
	if id == "" || id[0] == '_' || id[0] == '-' {
		return false
	}
	for _, r := range id {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// isHeaderName reports whether name is an RFC 9110 field name, which is a
// token.
func isHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if r > unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return true
}

func cloneProvider(p Provider) Provider {
	p.Headers = maps.Clone(p.Headers)
	p.Keys = slices.Clone(p.Keys)
	return p
}

func cloneModel(model LogicalModel) LogicalModel {
	model.Capabilities = slices.Clone(model.Capabilities)
	model.Candidates = slices.Clone(model.Candidates)
	return model
}

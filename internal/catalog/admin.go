package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/secrets"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

// Errors of Admin. Handlers map them to 404 and 409 responses.
var (
	ErrProviderNotFound = errors.New("provider not found")
	ErrKeyNotFound      = errors.New("provider key not found")
	ErrModelNotFound    = errors.New("logical model not found")
	ErrProviderExists   = errors.New("provider id already exists")
	ErrKeyLabelTaken    = errors.New("provider key label already used by this provider")
	ErrModelExists      = errors.New("logical model name already exists")
)

// disabledByAdmin is the disabled_reason of a key that an admin disabled.
const disabledByAdmin = "disabled by an admin"

// notifyTimeout bounds the reload and publish after a write. They run after
// the write has committed, so they use a context that the client cannot
// cancel by disconnecting.
const notifyTimeout = 5 * time.Second

// ProviderInput is the body of provider writes. A nil field is absent:
// create fills in its default, and update keeps the stored value.
type ProviderInput struct {
	ID             *string            `json:"id"`
	Name           *string            `json:"name"`
	Kind           *string            `json:"kind"`
	BaseURL        *string            `json:"base_url"`
	TimeoutSeconds *int               `json:"timeout_seconds"`
	Enabled        *bool              `json:"enabled"`
	Headers        *map[string]string `json:"headers"`
}

// KeyInput is the body of provider key writes, with the same nil rule as
// ProviderInput. Secret is the plaintext credential, which Admin encrypts
// before it reaches the store.
type KeyInput struct {
	Label   *string `json:"label"`
	Secret  *string `json:"secret"`
	Weight  *int    `json:"weight"`
	MaxQPS  *int    `json:"max_qps"`
	Enabled *bool   `json:"enabled"`
}

// ModelInput is the body of logical model writes, with the same nil rule as
// ProviderInput. Update replaces the candidates as a whole.
type ModelInput struct {
	Name         *string                 `json:"name"`
	Capabilities *[]providers.Capability `json:"capabilities"`
	Candidates   *[]CandidateInput       `json:"candidates"`
}

// CandidateInput is one candidate of a ModelInput. A nil Weight means 1.
type CandidateInput struct {
	ProviderID string `json:"provider_id"`
	Model      string `json:"model"`
	Priority   int    `json:"priority"`
	Weight     *int   `json:"weight"`
}

// Admin validates and applies catalog changes from the admin API. After
// every successful write it calls Changed, so that this process and the
// others reload their catalogs.
type Admin struct {
	Store  *store.Store
	Cipher *secrets.Cipher
	// Changed is usually Reloader.Notify. A nil Changed skips the reload.
	Changed func(ctx context.Context) error
	Logger  *slog.Logger
}

// CreateProvider validates in and inserts a provider with source "api".
// The error is an *InputError, ErrProviderExists or a database error.
func (a *Admin) CreateProvider(ctx context.Context, in ProviderInput) (*models.ProviderRow, error) {
	if in.ID == nil {
		return nil, inputError("missing_field", "id", "id is required: choose a slug such as openai-main")
	}
	if err := validateProviderID(*in.ID); err != nil {
		return nil, err
	}
	if in.BaseURL == nil {
		return nil, inputError("missing_field", "base_url", "base_url is required, such as https://api.openai.com/v1")
	}

	row := models.ProviderRow{ID: *in.ID, Name: *in.ID, Kind: "openai", Enabled: true, Source: models.SourceAPI}
	if err := applyProvider(&row, in); err != nil {
		return nil, err
	}

	if err := a.Store.CreateProvider(ctx, &row); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, ErrProviderExists
		}
		return nil, err
	}
	a.changed(ctx)
	return &row, nil
}

// UpdateProvider applies the fields given in in to the provider id. The id
// itself cannot change.
func (a *Admin) UpdateProvider(ctx context.Context, id string, in ProviderInput) (*models.ProviderRow, error) {
	if in.ID != nil && *in.ID != id {
		return nil, inputError("immutable_field", "id", "id cannot be changed; create a new provider instead")
	}

	row, err := a.Store.Provider(ctx, id)
	if err != nil {
		return nil, providerError(err)
	}
	if err := applyProvider(row, in); err != nil {
		return nil, err
	}

	if err := a.Store.UpdateProvider(ctx, row); err != nil {
		return nil, providerError(err)
	}
	a.changed(ctx)
	return row, nil
}

// DeleteProvider deletes a provider and its keys. A provider that a logical
// model uses returns a *store.ProviderInUseError.
func (a *Admin) DeleteProvider(ctx context.Context, id string) error {
	if err := a.Store.DeleteProvider(ctx, id); err != nil {
		return providerError(err)
	}
	a.changed(ctx)
	return nil
}

// applyProvider validates the fields given in in and copies them to row.
func applyProvider(row *models.ProviderRow, in ProviderInput) error {
	if in.Name != nil {
		if err := validateDisplayName("name", *in.Name); err != nil {
			return err
		}
		row.Name = *in.Name
	}
	if in.Kind != nil {
		if err := validateKind(*in.Kind); err != nil {
			return err
		}
		row.Kind = *in.Kind
	}
	if in.BaseURL != nil {
		if err := validateBaseURL(*in.BaseURL); err != nil {
			return err
		}
		row.BaseURL = *in.BaseURL
	}
	if in.TimeoutSeconds != nil {
		if err := validateTimeout(*in.TimeoutSeconds); err != nil {
			return err
		}
		row.TimeoutSeconds = *in.TimeoutSeconds
	}
	if in.Enabled != nil {
		row.Enabled = *in.Enabled
	}
	if in.Headers != nil {
		if err := validateHeaders(*in.Headers); err != nil {
			return err
		}
		row.Headers = nil
		if len(*in.Headers) > 0 {
			row.Headers = models.MustJSON(*in.Headers)
		}
	}
	return nil
}

// CreateKey validates in, encrypts its secret and adds the key to the
// provider. Weight defaults to 1, MaxQPS to 0 and Enabled to true.
func (a *Admin) CreateKey(ctx context.Context, providerID string, in KeyInput) (*models.ProviderKey, error) {
	if in.Label == nil {
		return nil, inputError("missing_field", "label", "label is required, such as primary")
	}
	if in.Secret == nil {
		return nil, inputError("missing_field", "secret", "secret is required")
	}
	if _, err := a.Store.Provider(ctx, providerID); err != nil {
		return nil, providerError(err)
	}

	key := models.ProviderKey{ProviderID: providerID, Weight: 1, Enabled: true}
	if err := a.applyKey(&key, in); err != nil {
		return nil, err
	}

	if err := a.Store.CreateProviderKey(ctx, &key); err != nil {
		switch {
		case errors.Is(err, store.ErrConflict):
			return nil, ErrKeyLabelTaken
		case errors.Is(err, store.ErrNotFound):
			return nil, ErrProviderNotFound
		}
		return nil, err
	}
	a.changed(ctx)
	return &key, nil
}

// UpdateKey applies the fields given in in to a key. Enabling a key clears
// its disabled_reason, and a new secret replaces the stored ciphertext.
func (a *Admin) UpdateKey(ctx context.Context, providerID, keyID string, in KeyInput) (*models.ProviderKey, error) {
	key, err := a.Key(ctx, providerID, keyID)
	if err != nil {
		return nil, err
	}
	if err := a.applyKey(key, in); err != nil {
		return nil, err
	}

	if err := a.Store.UpdateProviderKey(ctx, key); err != nil {
		switch {
		case errors.Is(err, store.ErrConflict):
			return nil, ErrKeyLabelTaken
		case errors.Is(err, store.ErrNotFound):
			return nil, ErrKeyNotFound
		}
		return nil, err
	}
	a.changed(ctx)
	return key, nil
}

// DeleteKey deletes a key of a provider.
func (a *Admin) DeleteKey(ctx context.Context, providerID, keyID string) error {
	if _, err := a.Store.Provider(ctx, providerID); err != nil {
		return providerError(err)
	}
	if err := a.Store.DeleteProviderKey(ctx, providerID, keyID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ErrKeyNotFound
		}
		return err
	}
	a.changed(ctx)
	return nil
}

// Key finds a key of a provider. The error is ErrProviderNotFound,
// ErrKeyNotFound or a database error.
func (a *Admin) Key(ctx context.Context, providerID, keyID string) (*models.ProviderKey, error) {
	if _, err := a.Store.Provider(ctx, providerID); err != nil {
		return nil, providerError(err)
	}
	key, err := a.Store.ProviderKey(ctx, providerID, keyID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrKeyNotFound
		}
		return nil, err
	}
	return key, nil
}

// Keys lists the keys of a provider.
func (a *Admin) Keys(ctx context.Context, providerID string) ([]models.ProviderKey, error) {
	if _, err := a.Store.Provider(ctx, providerID); err != nil {
		return nil, providerError(err)
	}
	return a.Store.ListProviderKeys(ctx, providerID)
}

// applyKey validates the fields given in in and copies them to key,
// sealing a new secret.
func (a *Admin) applyKey(key *models.ProviderKey, in KeyInput) error {
	if in.Label != nil {
		if err := validateLabel(*in.Label); err != nil {
			return err
		}
		key.Label = *in.Label
	}
	if in.Secret != nil {
		if err := validateSecret(*in.Secret); err != nil {
			return err
		}
		key.SecretCiphertext = a.Cipher.Seal([]byte(*in.Secret))
		key.SecretLast4 = last4(*in.Secret)
	}
	if in.Weight != nil {
		if err := validateKeyWeight(*in.Weight); err != nil {
			return err
		}
		key.Weight = *in.Weight
	}
	if in.MaxQPS != nil {
		if err := validateMaxQPS(*in.MaxQPS); err != nil {
			return err
		}
		key.MaxQPS = *in.MaxQPS
	}
	if in.Enabled != nil {
		switch {
		case *in.Enabled:
			key.DisabledReason = ""
		case key.Enabled:
			// A key that is already disabled keeps the reason it has, such
			// as the upstream 401 that disabled it.
			key.DisabledReason = disabledByAdmin
		}
		key.Enabled = *in.Enabled
	}
	return nil
}

// CreateModel validates in and inserts a logical model with source "api".
// Capabilities default to ["chat"]. A candidate of a missing provider
// returns an *InputError with code unknown_provider.
func (a *Admin) CreateModel(ctx context.Context, in ModelInput) (*store.LogicalModel, error) {
	if in.Name == nil {
		return nil, inputError("missing_field", "name", "name is required")
	}
	if err := validateModelName(*in.Name); err != nil {
		return nil, err
	}
	if in.Candidates == nil {
		return nil, inputError("missing_field", "candidates", "candidates is required: list at least one {provider_id, model}")
	}
	if in.Capabilities == nil {
		in.Capabilities = &[]providers.Capability{providers.CapabilityChat}
	}

	m := store.LogicalModel{LogicalModelRow: models.LogicalModelRow{Name: *in.Name, Source: models.SourceAPI}}
	if err := applyModel(&m, in); err != nil {
		return nil, err
	}

	if err := a.Store.CreateLogicalModel(ctx, &m); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, ErrModelExists
		}
		return nil, candidateError(err)
	}
	a.changed(ctx)
	return &m, nil
}

// UpdateModel replaces the capabilities and candidates given in in. The
// name cannot change.
func (a *Admin) UpdateModel(ctx context.Context, name string, in ModelInput) (*store.LogicalModel, error) {
	if in.Name != nil && *in.Name != name {
		return nil, inputError("immutable_field", "name", "name cannot be changed; create a new logical model instead")
	}

	m, err := a.Store.LogicalModel(ctx, name)
	if err != nil {
		return nil, modelError(err)
	}
	if err := applyModel(m, in); err != nil {
		return nil, err
	}

	if err := a.Store.UpdateLogicalModel(ctx, m); err != nil {
		return nil, candidateError(modelError(err))
	}
	a.changed(ctx)
	return m, nil
}

// DeleteModel deletes a logical model and its candidates.
func (a *Admin) DeleteModel(ctx context.Context, name string) error {
	if err := a.Store.DeleteLogicalModel(ctx, name); err != nil {
		return modelError(err)
	}
	a.changed(ctx)
	return nil
}

// applyModel validates the fields given in in and copies them to m.
func applyModel(m *store.LogicalModel, in ModelInput) error {
	if in.Capabilities != nil {
		if err := validateCapabilities(*in.Capabilities); err != nil {
			return err
		}
		raw, err := json.Marshal(*in.Capabilities)
		if err != nil {
			return fmt.Errorf("encode capabilities: %w", err)
		}
		m.Capabilities = models.JSON(raw)
	}
	if in.Candidates != nil {
		if err := validateCandidates(*in.Candidates); err != nil {
			return err
		}
		m.Candidates = make([]models.LogicalModelCandidate, 0, len(*in.Candidates))
		for _, candidate := range *in.Candidates {
			weight := 1
			if candidate.Weight != nil {
				weight = *candidate.Weight
			}
			m.Candidates = append(m.Candidates, models.LogicalModelCandidate{
				ProviderID: candidate.ProviderID,
				Model:      candidate.Model,
				Priority:   candidate.Priority,
				Weight:     weight,
			})
		}
	}
	return nil
}

// changed reloads this process's catalog and notifies the other processes
// to reload theirs. A failure only delays the change until the next periodic
// reload, so it is logged and not returned.
func (a *Admin) changed(ctx context.Context) {
	if a.Changed == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
	defer cancel()
	if err := a.Changed(ctx); err != nil {
		a.Logger.Warn("catalog change saved, but the reload notification failed; other processes see it after their next periodic reload", "error", err)
	}
}

func providerError(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return ErrProviderNotFound
	}
	return err
}

func modelError(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return ErrModelNotFound
	}
	return err
}

// candidateError turns a missing candidate provider into an *InputError
// that names the candidate.
func candidateError(err error) error {
	var unknown *store.UnknownProviderError
	switch {
	case !errors.As(err, &unknown):
		return err
	case unknown.Index < 0:
		return inputError("unknown_provider", "candidates", "a provider of the candidates was deleted during the request; check the providers and retry")
	}
	return inputError("unknown_provider", fmt.Sprintf("candidates[%d].provider_id", unknown.Index),
		"provider %q does not exist; create it with POST /admin/providers first", unknown.ProviderID)
}

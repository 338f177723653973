package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/secrets"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

// SeedKeyLabel is the label of the provider key that Seed creates from a
// provider's api_key.
const SeedKeyLabel = "default"

// Seed writes the providers and logical models of c, usually the catalog
// from the environment and PROVIDERS_FILE, into the database with source
// "seed". It runs in one transaction and may run again on every start:
//
//   - A provider or logical model that c lists is inserted or overwritten,
//     even when it was created through the admin API. A provider keeps its
//     enabled flag, so that disabling it through the API survives restarts.
//   - Rows that c does not list are left alone, including seeded rows whose
//     entry was removed from the file.
//   - A non-empty api_key becomes the provider key labelled SeedKeyLabel,
//     encrypted with cipher. A stored key with the same secret stays as it
//     is, even when disabled. A new secret replaces it and enables it again.
//
// A provider header that ForbiddenHeader rejects is an error, because the
// headers column is not encrypted and credentials belong in api_key.
func Seed(ctx context.Context, st *store.Store, cipher *secrets.Cipher, c *providers.Catalog, logger *slog.Logger) error {
	providerList := c.Providers()
	modelList := c.Models()
	if len(providerList) == 0 && len(modelList) == 0 {
		return nil
	}
	for _, p := range providerList {
		if name := ForbiddenHeader(p.Headers); name != "" {
			return fmt.Errorf("seed provider %q: header %s may not be set in headers; put the credential in api_key, which is stored encrypted", p.ID, name)
		}
	}

	err := st.Transaction(ctx, func(tx *store.Store) error {
		for _, p := range providerList {
			if err := seedProvider(ctx, tx, cipher, p, logger); err != nil {
				return err
			}
		}
		for _, model := range modelList {
			if err := seedModel(ctx, tx, model, logger); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("seed catalog: %w", err)
	}
	logger.Info("catalog seeded", "providers", len(providerList), "logical_models", len(modelList))
	return nil
}

// SeedIfEmpty seeds c when the database has no logical model and reports
// whether it did. `dev` uses it for the mock upstream.
func SeedIfEmpty(ctx context.Context, st *store.Store, cipher *secrets.Cipher, c *providers.Catalog, logger *slog.Logger) (bool, error) {
	has, err := st.HasLogicalModels(ctx)
	if err != nil || has {
		return false, err
	}
	if err := Seed(ctx, st, cipher, c, logger); err != nil {
		return false, err
	}
	return true, nil
}

func seedProvider(ctx context.Context, tx *store.Store, cipher *secrets.Cipher, p providers.Provider, logger *slog.Logger) error {
	existing, err := tx.Provider(ctx, p.ID)
	switch {
	case err == nil && existing.Source == models.SourceAPI:
		logger.Warn("the seed catalog overwrites a provider created through the admin API", "provider_id", p.ID)
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return err
	}

	row := models.ProviderRow{
		ID:             p.ID,
		Name:           p.Name,
		Kind:           p.Kind,
		BaseURL:        p.BaseURL,
		TimeoutSeconds: p.TimeoutSeconds,
		Enabled:        true,
		Source:         models.SourceSeed,
	}
	if row.Name == "" {
		row.Name = p.ID
	}
	if len(p.Headers) > 0 {
		row.Headers = models.MustJSON(p.Headers)
	}
	if err := tx.UpsertProvider(ctx, &row); err != nil {
		return err
	}

	if p.APIKey == "" {
		return nil
	}
	return seedKey(ctx, tx, cipher, p.ID, p.APIKey)
}

func seedKey(ctx context.Context, tx *store.Store, cipher *secrets.Cipher, providerID, secret string) error {
	existing, err := tx.ProviderKeyByLabel(ctx, providerID, SeedKeyLabel)
	switch {
	case err == nil:
		// A ciphertext that does not open, for example after a MASTER_KEY
		// change, is replaced like a changed secret.
		if plain, err := cipher.Open(existing.SecretCiphertext); err == nil && string(plain) == secret {
			return nil
		}
	case !errors.Is(err, store.ErrNotFound):
		return err
	}

	return tx.UpsertProviderKey(ctx, &models.ProviderKey{
		ProviderID:       providerID,
		Label:            SeedKeyLabel,
		SecretCiphertext: cipher.Seal([]byte(secret)),
		SecretLast4:      last4(secret),
		Weight:           1,
		Enabled:          true,
	})
}

func seedModel(ctx context.Context, tx *store.Store, model providers.LogicalModel, logger *slog.Logger) error {
	existing, err := tx.LogicalModel(ctx, model.Name)
	switch {
	case err == nil && existing.Source == models.SourceAPI:
		logger.Warn("the seed catalog overwrites a logical model created through the admin API", "logical_model", model.Name)
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return err
	}

	capabilities, err := json.Marshal(model.Capabilities)
	if err != nil {
		return fmt.Errorf("encode capabilities of %q: %w", model.Name, err)
	}
	m := store.LogicalModel{LogicalModelRow: models.LogicalModelRow{
		Name:         model.Name,
		Capabilities: models.JSON(capabilities),
		Source:       models.SourceSeed,
	}}
	for _, candidate := range model.Candidates {
		m.Candidates = append(m.Candidates, models.LogicalModelCandidate{
			ProviderID: candidate.ProviderID,
			Model:      candidate.Model,
			Priority:   candidate.Priority,
			Weight:     candidate.Weight,
		})
	}
	return tx.UpsertLogicalModel(ctx, &m)
}

// Package catalog keeps the upstream catalog (providers, provider keys and
// logical models) in the database. It seeds the tables from the environment
// and PROVIDERS_FILE, builds the runtime providers.Catalog from them, reloads
// it in every process when an admin changes it, and validates and applies
// those admin changes.
package catalog

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/secrets"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

// Load builds a runtime catalog from the database. Providers get their
// enabled keys, decrypted, in Provider.Keys, and a disabled provider is
// marked Disabled. A provider that has keys of which none is enabled and
// decryptable is marked Disabled too, so that it is never called without its
// credential.
//
// A key that fails to decrypt, usually because MASTER_KEY changed, is
// skipped with one error log that names the key. Rows that fail validation
// are skipped with an error log as well, and so are the logical models whose
// candidates use a skipped provider.
func Load(ctx context.Context, st *store.Store, cipher *secrets.Cipher, logger *slog.Logger) (*providers.Catalog, error) {
	l := newLoader(st, cipher, logger)
	return l.load(ctx)
}

// loader builds catalogs and remembers which keys it already reported as
// undecryptable, so that a reloader logs each of them once.
type loader struct {
	store  *store.Store
	cipher *secrets.Cipher
	logger *slog.Logger

	mu       sync.Mutex
	reported map[string]bool
}

func newLoader(st *store.Store, cipher *secrets.Cipher, logger *slog.Logger) *loader {
	return &loader{store: st, cipher: cipher, logger: logger, reported: make(map[string]bool)}
}

// snapshot is the catalog tables as read in one transaction.
type snapshot struct {
	providers []models.ProviderRow
	keys      []models.ProviderKey
	models    []store.LogicalModel
}

func (l *loader) load(ctx context.Context) (*providers.Catalog, error) {
	snap, err := l.read(ctx)
	if err != nil {
		return nil, err
	}

	keysByProvider := make(map[string][]models.ProviderKey)
	for _, key := range snap.keys {
		keysByProvider[key.ProviderID] = append(keysByProvider[key.ProviderID], key)
	}

	catalog := providers.NewCatalog()
	for _, row := range snap.providers {
		p, err := l.provider(row, keysByProvider[row.ID])
		if err == nil {
			err = catalog.AddProvider(p)
		}
		if err != nil {
			l.logger.Error("provider skipped: its stored row is invalid; fix it through the admin API", "provider_id", row.ID, "error", err)
		}
	}

	for _, m := range snap.models {
		model, err := logicalModel(m)
		if err == nil {
			err = catalog.AddModel(model)
		}
		if err != nil {
			l.logger.Error("logical model skipped: its stored row is invalid or uses a skipped provider", "logical_model", m.Name, "error", err)
		}
	}
	return catalog, nil
}

// read loads the three tables in one read-only transaction. On PostgreSQL it
// uses REPEATABLE READ, so that a candidate never refers to a provider that
// was created after the providers were read. SQLite transactions see one
// snapshot anyway.
func (l *loader) read(ctx context.Context) (snapshot, error) {
	var opts []*sql.TxOptions
	if l.store.Dialect == store.Postgres {
		opts = append(opts, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	}

	var snap snapshot
	err := l.store.Transaction(ctx, func(tx *store.Store) error {
		var err error
		if snap.providers, err = tx.ListProviders(ctx); err != nil {
			return err
		}
		if snap.keys, err = tx.AllProviderKeys(ctx); err != nil {
			return err
		}
		snap.models, err = tx.ListLogicalModels(ctx)
		return err
	}, opts...)
	if err != nil {
		return snapshot{}, fmt.Errorf("load catalog: %w", err)
	}
	return snap, nil
}

// provider converts a row and its keys. It decrypts only enabled keys.
func (l *loader) provider(row models.ProviderRow, keys []models.ProviderKey) (providers.Provider, error) {
	p := providers.Provider{
		ID:             row.ID,
		Name:           row.Name,
		Kind:           row.Kind,
		BaseURL:        row.BaseURL,
		TimeoutSeconds: row.TimeoutSeconds,
		Disabled:       !row.Enabled,
	}
	if len(row.Headers) > 0 {
		if err := json.Unmarshal(row.Headers, &p.Headers); err != nil {
			return providers.Provider{}, fmt.Errorf("decode headers: %w", err)
		}
	}

	for _, key := range keys {
		if !key.Enabled {
			continue
		}
		secret, err := l.cipher.Open(key.SecretCiphertext)
		if err != nil {
			l.reportUndecryptable(key, err)
			continue
		}
		l.forgetUndecryptable(key.ID)
		p.Keys = append(p.Keys, providers.ProviderKey{
			ID:     key.ID,
			Label:  key.Label,
			Secret: string(secret),
			Weight: key.Weight,
			MaxQPS: key.MaxQPS,
		})
	}
	if len(keys) > 0 && len(p.Keys) == 0 {
		p.Disabled = true
	}
	return p, nil
}

// reportUndecryptable logs the first failure of each key. The error of
// secrets.Cipher.Open never contains plaintext.
func (l *loader) reportUndecryptable(key models.ProviderKey, err error) {
	l.mu.Lock()
	seen := l.reported[key.ID]
	l.reported[key.ID] = true
	l.mu.Unlock()
	if seen {
		return
	}
	l.logger.Error("provider key skipped: it does not decrypt with this MASTER_KEY; set the MASTER_KEY it was stored with, or replace its secret through the admin API",
		"provider_id", key.ProviderID, "key_id", key.ID, "label", key.Label, "error", err)
}

// forgetUndecryptable lets a key that decrypts again be reported on its
// next failure.
func (l *loader) forgetUndecryptable(keyID string) {
	l.mu.Lock()
	delete(l.reported, keyID)
	l.mu.Unlock()
}

func logicalModel(m store.LogicalModel) (providers.LogicalModel, error) {
	model := providers.LogicalModel{Name: m.Name}
	if err := json.Unmarshal(m.Capabilities, &model.Capabilities); err != nil {
		return providers.LogicalModel{}, fmt.Errorf("decode capabilities: %w", err)
	}
	for _, candidate := range m.Candidates {
		model.Candidates = append(model.Candidates, providers.Candidate{
			ProviderID: candidate.ProviderID,
			Model:      candidate.Model,
			Priority:   candidate.Priority,
			Weight:     candidate.Weight,
		})
	}
	return model, nil
}

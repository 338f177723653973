package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/aihigress/aihigress/models"
)

// ErrInUse is wrapped by ProviderInUseError.
var ErrInUse = errors.New("in use")

// ProviderInUseError is returned by DeleteProvider when logical models still
// have candidates of the provider. It wraps ErrInUse.
type ProviderInUseError struct {
	ProviderID string
	// Models are the names of the logical models that use the provider,
	// sorted.
	Models []string
}

func (e *ProviderInUseError) Error() string {
	return fmt.Sprintf("provider %q is used by the logical models %s", e.ProviderID, strings.Join(e.Models, ", "))
}

func (e *ProviderInUseError) Unwrap() error { return ErrInUse }

// UnknownProviderError is returned when a candidate names a provider that
// does not exist.
type UnknownProviderError struct {
	// Index is the position of the first such candidate in the list, or -1
	// when the provider was deleted between the check and the insert.
	Index      int
	ProviderID string
}

func (e *UnknownProviderError) Error() string {
	if e.Index < 0 {
		return "a candidate's provider was deleted while the candidates were written"
	}
	return fmt.Sprintf("candidate %d uses unknown provider %q", e.Index, e.ProviderID)
}

// LogicalModel is a logical model row with its candidates in position order.
type LogicalModel struct {
	models.LogicalModelRow
	Candidates []models.LogicalModelCandidate
}

// Transaction runs fn in a database transaction. fn must make every query
// through tx, because on SQLite the transaction holds the only connection.
func (s *Store) Transaction(ctx context.Context, fn func(tx *Store) error, opts ...*sql.TxOptions) error {
	return s.DB.WithContext(ctx).Transaction(func(db *gorm.DB) error {
		return fn(&Store{DB: db, Dialect: s.Dialect})
	}, opts...)
}

// providerColumns are the columns that UpdateProvider writes.
var providerColumns = []string{"name", "kind", "base_url", "timeout_seconds", "enabled", "headers", "updated_at"}

// CreateProvider inserts p. A taken id returns ErrConflict.
func (s *Store) CreateProvider(ctx context.Context, p *models.ProviderRow) error {
	if err := s.DB.WithContext(ctx).Create(p).Error; err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("create provider %q: %w", p.ID, ErrConflict)
		}
		return fmt.Errorf("create provider %q: %w", p.ID, err)
	}
	return nil
}

// Provider finds a provider by id.
func (s *Store) Provider(ctx context.Context, id string) (*models.ProviderRow, error) {
	var p models.ProviderRow
	if err := s.DB.WithContext(ctx).Where("id = ?", id).First(&p).Error; err != nil {
		return nil, notFound(err)
	}
	return &p, nil
}

// ListProviders returns every provider sorted by id.
func (s *Store) ListProviders(ctx context.Context) ([]models.ProviderRow, error) {
	var list []models.ProviderRow
	if err := s.DB.WithContext(ctx).Order("id").Find(&list).Error; err != nil {
		return nil, fmt.Errorf("list providers: %w", err)
	}
	return list, nil
}

// UpdateProvider writes the editable columns of p (everything but id,
// source and created_at). A missing provider returns ErrNotFound.
func (s *Store) UpdateProvider(ctx context.Context, p *models.ProviderRow) error {
	p.UpdatedAt = time.Now().UTC()
	result := s.DB.WithContext(ctx).Model(&models.ProviderRow{}).Where("id = ?", p.ID).Select(providerColumns).Updates(p)
	if result.Error != nil {
		return fmt.Errorf("update provider %q: %w", p.ID, result.Error)
	}
	if result.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// UpsertProvider inserts p, or overwrites every column of the existing
// provider with the same id except enabled and created_at. Seeding uses it,
// so that a provider disabled through the admin API stays disabled after a
// restart.
func (s *Store) UpsertProvider(ctx context.Context, p *models.ProviderRow) error {
	err := s.DB.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "id"}},
		DoUpdates: clause.AssignmentColumns([]string{"name", "kind", "base_url", "timeout_seconds", "headers", "source", "updated_at"}),
	}).Create(p).Error
	if err != nil {
		return fmt.Errorf("upsert provider %q: %w", p.ID, err)
	}
	return nil
}

// DeleteProvider deletes a provider and, by cascade, its keys. A missing
// provider returns ErrNotFound, and a provider that a logical model uses
// returns a *ProviderInUseError.
func (s *Store) DeleteProvider(ctx context.Context, id string) error {
	inUse, err := s.LogicalModelsUsingProvider(ctx, id)
	if err != nil {
		return err
	}
	if len(inUse) > 0 {
		return &ProviderInUseError{ProviderID: id, Models: inUse}
	}

	result := s.DB.WithContext(ctx).Where("id = ?", id).Delete(&models.ProviderRow{})
	if result.Error != nil {
		// A candidate added since the check above makes the foreign key
		// reject the delete.
		if isForeignKeyViolation(result.Error) {
			inUse, err := s.LogicalModelsUsingProvider(ctx, id)
			if err != nil {
				return err
			}
			return &ProviderInUseError{ProviderID: id, Models: inUse}
		}
		return fmt.Errorf("delete provider %q: %w", id, result.Error)
	}
	if result.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// LogicalModelsUsingProvider returns the sorted names of the logical models
// with a candidate of the provider.
func (s *Store) LogicalModelsUsingProvider(ctx context.Context, providerID string) ([]string, error) {
	var names []string
	err := s.DB.WithContext(ctx).Model(&models.LogicalModelCandidate{}).
		Where("provider_id = ?", providerID).
		Distinct("logical_model").Order("logical_model").
		Pluck("logical_model", &names).Error
	if err != nil {
		return nil, fmt.Errorf("find logical models of provider %q: %w", providerID, err)
	}
	return names, nil
}

// providerKeyColumns are the columns that UpdateProviderKey writes.
var providerKeyColumns = []string{"label", "secret_ciphertext", "secret_last4", "weight", "max_qps", "enabled", "disabled_reason", "updated_at"}

// CreateProviderKey inserts k, assigning an ID when it has none. A missing
// provider returns ErrNotFound, and a label that the provider already uses
// returns ErrConflict.
func (s *Store) CreateProviderKey(ctx context.Context, k *models.ProviderKey) error {
	if k.ID == "" {
		k.ID = uuid.NewString()
	}
	if err := s.DB.WithContext(ctx).Create(k).Error; err != nil {
		switch {
		case isUniqueViolation(err):
			return fmt.Errorf("create key %q of provider %q: %w", k.Label, k.ProviderID, ErrConflict)
		case isForeignKeyViolation(err):
			return fmt.Errorf("create key %q: provider %q: %w", k.Label, k.ProviderID, ErrNotFound)
		}
		return fmt.Errorf("create key %q of provider %q: %w", k.Label, k.ProviderID, err)
	}
	return nil
}

// ProviderKey finds a key of a provider by its ID.
func (s *Store) ProviderKey(ctx context.Context, providerID, keyID string) (*models.ProviderKey, error) {
	if !validUUID(keyID) {
		return nil, ErrNotFound
	}
	var k models.ProviderKey
	err := s.DB.WithContext(ctx).Where("id = ? AND provider_id = ?", keyID, providerID).First(&k).Error
	if err != nil {
		return nil, notFound(err)
	}
	return &k, nil
}

// ProviderKeyByLabel finds a key of a provider by its label.
func (s *Store) ProviderKeyByLabel(ctx context.Context, providerID, label string) (*models.ProviderKey, error) {
	var k models.ProviderKey
	err := s.DB.WithContext(ctx).Where("provider_id = ? AND label = ?", providerID, label).First(&k).Error
	if err != nil {
		return nil, notFound(err)
	}
	return &k, nil
}

// ListProviderKeys returns the keys of a provider, oldest first.
func (s *Store) ListProviderKeys(ctx context.Context, providerID string) ([]models.ProviderKey, error) {
	var keys []models.ProviderKey
	err := s.DB.WithContext(ctx).Where("provider_id = ?", providerID).Order("created_at, label").Find(&keys).Error
	if err != nil {
		return nil, fmt.Errorf("list keys of provider %q: %w", providerID, err)
	}
	return keys, nil
}

// AllProviderKeys returns the keys of every provider, sorted by provider,
// then oldest first.
func (s *Store) AllProviderKeys(ctx context.Context) ([]models.ProviderKey, error) {
	var keys []models.ProviderKey
	if err := s.DB.WithContext(ctx).Order("provider_id, created_at, label").Find(&keys).Error; err != nil {
		return nil, fmt.Errorf("list provider keys: %w", err)
	}
	return keys, nil
}

// UpdateProviderKey writes the editable columns of k, which is found by ID
// and provider. A missing key returns ErrNotFound, and a label that another
// key of the provider uses returns ErrConflict.
func (s *Store) UpdateProviderKey(ctx context.Context, k *models.ProviderKey) error {
	if !validUUID(k.ID) {
		return ErrNotFound
	}
	k.UpdatedAt = time.Now().UTC()
	result := s.DB.WithContext(ctx).Model(&models.ProviderKey{}).
		Where("id = ? AND provider_id = ?", k.ID, k.ProviderID).
		Select(providerKeyColumns).Updates(k)
	if result.Error != nil {
		if isUniqueViolation(result.Error) {
			return fmt.Errorf("rename key %s to %q: %w", k.ID, k.Label, ErrConflict)
		}
		return fmt.Errorf("update key %s: %w", k.ID, result.Error)
	}
	if result.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// UpsertProviderKey inserts k, or replaces the secret of the provider's key
// with the same label and enables it again. k.ID is assigned when empty and
// is kept only on insert.
func (s *Store) UpsertProviderKey(ctx context.Context, k *models.ProviderKey) error {
	if k.ID == "" {
		k.ID = uuid.NewString()
	}
	err := s.DB.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "provider_id"}, {Name: "label"}},
		DoUpdates: clause.AssignmentColumns([]string{"secret_ciphertext", "secret_last4", "enabled", "disabled_reason", "updated_at"}),
	}).Create(k).Error
	if err != nil {
		return fmt.Errorf("upsert key %q of provider %q: %w", k.Label, k.ProviderID, err)
	}
	return nil
}

// DeleteProviderKey deletes a key of a provider. A missing key returns
// ErrNotFound.
func (s *Store) DeleteProviderKey(ctx context.Context, providerID, keyID string) error {
	if !validUUID(keyID) {
		return ErrNotFound
	}
	result := s.DB.WithContext(ctx).Where("id = ? AND provider_id = ?", keyID, providerID).Delete(&models.ProviderKey{})
	if result.Error != nil {
		return fmt.Errorf("delete key %s: %w", keyID, result.Error)
	}
	if result.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// DisableProviderKey disables a key and records why, such as an upstream
// 401. It returns ErrNotFound when the key does not exist. The router calls
// it, so it needs no provider ID.
func (s *Store) DisableProviderKey(ctx context.Context, keyID, reason string) error {
	if !validUUID(keyID) {
		return ErrNotFound
	}
	result := s.DB.WithContext(ctx).Model(&models.ProviderKey{}).Where("id = ?", keyID).
		Updates(map[string]any{"enabled": false, "disabled_reason": reason, "updated_at": time.Now().UTC()})
	if result.Error != nil {
		return fmt.Errorf("disable key %s: %w", keyID, result.Error)
	}
	if result.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// CreateLogicalModel inserts m and its candidates in one transaction, in
// the order given. A taken name returns ErrConflict, and a candidate of a
// missing provider returns a *UnknownProviderError.
func (s *Store) CreateLogicalModel(ctx context.Context, m *LogicalModel) error {
	return s.Transaction(ctx, func(tx *Store) error {
		if err := tx.checkCandidateProviders(ctx, m.Candidates); err != nil {
			return err
		}
		if err := tx.DB.WithContext(ctx).Create(&m.LogicalModelRow).Error; err != nil {
			if isUniqueViolation(err) {
				return fmt.Errorf("create logical model %q: %w", m.Name, ErrConflict)
			}
			return fmt.Errorf("create logical model %q: %w", m.Name, err)
		}
		return tx.insertCandidates(ctx, m)
	})
}

// LogicalModel finds a logical model with its candidates.
func (s *Store) LogicalModel(ctx context.Context, name string) (*LogicalModel, error) {
	var m LogicalModel
	if err := s.DB.WithContext(ctx).Where("name = ?", name).First(&m.LogicalModelRow).Error; err != nil {
		return nil, notFound(err)
	}
	err := s.DB.WithContext(ctx).Where("logical_model = ?", name).Order("position").Find(&m.Candidates).Error
	if err != nil {
		return nil, fmt.Errorf("candidates of logical model %q: %w", name, err)
	}
	return &m, nil
}

// ListLogicalModels returns every logical model sorted by name, each with
// its candidates in position order.
func (s *Store) ListLogicalModels(ctx context.Context) ([]LogicalModel, error) {
	var rows []models.LogicalModelRow
	if err := s.DB.WithContext(ctx).Order("name").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list logical models: %w", err)
	}
	var candidates []models.LogicalModelCandidate
	if err := s.DB.WithContext(ctx).Order("logical_model, position").Find(&candidates).Error; err != nil {
		return nil, fmt.Errorf("list logical model candidates: %w", err)
	}

	byModel := make(map[string][]models.LogicalModelCandidate, len(rows))
	for _, candidate := range candidates {
		byModel[candidate.LogicalModel] = append(byModel[candidate.LogicalModel], candidate)
	}
	list := make([]LogicalModel, 0, len(rows))
	for _, row := range rows {
		list = append(list, LogicalModel{LogicalModelRow: row, Candidates: byModel[row.Name]})
	}
	return list, nil
}

// UpdateLogicalModel writes the capabilities of m and replaces its
// candidates in one transaction. A missing model returns ErrNotFound, and a
// candidate of a missing provider returns a *UnknownProviderError.
func (s *Store) UpdateLogicalModel(ctx context.Context, m *LogicalModel) error {
	return s.Transaction(ctx, func(tx *Store) error {
		if err := tx.checkCandidateProviders(ctx, m.Candidates); err != nil {
			return err
		}
		m.UpdatedAt = time.Now().UTC()
		result := tx.DB.WithContext(ctx).Model(&models.LogicalModelRow{}).Where("name = ?", m.Name).
			Select("capabilities", "updated_at").Updates(&m.LogicalModelRow)
		if result.Error != nil {
			return fmt.Errorf("update logical model %q: %w", m.Name, result.Error)
		}
		if result.RowsAffected == 0 {
			return ErrNotFound
		}
		return tx.replaceCandidates(ctx, m)
	})
}

// UpsertLogicalModel inserts m, or overwrites the capabilities and source
// of the model with the same name. Its candidates are replaced only when
// they differ from the stored ones, so that seeding the same catalog twice
// rewrites nothing. Call it inside a transaction.
func (s *Store) UpsertLogicalModel(ctx context.Context, m *LogicalModel) error {
	err := s.DB.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "name"}},
		DoUpdates: clause.AssignmentColumns([]string{"capabilities", "source", "updated_at"}),
	}).Create(&m.LogicalModelRow).Error
	if err != nil {
		return fmt.Errorf("upsert logical model %q: %w", m.Name, err)
	}

	var stored []models.LogicalModelCandidate
	if err := s.DB.WithContext(ctx).Where("logical_model = ?", m.Name).Order("position").Find(&stored).Error; err != nil {
		return fmt.Errorf("candidates of logical model %q: %w", m.Name, err)
	}
	if slices.EqualFunc(stored, m.Candidates, sameCandidate) {
		m.Candidates = stored
		return nil
	}
	return s.replaceCandidates(ctx, m)
}

// DeleteLogicalModel deletes a logical model and, by cascade, its
// candidates. A missing model returns ErrNotFound.
func (s *Store) DeleteLogicalModel(ctx context.Context, name string) error {
	result := s.DB.WithContext(ctx).Where("name = ?", name).Delete(&models.LogicalModelRow{})
	if result.Error != nil {
		return fmt.Errorf("delete logical model %q: %w", name, result.Error)
	}
	if result.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// HasLogicalModels reports whether the database contains any logical model.
func (s *Store) HasLogicalModels(ctx context.Context) (bool, error) {
	var n int64
	if err := s.DB.WithContext(ctx).Model(&models.LogicalModelRow{}).Limit(1).Count(&n).Error; err != nil {
		return false, fmt.Errorf("count logical models: %w", err)
	}
	return n > 0, nil
}

// checkCandidateProviders returns a *UnknownProviderError for the first
// candidate whose provider does not exist. The foreign key would reject it
// too, but without naming the candidate.
func (s *Store) checkCandidateProviders(ctx context.Context, candidates []models.LogicalModelCandidate) error {
	ids := make([]string, 0, len(candidates))
	for _, candidate := range candidates {
		ids = append(ids, candidate.ProviderID)
	}
	var found []string
	if len(ids) > 0 {
		err := s.DB.WithContext(ctx).Model(&models.ProviderRow{}).Where("id IN ?", ids).Pluck("id", &found).Error
		if err != nil {
			return fmt.Errorf("look up candidate providers: %w", err)
		}
	}
	for i, id := range ids {
		if !slices.Contains(found, id) {
			return &UnknownProviderError{Index: i, ProviderID: id}
		}
	}
	return nil
}

func (s *Store) replaceCandidates(ctx context.Context, m *LogicalModel) error {
	err := s.DB.WithContext(ctx).Where("logical_model = ?", m.Name).Delete(&models.LogicalModelCandidate{}).Error
	if err != nil {
		return fmt.Errorf("delete candidates of logical model %q: %w", m.Name, err)
	}
	return s.insertCandidates(ctx, m)
}

// insertCandidates inserts the candidates of m with positions 0, 1, ... in
// slice order.
func (s *Store) insertCandidates(ctx context.Context, m *LogicalModel) error {
	if len(m.Candidates) == 0 {
		return nil
	}
	for i := range m.Candidates {
		m.Candidates[i].ID = 0
		m.Candidates[i].LogicalModel = m.Name
		m.Candidates[i].Position = i
	}
	if err := s.DB.WithContext(ctx).Create(&m.Candidates).Error; err != nil {
		if isForeignKeyViolation(err) {
			return &UnknownProviderError{Index: -1}
		}
		return fmt.Errorf("insert candidates of logical model %q: %w", m.Name, err)
	}
	return nil
}

// sameCandidate compares the fields that a candidate's owner sets.
func sameCandidate(a, b models.LogicalModelCandidate) bool {
	return a.ProviderID == b.ProviderID && a.Model == b.Model && a.Priority == b.Priority && a.Weight == b.Weight
}

// isForeignKeyViolation reports whether err comes from a foreign key
// constraint.
func isForeignKeyViolation(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, gorm.ErrForeignKeyViolated) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "SQLSTATE 23503") || strings.Contains(msg, "FOREIGN KEY constraint failed")
}

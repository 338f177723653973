package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
)

func newProvider(id string) *models.ProviderRow {
	return &models.ProviderRow{
		ID: id, Name: id, Kind: "openai", BaseURL: "http://127.0.0.1:9/v1", Enabled: true,
		Headers: models.MustJSON(map[string]string{"X-Org": "test"}), Source: models.SourceAPI,
	}
}

func newKey(providerID, label string) *models.ProviderKey {
	return &models.ProviderKey{
		ProviderID: providerID, Label: label, SecretCiphertext: []byte("sealed-" + label),
		SecretLast4: "abcd", Weight: 1, Enabled: true,
	}
}

func newModel(name string, candidates ...models.LogicalModelCandidate) *store.LogicalModel {
	return &store.LogicalModel{
		LogicalModelRow: models.LogicalModelRow{Name: name, Capabilities: models.JSON(`["chat"]`), Source: models.SourceAPI},
		Candidates:      candidates,
	}
}

func candidate(providerID, model string, priority int) models.LogicalModelCandidate {
	return models.LogicalModelCandidate{ProviderID: providerID, Model: model, Priority: priority, Weight: 1}
}

func countRows(t *testing.T, st *store.Store, table, where string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := st.DB.Table(table).Where(where, args...).Count(&n).Error; err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func TestProviderCRUD(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()

	if err := st.CreateProvider(ctx, newProvider("alpha")); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateProvider(ctx, newProvider("beta")); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateProvider(ctx, newProvider("alpha")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate id: error = %v, want ErrConflict", err)
	}

	list, err := st.ListProviders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range list {
		ids = append(ids, p.ID)
	}
	if !slices.Equal(ids, []string{"alpha", "beta"}) {
		t.Errorf("ListProviders ids = %v, want [alpha beta]", ids)
	}

	p, err := st.Provider(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	p.BaseURL = "https://alpha.example/v1"
	p.Enabled = false
	p.Headers = nil
	if err := st.UpdateProvider(ctx, p); err != nil {
		t.Fatal(err)
	}
	got, err := st.Provider(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	if got.BaseURL != "https://alpha.example/v1" {
		t.Errorf("base_url = %q after update", got.BaseURL)
	}
	if got.Enabled {
		t.Error("enabled = true after an update that disabled it")
	}
	if len(got.Headers) != 0 {
		t.Errorf("headers = %s after an update that cleared them", got.Headers)
	}
	if got.Source != models.SourceAPI {
		t.Errorf("source = %q, want it unchanged", got.Source)
	}

	if err := st.UpdateProvider(ctx, newProvider("missing")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update of a missing provider: error = %v, want ErrNotFound", err)
	}
	if _, err := st.Provider(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get of a missing provider: error = %v, want ErrNotFound", err)
	}
	if err := st.DeleteProvider(ctx, "beta"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteProvider(ctx, "beta"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: error = %v, want ErrNotFound", err)
	}
}

func TestUpsertProviderKeepsEnabled(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()

	p := newProvider("seeded")
	p.Source = models.SourceSeed
	if err := st.UpsertProvider(ctx, p); err != nil {
		t.Fatal(err)
	}
	p.Enabled = false
	if err := st.UpdateProvider(ctx, p); err != nil {
		t.Fatal(err)
	}

	again := newProvider("seeded")
	again.Source = models.SourceSeed
	again.BaseURL = "https://changed.example/v1"
	if err := st.UpsertProvider(ctx, again); err != nil {
		t.Fatal(err)
	}
	got, err := st.Provider(ctx, "seeded")
	if err != nil {
		t.Fatal(err)
	}
	if got.BaseURL != "https://changed.example/v1" {
		t.Errorf("base_url = %q, want the upserted value", got.BaseURL)
	}
	if got.Enabled {
		t.Error("upsert enabled a provider that was disabled")
	}
	if n := countRows(t, st, "providers", "id = ?", "seeded"); n != 1 {
		t.Errorf("%d rows for id seeded, want 1", n)
	}
}

func TestProviderKeyCRUD(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	if err := st.CreateProvider(ctx, newProvider("alpha")); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateProvider(ctx, newProvider("beta")); err != nil {
		t.Fatal(err)
	}

	first := newKey("alpha", "primary")
	if err := st.CreateProviderKey(ctx, first); err != nil {
		t.Fatal(err)
	}
	if _, err := uuid.Parse(first.ID); err != nil {
		t.Errorf("assigned key id %q is not a UUID", first.ID)
	}
	if err := st.CreateProviderKey(ctx, newKey("alpha", "primary")); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate label: error = %v, want ErrConflict", err)
	}
	if err := st.CreateProviderKey(ctx, newKey("beta", "primary")); err != nil {
		t.Errorf("same label on another provider: %v", err)
	}
	if err := st.CreateProviderKey(ctx, newKey("missing", "primary")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("key of a missing provider: error = %v, want ErrNotFound", err)
	}
	second := newKey("alpha", "secondary")
	if err := st.CreateProviderKey(ctx, second); err != nil {
		t.Fatal(err)
	}

	keys, err := st.ListProviderKeys(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("ListProviderKeys(alpha) returned %d keys, want 2", len(keys))
	}

	if _, err := st.ProviderKey(ctx, "beta", first.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("key looked up under another provider: error = %v, want ErrNotFound", err)
	}
	if _, err := st.ProviderKey(ctx, "alpha", "not-a-uuid"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("malformed key id: error = %v, want ErrNotFound", err)
	}

	second.Label = "primary"
	if err := st.UpdateProviderKey(ctx, second); !errors.Is(err, store.ErrConflict) {
		t.Errorf("rename to a taken label: error = %v, want ErrConflict", err)
	}
	second.Label = "renamed"
	second.Weight = 5
	second.MaxQPS = 7
	if err := st.UpdateProviderKey(ctx, second); err != nil {
		t.Fatal(err)
	}
	got, err := st.ProviderKey(ctx, "alpha", second.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Label != "renamed" || got.Weight != 5 || got.MaxQPS != 7 {
		t.Errorf("after update: label %q weight %d max_qps %d, want renamed 5 7", got.Label, got.Weight, got.MaxQPS)
	}

	if err := st.DisableProviderKey(ctx, first.ID, "upstream_auth: HTTP 401"); err != nil {
		t.Fatal(err)
	}
	got, err = st.ProviderKey(ctx, "alpha", first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Enabled {
		t.Error("key still enabled after DisableProviderKey")
	}
	if got.DisabledReason != "upstream_auth: HTTP 401" {
		t.Errorf("disabled_reason = %q", got.DisabledReason)
	}
	if err := st.DisableProviderKey(ctx, uuid.NewString(), "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("disable of a missing key: error = %v, want ErrNotFound", err)
	}
	if err := st.DisableProviderKey(ctx, "not-a-uuid", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("disable of a malformed key id: error = %v, want ErrNotFound", err)
	}

	if err := st.DeleteProviderKey(ctx, "beta", second.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete under another provider: error = %v, want ErrNotFound", err)
	}
	if err := st.DeleteProviderKey(ctx, "alpha", second.ID); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, st, "provider_keys", "provider_id = ?", "alpha"); n != 1 {
		t.Errorf("%d keys of alpha after a delete, want 1", n)
	}
}

func TestDeleteProviderCascadesKeys(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	if err := st.CreateProvider(ctx, newProvider("alpha")); err != nil {
		t.Fatal(err)
	}
	for _, label := range []string{"one", "two"} {
		if err := st.CreateProviderKey(ctx, newKey("alpha", label)); err != nil {
			t.Fatal(err)
		}
	}

	if err := st.DeleteProvider(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, st, "provider_keys", "provider_id = ?", "alpha"); n != 0 {
		t.Errorf("%d keys left after deleting their provider, want 0", n)
	}
}

func TestDeleteProviderInUse(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	for _, id := range []string{"alpha", "beta"} {
		if err := st.CreateProvider(ctx, newProvider(id)); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"zeta", "eta"} {
		if err := st.CreateLogicalModel(ctx, newModel(name, candidate("alpha", "m", 0))); err != nil {
			t.Fatal(err)
		}
	}

	err := st.DeleteProvider(ctx, "alpha")
	var inUse *store.ProviderInUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("DeleteProvider of a used provider: error = %v, want *ProviderInUseError", err)
	}
	if !errors.Is(err, store.ErrInUse) {
		t.Error("ProviderInUseError does not wrap ErrInUse")
	}
	if !slices.Equal(inUse.Models, []string{"eta", "zeta"}) {
		t.Errorf("models in use = %v, want [eta zeta]", inUse.Models)
	}
	if n := countRows(t, st, "providers", "id = ?", "alpha"); n != 1 {
		t.Error("the used provider was deleted")
	}

	// The foreign key itself restricts the delete, not only the check in
	// DeleteProvider.
	if err := st.DB.Exec("DELETE FROM providers WHERE id = ?", "alpha").Error; err == nil {
		t.Error("raw DELETE of a provider that candidates use succeeded; want a foreign key error")
	}

	for _, name := range []string{"zeta", "eta"} {
		if err := st.DeleteLogicalModel(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if n := countRows(t, st, "logical_model_candidates", "provider_id = ?", "alpha"); n != 0 {
		t.Errorf("%d candidates left after deleting their models, want 0", n)
	}
	if err := st.DeleteProvider(ctx, "alpha"); err != nil {
		t.Errorf("DeleteProvider after its models were deleted: %v", err)
	}
}

func candidateKeys(candidates []models.LogicalModelCandidate) []string {
	var out []string
	for _, c := range candidates {
		out = append(out, c.ProviderID+"/"+c.Model)
	}
	return out
}

func TestLogicalModelCandidatesOrder(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	for _, id := range []string{"alpha", "beta"} {
		if err := st.CreateProvider(ctx, newProvider(id)); err != nil {
			t.Fatal(err)
		}
	}

	// The stored order is the order given, not the routing order by
	// priority.
	m := newModel("gpt", candidate("beta", "b1", 0), candidate("alpha", "a1", 5), candidate("beta", "b0", 9))
	if err := st.CreateLogicalModel(ctx, m); err != nil {
		t.Fatal(err)
	}
	got, err := st.LogicalModel(ctx, "gpt")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"beta/b1", "alpha/a1", "beta/b0"}; !slices.Equal(candidateKeys(got.Candidates), want) {
		t.Errorf("candidates = %v, want %v", candidateKeys(got.Candidates), want)
	}
	for i, c := range got.Candidates {
		if c.Position != i {
			t.Errorf("candidate %d has position %d", i, c.Position)
		}
	}

	if err := st.CreateLogicalModel(ctx, newModel("gpt", candidate("alpha", "x", 0))); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate name: error = %v, want ErrConflict", err)
	}

	got.Candidates = []models.LogicalModelCandidate{candidate("alpha", "a2", 0), candidate("beta", "b1", 0)}
	got.Capabilities = models.JSON(`["chat","image_generation"]`)
	if err := st.UpdateLogicalModel(ctx, got); err != nil {
		t.Fatal(err)
	}
	list, err := st.ListLogicalModels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("ListLogicalModels returned %d models, want 1", len(list))
	}
	if want := []string{"alpha/a2", "beta/b1"}; !slices.Equal(candidateKeys(list[0].Candidates), want) {
		t.Errorf("candidates after update = %v, want %v", candidateKeys(list[0].Candidates), want)
	}
	if string(list[0].Capabilities) != `["chat","image_generation"]` && string(list[0].Capabilities) != `["chat", "image_generation"]` {
		t.Errorf("capabilities after update = %s", list[0].Capabilities)
	}
	if n := countRows(t, st, "logical_model_candidates", "logical_model = ?", "gpt"); n != 2 {
		t.Errorf("%d candidate rows after replacing them with 2", n)
	}

	if err := st.UpdateLogicalModel(ctx, newModel("missing", candidate("alpha", "x", 0))); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update of a missing model: error = %v, want ErrNotFound", err)
	}
}

func TestLogicalModelUnknownProvider(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	if err := st.CreateProvider(ctx, newProvider("alpha")); err != nil {
		t.Fatal(err)
	}

	err := st.CreateLogicalModel(ctx, newModel("gpt", candidate("alpha", "a", 0), candidate("ghost", "g", 0)))
	var unknown *store.UnknownProviderError
	if !errors.As(err, &unknown) {
		t.Fatalf("error = %v, want *UnknownProviderError", err)
	}
	if unknown.Index != 1 || unknown.ProviderID != "ghost" {
		t.Errorf("unknown provider at %d %q, want 1 ghost", unknown.Index, unknown.ProviderID)
	}
	if n := countRows(t, st, "logical_models", "name = ?", "gpt"); n != 0 {
		t.Error("the model row was written although a candidate was rejected")
	}

	if err := st.CreateLogicalModel(ctx, newModel("gpt", candidate("alpha", "a", 0))); err != nil {
		t.Fatal(err)
	}
	err = st.UpdateLogicalModel(ctx, newModel("gpt", candidate("ghost", "g", 0)))
	if !errors.As(err, &unknown) {
		t.Fatalf("update: error = %v, want *UnknownProviderError", err)
	}
	got, err := st.LogicalModel(ctx, "gpt")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"alpha/a"}; !slices.Equal(candidateKeys(got.Candidates), want) {
		t.Errorf("candidates after a rejected update = %v, want %v", candidateKeys(got.Candidates), want)
	}
}

func TestUpsertLogicalModelKeepsEqualCandidates(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	if err := st.CreateProvider(ctx, newProvider("alpha")); err != nil {
		t.Fatal(err)
	}

	upsert := func(candidates ...models.LogicalModelCandidate) []models.LogicalModelCandidate {
		t.Helper()
		m := newModel("gpt", candidates...)
		m.Source = models.SourceSeed
		if err := st.Transaction(ctx, func(tx *store.Store) error { return tx.UpsertLogicalModel(ctx, m) }); err != nil {
			t.Fatal(err)
		}
		got, err := st.LogicalModel(ctx, "gpt")
		if err != nil {
			t.Fatal(err)
		}
		return got.Candidates
	}

	first := upsert(candidate("alpha", "a", 1), candidate("alpha", "b", 0))
	second := upsert(candidate("alpha", "a", 1), candidate("alpha", "b", 0))
	if first[0].ID != second[0].ID || first[1].ID != second[1].ID {
		t.Errorf("an identical upsert rewrote the candidates: ids %d,%d then %d,%d", first[0].ID, first[1].ID, second[0].ID, second[1].ID)
	}

	third := upsert(candidate("alpha", "b", 0))
	if want := []string{"alpha/b"}; !slices.Equal(candidateKeys(third), want) {
		t.Errorf("candidates after a changed upsert = %v, want %v", candidateKeys(third), want)
	}
	if n := countRows(t, st, "logical_models", "name = ?", "gpt"); n != 1 {
		t.Errorf("%d rows for gpt, want 1", n)
	}
}

func TestTransactionRollsBack(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()

	failure := errors.New("stop")
	err := st.Transaction(ctx, func(tx *store.Store) error {
		if err := tx.CreateProvider(ctx, newProvider("alpha")); err != nil {
			return err
		}
		return failure
	})
	if !errors.Is(err, failure) {
		t.Fatalf("Transaction error = %v, want the callback's error", err)
	}
	if n := countRows(t, st, "providers", "id = ?", "alpha"); n != 0 {
		t.Error("the provider written in a failed transaction was kept")
	}
}

func TestHasLogicalModels(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()

	has, err := st.HasLogicalModels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if has {
		t.Error("HasLogicalModels = true on an empty database")
	}
	if err := st.CreateProvider(ctx, newProvider("alpha")); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateLogicalModel(ctx, newModel("gpt", candidate("alpha", "a", 0))); err != nil {
		t.Fatal(err)
	}
	if has, err = st.HasLogicalModels(ctx); err != nil || !has {
		t.Errorf("HasLogicalModels = %v, %v after creating a model, want true", has, err)
	}
}

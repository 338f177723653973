package catalog_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aihigress/aihigress/internal/catalog"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/secrets"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
)

const (
	masterKey      = "catalog-test-master-key-0123456789abcdef"
	otherMasterKey = "catalog-test-other-master-key-0123456789"
	fileSecret     = "sk-file-secret-0123456789-wxyz"
	envSecret      = "sk-env-secret-0123456789-qrst"
)

// syncBuffer is a bytes.Buffer for a logger that background goroutines
// write to.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func newCipher(t *testing.T, master string) *secrets.Cipher {
	t.Helper()
	cipher, err := secrets.NewCipher(master, secrets.PurposeProviderKeys)
	if err != nil {
		t.Fatal(err)
	}
	return cipher
}

const providersFile = `
providers:
  - id: primary
    name: Primary
    base_url: http://127.0.0.1:9/v1
    api_key: ` + fileSecret + `
    headers:
      X-Org: acme
    timeout_seconds: 30
    models: [shared]
  - id: backup
    kind: gemini
    base_url: http://127.0.0.1:9/v1beta/openai
logical_models:
  - name: gpt
    capabilities: [chat]
    candidates:
      - {provider_id: primary, model: gpt-upstream, priority: 2}
      - {provider_id: backup, model: gemini-pro, priority: 1, weight: 3}
`

// envCatalog builds the catalog from a PROVIDERS_FILE with content and the
// OPENAI_* variables, as the service does at start.
func envCatalog(t *testing.T, content string) *providers.Catalog {
	t.Helper()
	path := filepath.Join(t.TempDir(), "providers.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"PROVIDERS_FILE":  path,
		"OPENAI_BASE_URL": "http://127.0.0.1:9/openai/v1",
		"OPENAI_API_KEY":  envSecret,
		"OPENAI_MODELS":   "gpt-4o,shared",
	}
	c, err := providers.LoadCatalog(func(k string) string { return env[k] }, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func count(t *testing.T, st *store.Store, table string) int64 {
	t.Helper()
	var n int64
	if err := st.DB.Table(table).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func seed(t *testing.T, st *store.Store, cipher *secrets.Cipher, c *providers.Catalog) {
	t.Helper()
	logger, _ := newLogger()
	if err := catalog.Seed(context.Background(), st, cipher, c, logger); err != nil {
		t.Fatalf("Seed: %v", err)
	}
}

func keyIDs(t *testing.T, st *store.Store) []string {
	t.Helper()
	keys, err := st.AllProviderKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range keys {
		ids = append(ids, k.ProviderID+":"+k.Label+":"+k.ID)
	}
	return ids
}

func candidateIDs(t *testing.T, st *store.Store) []int64 {
	t.Helper()
	var ids []int64
	if err := st.DB.Model(&models.LogicalModelCandidate{}).Order("id").Pluck("id", &ids).Error; err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestSeedIdempotent(t *testing.T) {
	st := testenv.Store(t)
	cipher := newCipher(t, masterKey)
	c := envCatalog(t, providersFile)

	seed(t, st, cipher, c)
	keysBefore := keyIDs(t, st)
	candidatesBefore := candidateIDs(t, st)
	seed(t, st, cipher, envCatalog(t, providersFile))

	want := map[string]int64{"providers": 3, "provider_keys": 2, "logical_models": 3, "logical_model_candidates": 5}
	for table, n := range want {
		if got := count(t, st, table); got != n {
			t.Errorf("%s has %d rows after seeding twice, want %d", table, got, n)
		}
	}
	if got := keyIDs(t, st); !slices.Equal(got, keysBefore) {
		t.Errorf("keys changed on the second seed: %v, then %v", keysBefore, got)
	}
	if got := candidateIDs(t, st); !slices.Equal(got, candidatesBefore) {
		t.Errorf("candidates were rewritten on the second seed: ids %v, then %v", candidatesBefore, got)
	}

	rows, err := st.ListProviders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if row.Source != models.SourceSeed {
			t.Errorf("provider %s has source %q, want seed", row.ID, row.Source)
		}
	}
	key, err := st.ProviderKeyByLabel(context.Background(), "primary", catalog.SeedKeyLabel)
	if err != nil {
		t.Fatalf("seeded key of primary: %v", err)
	}
	if key.SecretLast4 != "wxyz" {
		t.Errorf("secret_last4 = %q, want wxyz", key.SecretLast4)
	}
}

func TestSeedStoresSecretsEncrypted(t *testing.T) {
	st := testenv.Store(t)
	seed(t, st, newCipher(t, masterKey), envCatalog(t, providersFile))

	rows, err := st.DB.Raw("SELECT * FROM provider_keys").Rows()
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	columns, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
		values := make([]any, len(columns))
		pointers := make([]any, len(columns))
		for i := range values {
			pointers[i] = &values[i]
		}
		if err := rows.Scan(pointers...); err != nil {
			t.Fatal(err)
		}
		var line strings.Builder
		for _, v := range values {
			// Bytes are written as they are, so that a plaintext secret in
			// the BLOB or BYTEA column would show.
			if b, ok := v.([]byte); ok {
				line.Write(b)
			} else {
				fmt.Fprint(&line, v)
			}
			line.WriteByte('|')
		}
		raw := line.String()
		for _, secret := range []string{fileSecret, envSecret} {
			if strings.Contains(raw, secret) || strings.Contains(raw, secret[:len(secret)-4]) {
				t.Errorf("a raw provider_keys row contains a secret: %s", raw)
			}
		}
	}
	if n != 2 {
		t.Errorf("found %d provider_keys rows, want 2", n)
	}
}

func TestSeedLeavesAPIRowsAlone(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	cipher := newCipher(t, masterKey)
	logger, _ := newLogger()
	admin := &catalog.Admin{Store: st, Cipher: cipher, Logger: logger}

	seed(t, st, cipher, envCatalog(t, providersFile))
	id, baseURL, secret := "custom", "http://127.0.0.1:9/custom/v1", "sk-custom-0123456789-abcd"
	if _, err := admin.CreateProvider(ctx, catalog.ProviderInput{ID: &id, BaseURL: &baseURL}); err != nil {
		t.Fatal(err)
	}
	label := "main"
	if _, err := admin.CreateKey(ctx, id, catalog.KeyInput{Label: &label, Secret: &secret}); err != nil {
		t.Fatal(err)
	}
	name := "custom-model"
	candidates := []catalog.CandidateInput{{ProviderID: id, Model: "m"}, {ProviderID: "primary", Model: "p"}}
	if _, err := admin.CreateModel(ctx, catalog.ModelInput{Name: &name, Candidates: &candidates}); err != nil {
		t.Fatal(err)
	}
	providerBefore, err := st.Provider(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	modelBefore, err := st.LogicalModel(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	keysBefore := keyIDs(t, st)

	seed(t, st, cipher, envCatalog(t, providersFile))

	providerAfter, err := st.Provider(ctx, id)
	if err != nil {
		t.Fatalf("API provider after seeding: %v", err)
	}
	if providerAfter.Source != models.SourceAPI || !providerAfter.UpdatedAt.Equal(providerBefore.UpdatedAt) || providerAfter.BaseURL != baseURL {
		t.Errorf("seeding changed the API provider: %+v, then %+v", providerBefore, providerAfter)
	}
	modelAfter, err := st.LogicalModel(ctx, name)
	if err != nil {
		t.Fatalf("API model after seeding: %v", err)
	}
	if modelAfter.Source != models.SourceAPI || !modelAfter.UpdatedAt.Equal(modelBefore.UpdatedAt) {
		t.Errorf("seeding changed the API model row: %+v, then %+v", modelBefore.LogicalModelRow, modelAfter.LogicalModelRow)
	}
	if len(modelAfter.Candidates) != 2 || modelAfter.Candidates[0].ID != modelBefore.Candidates[0].ID {
		t.Errorf("seeding changed the API model's candidates: %+v", modelAfter.Candidates)
	}
	if got := keyIDs(t, st); !slices.Equal(got, keysBefore) {
		t.Errorf("seeding changed the keys: %v, then %v", keysBefore, got)
	}
}

func TestSeedFileIsAuthoritative(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	cipher := newCipher(t, masterKey)
	logger, _ := newLogger()
	admin := &catalog.Admin{Store: st, Cipher: cipher, Logger: logger}

	seed(t, st, cipher, envCatalog(t, providersFile))
	disabled := false
	if _, err := admin.UpdateProvider(ctx, "backup", catalog.ProviderInput{Enabled: &disabled}); err != nil {
		t.Fatal(err)
	}
	key, err := st.ProviderKeyByLabel(ctx, "primary", catalog.SeedKeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DisableProviderKey(ctx, key.ID, "upstream_auth: HTTP 401"); err != nil {
		t.Fatal(err)
	}

	// Re-seeding the same secret keeps the key disabled, because enabling it
	// again would only repeat the 401.
	seed(t, st, cipher, envCatalog(t, providersFile))
	key, err = st.ProviderKeyByLabel(ctx, "primary", catalog.SeedKeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	if key.Enabled {
		t.Error("re-seeding the same secret enabled a key that the router disabled")
	}

	changed := strings.ReplaceAll(providersFile, "http://127.0.0.1:9/v1\n", "http://127.0.0.1:10/v1\n")
	changed = strings.ReplaceAll(changed, fileSecret, "sk-rotated-secret-0123456789-mnop")
	changed = strings.ReplaceAll(changed, "priority: 2", "priority: 7")
	seed(t, st, cipher, envCatalog(t, changed))

	primary, err := st.Provider(ctx, "primary")
	if err != nil {
		t.Fatal(err)
	}
	if primary.BaseURL != "http://127.0.0.1:10/v1" {
		t.Errorf("base_url = %q, want the file's new value", primary.BaseURL)
	}
	backup, err := st.Provider(ctx, "backup")
	if err != nil {
		t.Fatal(err)
	}
	if backup.Enabled {
		t.Error("seeding enabled a provider that an admin disabled")
	}

	rotated, err := st.ProviderKeyByLabel(ctx, "primary", catalog.SeedKeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.ID != key.ID {
		t.Errorf("the rotated key got a new id %s, want %s", rotated.ID, key.ID)
	}
	if !rotated.Enabled || rotated.DisabledReason != "" {
		t.Errorf("the rotated key is enabled=%v with reason %q, want enabled and no reason", rotated.Enabled, rotated.DisabledReason)
	}
	plain, err := cipher.Open(rotated.SecretCiphertext)
	if err != nil {
		t.Fatal(err)
	}
	if string(plain) != "sk-rotated-secret-0123456789-mnop" {
		t.Error("the stored key does not hold the file's new secret")
	}
	if rotated.SecretLast4 != "mnop" {
		t.Errorf("secret_last4 = %q, want mnop", rotated.SecretLast4)
	}

	gpt, err := st.LogicalModel(ctx, "gpt")
	if err != nil {
		t.Fatal(err)
	}
	if len(gpt.Candidates) == 0 || gpt.Candidates[0].Priority != 7 {
		t.Errorf("candidates of gpt = %+v, want the file's new priority 7 first", gpt.Candidates)
	}
}

func TestSeedRejectsCredentialHeaders(t *testing.T) {
	for _, header := range []string{"Authorization", "authorization", "X-Goog-Api-Key", "Host"} {
		t.Run(header, func(t *testing.T) {
			st := testenv.Store(t)
			file := fmt.Sprintf("providers:\n  - id: p\n    base_url: http://127.0.0.1:9/v1\n    headers: {%q: value}\n    models: [m]\n", header)
			logger, _ := newLogger()
			err := catalog.Seed(context.Background(), st, newCipher(t, masterKey), envCatalog(t, file), logger)
			if err == nil {
				t.Fatal("Seed accepted a credential header")
			}
			if strings.Contains(err.Error(), "value") {
				t.Errorf("the error repeats the header value: %v", err)
			}
			if n := count(t, st, "providers"); n != 0 {
				t.Errorf("%d providers written although Seed failed", n)
			}
		})
	}
}

func TestSeedIfEmpty(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	cipher := newCipher(t, masterKey)
	logger, _ := newLogger()

	mock := providers.NewCatalog()
	err := mock.AddProvider(providers.Provider{ID: "mock", BaseURL: "http://127.0.0.1:9/v1"},
		providers.LogicalModel{Name: "mock-gpt", Candidates: []providers.Candidate{{Model: "mock-gpt"}}})
	if err != nil {
		t.Fatal(err)
	}

	seeded, err := catalog.SeedIfEmpty(ctx, st, cipher, mock, logger)
	if err != nil || !seeded {
		t.Fatalf("SeedIfEmpty on an empty database = %v, %v; want true", seeded, err)
	}
	if err := st.DeleteLogicalModel(ctx, "mock-gpt"); err != nil {
		t.Fatal(err)
	}
	seed(t, st, cipher, envCatalog(t, providersFile))

	seeded, err = catalog.SeedIfEmpty(ctx, st, cipher, mock, logger)
	if err != nil || seeded {
		t.Errorf("SeedIfEmpty with logical models present = %v, %v; want false", seeded, err)
	}
	if _, err := st.LogicalModel(ctx, "mock-gpt"); err == nil {
		t.Error("SeedIfEmpty wrote the fallback although the database had logical models")
	}
}

// runtimeView flattens a catalog for comparison: providers with their keys'
// secrets in place of APIKey, and models in routing order.
func runtimeView(c *providers.Catalog) (map[string]string, map[string]string) {
	ps := map[string]string{}
	for _, p := range c.Providers() {
		secretsOf := []string{}
		if p.APIKey != "" {
			secretsOf = append(secretsOf, p.APIKey)
		}
		for _, k := range p.Keys {
			secretsOf = append(secretsOf, k.Secret)
		}
		ps[p.ID] = fmt.Sprintf("%s|%s|%s|%d|%v|%v|%v", p.Name, p.Kind, p.BaseURL, p.TimeoutSeconds, p.Headers, secretsOf, p.Disabled)
	}
	ms := map[string]string{}
	for _, m := range c.Models() {
		ms[m.Name] = fmt.Sprintf("%v|%v", m.Capabilities, m.Candidates)
	}
	return ps, ms
}

func TestLoadMatchesSeededCatalog(t *testing.T) {
	st := testenv.Store(t)
	cipher := newCipher(t, masterKey)
	c := envCatalog(t, providersFile)
	wantProviders, wantModels := runtimeView(c)
	seed(t, st, cipher, c)

	logger, logs := newLogger()
	loaded, err := catalog.Load(context.Background(), st, cipher, logger)
	if err != nil {
		t.Fatal(err)
	}
	gotProviders, gotModels := runtimeView(loaded)

	// The file leaves the provider name of "backup" empty, and the table
	// stores the id in its place.
	wantProviders["backup"] = strings.Replace(wantProviders["backup"], "|gemini", "backup|gemini", 1)
	for id, want := range wantProviders {
		if gotProviders[id] != want {
			t.Errorf("provider %s:\n got %s\nwant %s", id, gotProviders[id], want)
		}
	}
	if len(gotProviders) != len(wantProviders) {
		t.Errorf("loaded %d providers, want %d", len(gotProviders), len(wantProviders))
	}
	for name, want := range wantModels {
		if gotModels[name] != want {
			t.Errorf("model %s:\n got %s\nwant %s", name, gotModels[name], want)
		}
	}
	if len(gotModels) != len(wantModels) {
		t.Errorf("loaded %d models, want %d", len(gotModels), len(wantModels))
	}
	if p, _ := loaded.Provider("primary"); p.APIKey != "" || len(p.Keys) != 1 || p.Keys[0].Label != catalog.SeedKeyLabel {
		t.Errorf("primary has APIKey set=%v and keys %d; want its secret only as key %q", p.APIKey != "", len(p.Keys), catalog.SeedKeyLabel)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("Load logged errors:\n%s", logs)
	}
}

func TestLoadDisabledProvidersAndKeys(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	cipher := newCipher(t, masterKey)
	seed(t, st, cipher, envCatalog(t, providersFile))
	logger, _ := newLogger()
	admin := &catalog.Admin{Store: st, Cipher: cipher, Logger: logger}

	disabled := false
	if _, err := admin.UpdateProvider(ctx, "backup", catalog.ProviderInput{Enabled: &disabled}); err != nil {
		t.Fatal(err)
	}
	label, second := "second", "sk-second-0123456789-efgh"
	if _, err := admin.CreateKey(ctx, "primary", catalog.KeyInput{Label: &label, Secret: &second}); err != nil {
		t.Fatal(err)
	}
	seeded, err := st.ProviderKeyByLabel(ctx, "primary", catalog.SeedKeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DisableProviderKey(ctx, seeded.ID, "upstream_auth: HTTP 401"); err != nil {
		t.Fatal(err)
	}
	openaiKey, err := st.ProviderKeyByLabel(ctx, "openai", catalog.SeedKeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DisableProviderKey(ctx, openaiKey.ID, "upstream_auth: HTTP 403"); err != nil {
		t.Fatal(err)
	}

	loaded, err := catalog.Load(ctx, st, cipher, logger)
	if err != nil {
		t.Fatal(err)
	}
	backup, _ := loaded.Provider("backup")
	if !backup.Disabled {
		t.Error("disabled provider backup is not marked Disabled")
	}
	primary, _ := loaded.Provider("primary")
	if primary.Disabled {
		t.Error("primary is marked Disabled although one key is enabled")
	}
	if len(primary.Keys) != 1 || primary.Keys[0].Secret != second {
		t.Errorf("primary keys = %d, want only the enabled key %q", len(primary.Keys), label)
	}
	openai, _ := loaded.Provider("openai")
	if !openai.Disabled {
		t.Error("openai, whose only key is disabled, is not marked Disabled")
	}

	candidates, err := loaded.Candidates("gpt", providers.CapabilityChat)
	if err != nil {
		t.Fatal(err)
	}
	if len(candidates) != 1 || candidates[0].ProviderID != "primary" {
		t.Errorf("candidates of gpt = %+v, want only primary's", candidates)
	}
}

func TestLoadWrongMasterKey(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	seed(t, st, newCipher(t, masterKey), envCatalog(t, providersFile))
	key, err := st.ProviderKeyByLabel(ctx, "primary", catalog.SeedKeyLabel)
	if err != nil {
		t.Fatal(err)
	}

	redisURL, prefix := testenv.Redis(t)
	rdb := newRedis(t, redisURL)
	logger, logs := newLogger()
	c := providers.NewCatalog()
	reloader := catalog.NewReloader(c, catalog.ReloaderOptions{
		Store: st, Cipher: newCipher(t, otherMasterKey), Redis: rdb, Prefix: prefix, Logger: logger,
	})
	for range 3 {
		if err := reloader.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}

	primary, ok := c.Provider("primary")
	if !ok {
		t.Fatal("provider primary is missing from the catalog")
	}
	if len(primary.Keys) != 0 {
		t.Errorf("primary has %d keys, want the undecryptable key skipped", len(primary.Keys))
	}
	if !primary.Disabled {
		t.Error("primary, whose only key does not decrypt, is not marked Disabled")
	}
	if _, ok := c.Model("gpt"); !ok {
		t.Error("logical model gpt is missing although only keys failed")
	}

	out := logs.String()
	if n := strings.Count(out, "key_id="+key.ID); n != 1 {
		t.Errorf("the key id appears in %d log lines over 3 reloads, want 1:\n%s", n, out)
	}
	for _, secret := range []string{fileSecret, envSecret} {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains a secret:\n%s", out)
		}
	}
}

func newRedis(t *testing.T, url string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// process is one service process as far as the catalog is concerned: its
// own database handle, Redis client, catalog and reloader.
type process struct {
	store    *store.Store
	catalog  *providers.Catalog
	reloader *catalog.Reloader
	admin    *catalog.Admin
}

func startProcess(t *testing.T, databaseURL, sqlitePath, redisURL, prefix string, interval time.Duration) *process {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{DatabaseURL: databaseURL, SQLitePath: sqlitePath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}

	logger, _ := newLogger()
	cipher := newCipher(t, masterKey)
	c := providers.NewCatalog()
	reloader := catalog.NewReloader(c, catalog.ReloaderOptions{
		Store: st, Cipher: cipher, Redis: newRedis(t, redisURL), Prefix: prefix, Interval: interval, Logger: logger,
	})
	if err := reloader.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := reloader.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reloader.Stop)
	return &process{
		store: st, catalog: c, reloader: reloader,
		admin: &catalog.Admin{Store: st, Cipher: cipher, Changed: reloader.Notify, Logger: logger},
	}
}

// waitUntil polls cond for up to timeout and reports how long it took.
func waitUntil(timeout time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < timeout {
		if cond() {
			return time.Since(start), true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return timeout, cond()
}

func TestReloadAcrossProcesses(t *testing.T) {
	databaseURL, sqlitePath := testenv.DatabaseURL(t)
	redisURL, prefix := testenv.Redis(t)
	// No periodic reload, so only the notification can carry the change.
	writer := startProcess(t, databaseURL, sqlitePath, redisURL, prefix, 0)
	reader := startProcess(t, databaseURL, sqlitePath, redisURL, prefix, 0)
	ctx := context.Background()

	id, baseURL := "shared", "http://127.0.0.1:9/v1"
	if _, err := writer.admin.CreateProvider(ctx, catalog.ProviderInput{ID: &id, BaseURL: &baseURL}); err != nil {
		t.Fatal(err)
	}
	name := "shared-model"
	candidates := []catalog.CandidateInput{{ProviderID: id, Model: "upstream"}}
	if _, err := writer.admin.CreateModel(ctx, catalog.ModelInput{Name: &name, Candidates: &candidates}); err != nil {
		t.Fatal(err)
	}

	if _, ok := writer.catalog.Model(name); !ok {
		t.Error("the writing process does not see its own change right after the write")
	}
	took, ok := waitUntil(time.Second, func() bool {
		_, ok := reader.catalog.Model(name)
		return ok
	})
	if !ok {
		t.Fatalf("the other process did not see the new logical model within 1s")
	}
	t.Logf("the other process saw the new model after %s", took)

	if err := writer.admin.DeleteModel(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitUntil(time.Second, func() bool {
		_, ok := reader.catalog.Model(name)
		return !ok
	}); !ok {
		t.Error("the other process still lists the deleted logical model after 1s")
	}
}

func TestReloadInterval(t *testing.T) {
	databaseURL, sqlitePath := testenv.DatabaseURL(t)
	redisURL, prefix := testenv.Redis(t)
	reader := startProcess(t, databaseURL, sqlitePath, redisURL, prefix, 100*time.Millisecond)
	ctx := context.Background()

	// A write without a notification, as when the publish failed.
	row := &models.ProviderRow{ID: "quiet", Name: "quiet", Kind: "openai", BaseURL: "http://127.0.0.1:9/v1", Enabled: true, Source: models.SourceAPI}
	if err := reader.store.CreateProvider(ctx, row); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitUntil(2*time.Second, func() bool {
		_, ok := reader.catalog.Provider("quiet")
		return ok
	}); !ok {
		t.Error("the periodic reload did not pick up an unannounced provider within 2s")
	}
}

func TestReloaderStopEndsFollowing(t *testing.T) {
	databaseURL, sqlitePath := testenv.DatabaseURL(t)
	redisURL, prefix := testenv.Redis(t)
	writer := startProcess(t, databaseURL, sqlitePath, redisURL, prefix, 0)
	reader := startProcess(t, databaseURL, sqlitePath, redisURL, prefix, 0)
	reader.reloader.Stop()

	id, baseURL := "late", "http://127.0.0.1:9/v1"
	if _, err := writer.admin.CreateProvider(context.Background(), catalog.ProviderInput{ID: &id, BaseURL: &baseURL}); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitUntil(300*time.Millisecond, func() bool {
		_, ok := reader.catalog.Provider(id)
		return ok
	}); ok {
		t.Error("a stopped reloader still applied a notification")
	}
}

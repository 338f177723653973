package providers

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
)

const catalogSecret = "sk-catalog-secret-value"

// testEnv returns an env function over vars and a readFile function over
// files, so that LoadCatalog touches neither the process environment nor
// the disk.
func testEnv(vars map[string]string, files map[string]string) (func(string) string, func(string) ([]byte, error)) {
	env := func(name string) string { return vars[name] }
	readFile := func(path string) ([]byte, error) {
		content, ok := files[path]
		if !ok {
			return nil, fmt.Errorf("open %s: %w", path, fs.ErrNotExist)
		}
		return []byte(content), nil
	}
	return env, readFile
}

func loadFromFile(t *testing.T, path, content string) (*Catalog, error) {
	t.Helper()

	env, readFile := testEnv(map[string]string{"PROVIDERS_FILE": path}, map[string]string{path: content})
	return LoadCatalog(env, readFile)
}

const yamlCatalog = `
providers:
  - id: primary
    name: Primary
    base_url: https://primary.example/v1
    api_key: ` + catalogSecret + `
    headers:
      X-Org: acme
    timeout_seconds: 30
    models: [shared-model, primary-only]
  - id: backup
    kind: gemini
    base_url: http://127.0.0.1:9000/v1beta/openai
    models:
      - shared-model
logical_models:
  - name: smart
    candidates:
      - provider_id: primary
        model: gpt-4o
        priority: 10
      - provider_id: backup
        model: gemini-pro
        weight: 0
  - name: painter
    capabilities: [image_generation]
    candidates:
      - provider_id: primary
        model: dall-e-3
        weight: 3
`

const jsonCatalog = `{
  "providers": [
    {"id": "primary", "name": "Primary", "base_url": "https://primary.example/v1", "api_key": "` + catalogSecret + `",
     "headers": {"X-Org": "acme"}, "timeout_seconds": 30, "models": ["shared-model", "primary-only"]},
    {"id": "backup", "kind": "gemini", "base_url": "http://127.0.0.1:9000/v1beta/openai", "models": ["shared-model"]}
  ],
  "logical_models": [
    {"name": "smart", "candidates": [
      {"provider_id": "primary", "model": "gpt-4o", "priority": 10},
      {"provider_id": "backup", "model": "gemini-pro", "weight": 0}
    ]},
    {"name": "painter", "capabilities": ["image_generation"], "candidates": [
      {"provider_id": "primary", "model": "dall-e-3", "weight": 3}
    ]}
  ]
}`

func TestLoadCatalogFile(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		content string
	}{
		{name: "yaml", path: "/etc/aihigress/providers.yaml", content: yamlCatalog},
		{name: "yml", path: "providers.yml", content: yamlCatalog},
		{name: "json", path: "providers.json", content: jsonCatalog},
		{name: "uppercase extension", path: "PROVIDERS.JSON", content: jsonCatalog},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			catalog, err := loadFromFile(t, tt.path, tt.content)
			if err != nil {
				t.Fatalf("LoadCatalog() error = %v", err)
			}

			primary, ok := catalog.Provider("primary")
			if !ok {
				t.Fatal(`Provider("primary") not found`)
			}
			wantPrimary := Provider{
				ID: "primary", Name: "Primary", Kind: "openai", BaseURL: "https://primary.example/v1",
				APIKey: catalogSecret, Headers: map[string]string{"X-Org": "acme"}, TimeoutSeconds: 30,
			}
			if !reflect.DeepEqual(primary, wantPrimary) {
				t.Errorf("primary = %+v, want %+v", primary, wantPrimary)
			}

			backup, ok := catalog.Provider("backup")
			if !ok {
				t.Fatal(`Provider("backup") not found`)
			}
			if backup.Kind != "gemini" {
				t.Errorf("backup kind = %q, want gemini", backup.Kind)
			}

			wantModels := []LogicalModel{
				{
					Name:         "painter",
					Capabilities: []Capability{CapabilityImageGeneration},
					Candidates:   []Candidate{{ProviderID: "primary", Model: "dall-e-3", Weight: 3}},
				},
				{
					Name:         "primary-only",
					Capabilities: []Capability{CapabilityChat},
					Candidates:   []Candidate{{ProviderID: "primary", Model: "primary-only", Weight: 1}},
				},
				{
					Name:         "shared-model",
					Capabilities: []Capability{CapabilityChat},
					Candidates: []Candidate{
						{ProviderID: "backup", Model: "shared-model", Weight: 1},
						{ProviderID: "primary", Model: "shared-model", Weight: 1},
					},
				},
				{
					Name:         "smart",
					Capabilities: []Capability{CapabilityChat},
					Candidates: []Candidate{
						{ProviderID: "primary", Model: "gpt-4o", Priority: 10, Weight: 1},
						{ProviderID: "backup", Model: "gemini-pro", Weight: 0},
					},
				},
			}
			if got := catalog.Models(); !reflect.DeepEqual(got, wantModels) {
				t.Errorf("Models() =\n%+v\nwant\n%+v", got, wantModels)
			}
		})
	}
}

func TestLoadCatalogEmpty(t *testing.T) {
	tests := []struct {
		name    string
		vars    map[string]string
		files   map[string]string
		wantErr bool
	}{
		{name: "nothing set", vars: nil},
		{name: "empty yaml file", vars: map[string]string{"PROVIDERS_FILE": "p.yaml"}, files: map[string]string{"p.yaml": "  \n"}},
		{name: "key without models", vars: map[string]string{"OPENAI_API_KEY": catalogSecret}},
		{name: "models list of blanks", vars: map[string]string{"OPENAI_API_KEY": catalogSecret, "OPENAI_MODELS": " , ,"}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, readFile := testEnv(tt.vars, tt.files)

			catalog, err := LoadCatalog(env, readFile)
			if err != nil {
				t.Fatalf("LoadCatalog() error = %v", err)
			}

			if !catalog.Empty() {
				t.Errorf("Empty() = false, models %+v", catalog.Models())
			}
			if _, ok := catalog.Provider("openai"); ok {
				t.Error(`provider "openai" added without models`)
			}
		})
	}
}

func TestLoadCatalogOpenAIEnv(t *testing.T) {
	tests := []struct {
		name        string
		vars        map[string]string
		wantBaseURL string
		wantAPIKey  string
		wantModels  map[string][]Capability
	}{
		{
			name:        "key only uses the OpenAI base URL",
			vars:        map[string]string{"OPENAI_API_KEY": catalogSecret + "\n", "OPENAI_MODELS": " gpt-4o-mini, ,gpt-4o ,, "},
			wantBaseURL: DefaultOpenAIBaseURL,
			wantAPIKey:  catalogSecret,
			wantModels:  map[string][]Capability{"gpt-4o-mini": {CapabilityChat}, "gpt-4o": {CapabilityChat}},
		},
		{
			name:        "base URL without key",
			vars:        map[string]string{"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1", "OPENAI_MODELS": "llama3"},
			wantBaseURL: "http://127.0.0.1:11434/v1",
			wantModels:  map[string][]Capability{"llama3": {CapabilityChat}},
		},
		{
			name: "image models",
			vars: map[string]string{
				"OPENAI_API_KEY":      catalogSecret,
				"OPENAI_MODELS":       "gpt-4o,gpt-image-1",
				"OPENAI_IMAGE_MODELS": "gpt-image-1, dall-e-3",
			},
			wantBaseURL: DefaultOpenAIBaseURL,
			wantAPIKey:  catalogSecret,
			wantModels: map[string][]Capability{
				"gpt-4o":      {CapabilityChat},
				"gpt-image-1": {CapabilityChat, CapabilityImageGeneration},
				"dall-e-3":    {CapabilityImageGeneration},
			},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, readFile := testEnv(tt.vars, nil)

			catalog, err := LoadCatalog(env, readFile)
			if err != nil {
				t.Fatalf("LoadCatalog() error = %v", err)
			}

			provider, ok := catalog.Provider("openai")
			if !ok {
				t.Fatal(`Provider("openai") not found`)
			}
			if provider.BaseURL != tt.wantBaseURL {
				t.Errorf("BaseURL = %q, want %q", provider.BaseURL, tt.wantBaseURL)
			}
			if provider.APIKey != tt.wantAPIKey {
				t.Errorf("APIKey = %q, want %q", provider.APIKey, tt.wantAPIKey)
			}
			if provider.Kind != "openai" {
				t.Errorf("Kind = %q, want openai", provider.Kind)
			}

			models := catalog.Models()
			if len(models) != len(tt.wantModels) {
				t.Errorf("got %d models, want %d: %+v", len(models), len(tt.wantModels), models)
			}
			for _, model := range models {
				if !reflect.DeepEqual(model.Capabilities, tt.wantModels[model.Name]) {
					t.Errorf("model %q capabilities = %v, want %v", model.Name, model.Capabilities, tt.wantModels[model.Name])
				}
				wantCandidates := []Candidate{{ProviderID: "openai", Model: model.Name, Weight: 1}}
				if !reflect.DeepEqual(model.Candidates, wantCandidates) {
					t.Errorf("model %q candidates = %+v, want %+v", model.Name, model.Candidates, wantCandidates)
				}
			}
		})
	}
}

func TestLoadCatalogFileAndEnv(t *testing.T) {
	env, readFile := testEnv(
		map[string]string{
			"PROVIDERS_FILE":  "p.yaml",
			"OPENAI_BASE_URL": "http://127.0.0.1:8080/v1",
			"OPENAI_MODELS":   "shared-model,env-only",
		},
		map[string]string{"p.yaml": yamlCatalog},
	)

	catalog, err := LoadCatalog(env, readFile)
	if err != nil {
		t.Fatalf("LoadCatalog() error = %v", err)
	}

	candidates, err := catalog.Candidates("shared-model", CapabilityChat)
	if err != nil {
		t.Fatalf("Candidates() error = %v", err)
	}
	want := []Candidate{
		{ProviderID: "backup", Model: "shared-model", Weight: 1},
		{ProviderID: "openai", Model: "shared-model", Weight: 1},
		{ProviderID: "primary", Model: "shared-model", Weight: 1},
	}
	if !reflect.DeepEqual(candidates, want) {
		t.Errorf("candidates = %+v, want %+v", candidates, want)
	}

	if _, ok := catalog.Model("env-only"); !ok {
		t.Error(`Model("env-only") not found`)
	}
}

func TestLoadCatalogErrors(t *testing.T) {
	// provider builds a YAML file with one provider made of the given field
	// lines. model builds a file with a valid provider and one logical model
	// made of the given field lines.
	provider := func(lines string) string {
		return "providers:\n  - " + strings.ReplaceAll(strings.TrimSpace(lines), "\n", "\n    ") + "\n"
	}
	validProvider := provider("id: p\nbase_url: https://p.example/v1\napi_key: " + catalogSecret)
	model := func(lines string) string {
		return validProvider + "logical_models:\n  - " + strings.ReplaceAll(strings.TrimSpace(lines), "\n", "\n    ") + "\n"
	}

	tests := []struct {
		name    string
		path    string
		content string
		vars    map[string]string
		want    string
	}{
		{name: "missing file", path: "absent.yaml", want: `read PROVIDERS_FILE "absent.yaml"`},
		{name: "unsupported extension", path: "p.toml", content: "x = 1", want: `unsupported extension ".toml"`},
		{name: "invalid yaml", path: "p.yaml", content: "providers: [", want: "parse PROVIDERS_FILE"},
		{name: "invalid json", path: "p.json", content: `{"providers": [}`, want: "parse PROVIDERS_FILE"},
		{name: "trailing json", path: "p.json", content: `{} {}`, want: "unexpected data"},
		{name: "unknown yaml field", path: "p.yaml", content: provider("id: p\nbaseurl: https://p.example/v1"), want: "baseurl"},
		{name: "unknown json field", path: "p.json", content: `{"providers": [{"id": "p", "base_url": "https://p.example", "apikey": "x"}]}`, want: "apikey"},
		{name: "empty id", path: "p.yaml", content: provider("id: ''\nbase_url: https://p.example/v1"), want: `invalid provider id ""`},
		{name: "uppercase id", path: "p.yaml", content: provider("id: Main\nbase_url: https://p.example/v1"), want: `invalid provider id "Main"`},
		{name: "id starting with dash", path: "p.yaml", content: provider("id: -p\nbase_url: https://p.example/v1"), want: `invalid provider id "-p"`},
		{name: "id with space", path: "p.yaml", content: provider("id: 'a b'\nbase_url: https://p.example/v1"), want: `invalid provider id "a b"`},
		{
			name:    "duplicate id",
			path:    "p.yaml",
			content: "providers:\n  - {id: p, base_url: 'https://a.example'}\n  - {id: p, base_url: 'https://b.example'}\n",
			want:    `providers[1]: duplicate provider id "p"`,
		},
		{name: "invalid kind", path: "p.yaml", content: provider("id: p\nkind: anthropic\nbase_url: https://p.example/v1"), want: `invalid kind "anthropic"`},
		{name: "missing base_url", path: "p.yaml", content: provider("id: p"), want: "missing base_url"},
		{name: "file base_url", path: "p.yaml", content: provider("id: p\nbase_url: file:///etc/passwd"), want: `invalid base_url "file:///etc/passwd"`},
		{name: "ftp base_url", path: "p.yaml", content: provider("id: p\nbase_url: ftp://p.example/v1"), want: `invalid base_url "ftp://p.example/v1"`},
		{name: "base_url without host", path: "p.yaml", content: provider("id: p\nbase_url: 'http:///v1'"), want: "missing host"},
		{name: "base_url without scheme", path: "p.yaml", content: provider("id: p\nbase_url: p.example/v1"), want: `invalid base_url "p.example/v1"`},
		{name: "unparseable base_url", path: "p.yaml", content: provider("id: p\nbase_url: 'http://p example'"), want: "invalid base_url"},
		{name: "negative timeout", path: "p.yaml", content: provider("id: p\nbase_url: https://p.example\ntimeout_seconds: -1"), want: "invalid timeout_seconds -1"},
		{name: "invalid header name", path: "p.yaml", content: provider("id: p\nbase_url: https://p.example\nheaders: {'X Bad': v}"), want: `invalid header name "X Bad"`},
		{name: "header value with newline", path: "p.yaml", content: provider("id: p\nbase_url: https://p.example\nheaders: {X-Key: \"a\\nb\"}"), want: `value of header "X-Key"`},
		{name: "api key with newline", path: "p.yaml", content: provider("id: p\nbase_url: https://p.example\napi_key: \"" + catalogSecret + "\\n\""), want: "api_key contains a control character"},
		{name: "unknown candidate provider", path: "p.yaml", content: model("name: m\ncandidates: [{provider_id: ghost, model: x}]"), want: `unknown provider "ghost"`},
		{name: "candidate without model", path: "p.yaml", content: model("name: m\ncandidates: [{provider_id: p}]"), want: "has no model"},
		{name: "negative weight", path: "p.yaml", content: model("name: m\ncandidates: [{provider_id: p, model: x, weight: -2}]"), want: "invalid weight -2"},
		{name: "duplicate candidate", path: "p.yaml", content: model("name: m\ncandidates: [{provider_id: p, model: x}, {provider_id: p, model: x, priority: 1}]"), want: `duplicate candidate "x"`},
		{name: "no candidates", path: "p.yaml", content: model("name: m\ncandidates: []"), want: `logical model "m" has no candidates`},
		{name: "empty model name", path: "p.yaml", content: model("name: ''\ncandidates: [{provider_id: p, model: x}]"), want: "missing logical model name"},
		{name: "model name with spaces", path: "p.yaml", content: model("name: ' m'\ncandidates: [{provider_id: p, model: x}]"), want: `invalid logical model name " m"`},
		{name: "invalid capability", path: "p.yaml", content: model("name: m\ncapabilities: [embeddings]\ncandidates: [{provider_id: p, model: x}]"), want: `invalid capability "embeddings"`},
		{
			name:    "duplicate model name",
			path:    "p.yaml",
			content: validProvider + "logical_models:\n  - {name: m, candidates: [{provider_id: p, model: x}]}\n  - {name: m, candidates: [{provider_id: p, model: y}]}\n",
			want:    `logical_models[1]: duplicate logical model name "m"`,
		},
		{name: "empty shorthand model", path: "p.yaml", content: provider("id: p\nbase_url: https://p.example\nmodels: [a, '']"), want: "providers[0].models[1]: missing logical model name"},
		{name: "models without base URL or key", vars: map[string]string{"OPENAI_MODELS": "gpt-4o"}, want: "OPENAI_BASE_URL and OPENAI_API_KEY are both empty"},
		{name: "invalid OPENAI_BASE_URL", vars: map[string]string{"OPENAI_BASE_URL": "ftp://x", "OPENAI_MODELS": "m"}, want: `OPENAI_BASE_URL: provider "openai": invalid base_url "ftp://x"`},
		{
			name:    "openai id in file and env",
			path:    "p.yaml",
			content: provider("id: openai\nbase_url: https://p.example"),
			vars:    map[string]string{"OPENAI_API_KEY": catalogSecret, "OPENAI_MODELS": "gpt-4o"},
			want:    `provider id "openai" is defined in PROVIDERS_FILE and by the OPENAI_* variables`,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := map[string]string{}
			for name, value := range tt.vars {
				vars[name] = value
			}
			files := map[string]string{}
			if tt.path != "" {
				vars["PROVIDERS_FILE"] = tt.path
				if tt.content != "" {
					files[tt.path] = tt.content
				}
			}
			env, readFile := testEnv(vars, files)

			catalog, err := LoadCatalog(env, readFile)

			if err == nil {
				t.Fatalf("LoadCatalog() = %+v, want an error containing %q", catalog.Models(), tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), catalogSecret) {
				t.Errorf("error contains the API key: %q", err)
			}
		})
	}
}

func TestCandidatesOrder(t *testing.T) {
	catalog := NewCatalog()
	for _, id := range []string{"a", "b", "c"} {
		if err := catalog.AddProvider(Provider{ID: id, BaseURL: "https://" + id + ".example/v1"}); err != nil {
			t.Fatalf("AddProvider(%s) error = %v", id, err)
		}
	}
	err := catalog.AddProvider(Provider{ID: "d", BaseURL: "https://d.example/v1"}, LogicalModel{
		Name: "m",
		Candidates: []Candidate{
			{ProviderID: "c", Model: "x", Priority: 0, Weight: 5},
			{ProviderID: "b", Model: "y", Priority: 1, Weight: 1},
			{ProviderID: "a", Model: "z", Priority: 1, Weight: 1},
			{ProviderID: "a", Model: "w", Priority: 1, Weight: 1},
			{ProviderID: "d", Model: "v", Priority: 1, Weight: 3},
			{ProviderID: "c", Model: "low", Priority: -1, Weight: 9},
		},
	})
	if err != nil {
		t.Fatalf("AddProvider(d) error = %v", err)
	}

	got, err := catalog.Candidates("m", CapabilityChat)
	if err != nil {
		t.Fatalf("Candidates() error = %v", err)
	}

	want := []Candidate{
		{ProviderID: "d", Model: "v", Priority: 1, Weight: 3},
		{ProviderID: "a", Model: "w", Priority: 1, Weight: 1},
		{ProviderID: "a", Model: "z", Priority: 1, Weight: 1},
		{ProviderID: "b", Model: "y", Priority: 1, Weight: 1},
		{ProviderID: "c", Model: "x", Priority: 0, Weight: 5},
		{ProviderID: "c", Model: "low", Priority: -1, Weight: 9},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Candidates() =\n%+v\nwant\n%+v", got, want)
	}
}

func TestCandidatesErrors(t *testing.T) {
	catalog := NewCatalog()
	err := catalog.AddProvider(Provider{ID: "p", BaseURL: "https://p.example/v1"},
		LogicalModel{Name: "chat-only", Candidates: []Candidate{{Model: "x"}}})
	if err != nil {
		t.Fatalf("AddProvider() error = %v", err)
	}

	_, err = catalog.Candidates("missing", CapabilityChat)
	if !errors.Is(err, ErrUnknownModel) {
		t.Errorf("unknown model: error = %v, want ErrUnknownModel", err)
	}
	if err != nil && !strings.Contains(err.Error(), `"missing"`) {
		t.Errorf("unknown model: error = %q, want it to name the model", err)
	}

	_, err = catalog.Candidates("chat-only", CapabilityImageGeneration)
	if !errors.Is(err, ErrCapability) {
		t.Errorf("missing capability: error = %v, want ErrCapability", err)
	}
	if errors.Is(err, ErrUnknownModel) {
		t.Errorf("missing capability: error = %v also matches ErrUnknownModel", err)
	}
}

func TestCandidatesSkipsMissingProvider(t *testing.T) {
	catalog := NewCatalog()
	err := catalog.AddProvider(Provider{ID: "p", BaseURL: "https://p.example/v1"},
		LogicalModel{Name: "m", Candidates: []Candidate{{Model: "x"}}})
	if err != nil {
		t.Fatalf("AddProvider() error = %v", err)
	}
	// No public method removes a provider, so the test edits the map to
	// simulate a catalog whose candidate outlived its provider.
	model := catalog.models["m"]
	model.Candidates = append(model.Candidates, Candidate{ProviderID: "gone", Model: "y", Priority: 5, Weight: 1})
	catalog.models["m"] = model

	got, err := catalog.Candidates("m", CapabilityChat)
	if err != nil {
		t.Fatalf("Candidates() error = %v", err)
	}

	want := []Candidate{{ProviderID: "p", Model: "x", Weight: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Candidates() = %+v, want %+v", got, want)
	}
}

func TestAddProvider(t *testing.T) {
	catalog := NewCatalog()
	if !catalog.Empty() {
		t.Fatal("new catalog is not empty")
	}

	mock := Provider{ID: "mock", BaseURL: "http://127.0.0.1:9999/v1"}
	err := catalog.AddProvider(mock,
		LogicalModel{Name: "mock-chat", Candidates: []Candidate{{Model: "mock-1"}}},
		LogicalModel{Name: "mock-image", Capabilities: []Capability{CapabilityImageGeneration, CapabilityImageGeneration}, Candidates: []Candidate{{Model: "mock-img", Weight: 4}}},
	)
	if err != nil {
		t.Fatalf("AddProvider() error = %v", err)
	}

	if catalog.Empty() {
		t.Error("Empty() = true after AddProvider with models")
	}
	stored, ok := catalog.Provider("mock")
	if !ok {
		t.Fatal(`Provider("mock") not found`)
	}
	if stored.Kind != "openai" {
		t.Errorf("Kind = %q, want the default openai", stored.Kind)
	}

	chat, _ := catalog.Model("mock-chat")
	wantChat := LogicalModel{
		Name:         "mock-chat",
		Capabilities: []Capability{CapabilityChat},
		Candidates:   []Candidate{{ProviderID: "mock", Model: "mock-1", Weight: 1}},
	}
	if !reflect.DeepEqual(chat, wantChat) {
		t.Errorf("mock-chat = %+v, want %+v", chat, wantChat)
	}

	image, _ := catalog.Model("mock-image")
	wantImage := LogicalModel{
		Name:         "mock-image",
		Capabilities: []Capability{CapabilityImageGeneration},
		Candidates:   []Candidate{{ProviderID: "mock", Model: "mock-img", Weight: 4}},
	}
	if !reflect.DeepEqual(image, wantImage) {
		t.Errorf("mock-image = %+v, want %+v", image, wantImage)
	}
}

func TestAddProviderErrorsLeaveCatalogUnchanged(t *testing.T) {
	tests := []struct {
		name     string
		provider Provider
		models   []LogicalModel
		want     string
	}{
		{
			name:     "duplicate provider id",
			provider: Provider{ID: "existing", BaseURL: "https://x.example"},
			want:     `duplicate provider id "existing"`,
		},
		{
			name:     "invalid provider",
			provider: Provider{ID: "new", BaseURL: "ftp://x.example", APIKey: catalogSecret},
			want:     `invalid base_url "ftp://x.example"`,
		},
		{
			name:     "model name already in catalog",
			provider: Provider{ID: "new", BaseURL: "https://x.example"},
			models:   []LogicalModel{{Name: "taken", Candidates: []Candidate{{Model: "x"}}}},
			want:     `duplicate logical model name "taken"`,
		},
		{
			name:     "duplicate model name in call",
			provider: Provider{ID: "new", BaseURL: "https://x.example"},
			models: []LogicalModel{
				{Name: "fresh", Candidates: []Candidate{{Model: "x"}}},
				{Name: "fresh", Candidates: []Candidate{{Model: "y"}}},
			},
			want: `duplicate logical model name "fresh"`,
		},
		{
			name:     "unknown candidate provider after a valid model",
			provider: Provider{ID: "new", BaseURL: "https://x.example"},
			models: []LogicalModel{
				{Name: "fresh", Candidates: []Candidate{{Model: "x"}}},
				{Name: "broken", Candidates: []Candidate{{ProviderID: "ghost", Model: "y"}}},
			},
			want: `unknown provider "ghost"`,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			catalog := NewCatalog()
			err := catalog.AddProvider(Provider{ID: "existing", BaseURL: "https://e.example"},
				LogicalModel{Name: "taken", Candidates: []Candidate{{Model: "e"}}})
			if err != nil {
				t.Fatalf("setup AddProvider() error = %v", err)
			}
			before := catalog.Models()

			err = catalog.AddProvider(tt.provider, tt.models...)

			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("AddProvider() error = %v, want it to contain %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), catalogSecret) {
				t.Errorf("error contains the API key: %q", err)
			}
			if _, ok := catalog.Provider("new"); ok {
				t.Error(`failed AddProvider left provider "new" in the catalog`)
			}
			if after := catalog.Models(); !reflect.DeepEqual(after, before) {
				t.Errorf("models after failed AddProvider = %+v, want %+v", after, before)
			}
		})
	}
}

func TestCatalogReturnsCopies(t *testing.T) {
	catalog := NewCatalog()
	err := catalog.AddProvider(Provider{ID: "p", BaseURL: "https://p.example", Headers: map[string]string{"X-A": "1"}},
		LogicalModel{Name: "m", Candidates: []Candidate{{Model: "x"}}})
	if err != nil {
		t.Fatalf("AddProvider() error = %v", err)
	}

	provider, _ := catalog.Provider("p")
	provider.Headers["X-A"] = "changed"
	model, _ := catalog.Model("m")
	model.Candidates[0].Model = "changed"
	models := catalog.Models()
	models[0].Capabilities[0] = CapabilityImageGeneration

	again, _ := catalog.Provider("p")
	if again.Headers["X-A"] != "1" {
		t.Errorf("stored header = %q after caller edit, want 1", again.Headers["X-A"])
	}
	candidates, err := catalog.Candidates("m", CapabilityChat)
	if err != nil {
		t.Fatalf("Candidates() error = %v", err)
	}
	if candidates[0].Model != "x" {
		t.Errorf("stored candidate model = %q after caller edit, want x", candidates[0].Model)
	}
}

func TestCatalogConcurrentAccess(t *testing.T) {
	catalog := NewCatalog()
	err := catalog.AddProvider(Provider{ID: "base", BaseURL: "https://b.example"},
		LogicalModel{Name: "m", Candidates: []Candidate{{Model: "x"}}})
	if err != nil {
		t.Fatalf("AddProvider() error = %v", err)
	}

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			id := fmt.Sprintf("p%d", i)
			if err := catalog.AddProvider(Provider{ID: id, BaseURL: "https://p.example"},
				LogicalModel{Name: "model-" + id, Candidates: []Candidate{{Model: "x"}}}); err != nil {
				t.Errorf("AddProvider(%s) error = %v", id, err)
			}
		})
		wg.Go(func() {
			for range 50 {
				if _, err := catalog.Candidates("m", CapabilityChat); err != nil {
					t.Errorf("Candidates() error = %v", err)
				}
				catalog.Models()
				catalog.Provider("base")
				catalog.Empty()
			}
		})
	}
	wg.Wait()

	if got := len(catalog.Models()); got != 9 {
		t.Errorf("got %d models, want 9", got)
	}
}

func TestProviderRedaction(t *testing.T) {
	provider := Provider{
		ID:      "p",
		Kind:    "openai",
		BaseURL: "https://user:hunter2@p.example/v1",
		APIKey:  catalogSecret,
		Headers: map[string]string{"X-Api-Key": "header-secret"},
	}

	var logged bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logged, nil))
	logger.Info("provider loaded", "provider", provider)
	jsonLogged := bytes.Buffer{}
	slog.New(slog.NewJSONHandler(&jsonLogged, nil)).Info("provider loaded", "provider", provider)

	outputs := map[string]string{
		"text log": logged.String(),
		"json log": jsonLogged.String(),
		"%v":       fmt.Sprintf("%v", provider),
		"%+v":      fmt.Sprintf("%+v", provider),
		"%#v":      fmt.Sprintf("%#v", provider),
		"%s ptr":   fmt.Sprintf("%s", &provider),
	}
	for name, output := range outputs {
		for _, secret := range []string{catalogSecret, "header-secret", "hunter2"} {
			if strings.Contains(output, secret) {
				t.Errorf("%s output contains %q: %s", name, secret, output)
			}
		}
		if !strings.Contains(output, redactedKey) {
			t.Errorf("%s output = %s, want the key shown as %s", name, output, redactedKey)
		}
		if !strings.Contains(output, "X-Api-Key") {
			t.Errorf("%s output = %s, want the header name", name, output)
		}
	}
}

package providers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// DefaultOpenAIBaseURL is the base URL of the "openai" provider when
// OPENAI_API_KEY is set and OPENAI_BASE_URL is not.
const DefaultOpenAIBaseURL = "https://api.openai.com/v1"

// catalogFile is the layout of PROVIDERS_FILE.
type catalogFile struct {
	Providers     []providerEntry     `json:"providers" yaml:"providers"`
	LogicalModels []logicalModelEntry `json:"logical_models" yaml:"logical_models"`
}

// providerEntry is a provider in PROVIDERS_FILE. Each name in Models becomes
// a chat candidate of the logical model with the same name.
type providerEntry struct {
	Provider `yaml:",inline"`
	Models   []string `json:"models" yaml:"models"`
}

// logicalModelEntry is a logical model in PROVIDERS_FILE.
type logicalModelEntry struct {
	Name         string           `json:"name" yaml:"name"`
	Capabilities []Capability     `json:"capabilities" yaml:"capabilities"`
	Candidates   []candidateEntry `json:"candidates" yaml:"candidates"`
}

// candidateEntry is a candidate in PROVIDERS_FILE. Weight is a pointer to
// tell an omitted weight, which defaults to 1, from an explicit 0.
type candidateEntry struct {
	ProviderID string `json:"provider_id" yaml:"provider_id"`
	Model      string `json:"model" yaml:"model"`
	Priority   int    `json:"priority" yaml:"priority"`
	Weight     *int   `json:"weight" yaml:"weight"`
}

// LoadCatalog builds a catalog from the environment. env is usually
// os.Getenv and readFile os.ReadFile.
//
// PROVIDERS_FILE names a YAML (.yaml, .yml) or JSON (.json) file with the keys
// "providers" and "logical_models". Unknown keys are errors. A provider may
// list upstream model names under "models", as shorthand for a logical model
// of the same name with capability chat and that provider as a candidate
// (priority 0, weight 1). When that logical model already exists, the
// shorthand adds its candidate and the chat capability to it. A candidate
// without a weight gets weight 1.
//
// OPENAI_MODELS and OPENAI_IMAGE_MODELS are comma-separated upstream model
// names. When either is set, LoadCatalog adds the provider "openai" with
// OPENAI_BASE_URL and OPENAI_API_KEY, which requires at least one of the two.
// The base URL defaults to DefaultOpenAIBaseURL. Each model joins the logical
// model of the same name, as in the shorthand, with capability chat or
// image_generation.
//
// The catalog may be empty, so callers should check Empty.
func LoadCatalog(env func(string) string, readFile func(string) ([]byte, error)) (*Catalog, error) {
	catalog := NewCatalog()

	var file catalogFile
	path := strings.TrimSpace(env("PROVIDERS_FILE"))
	if path != "" {
		data, err := readFile(path)
		if err != nil {
			return nil, fmt.Errorf("read PROVIDERS_FILE %q: %w", path, err)
		}
		if file, err = parseCatalogFile(path, data); err != nil {
			return nil, fmt.Errorf("parse PROVIDERS_FILE %q: %w", path, err)
		}
		if err := catalog.addFile(file); err != nil {
			return nil, fmt.Errorf("PROVIDERS_FILE %q: %w", path, err)
		}
	}

	if err := catalog.addOpenAIFromEnv(env); err != nil {
		return nil, err
	}
	return catalog, nil
}

// parseCatalogFile decodes data by the extension of path. An empty file is an
// empty catalog.
func parseCatalogFile(path string, data []byte) (catalogFile, error) {
	var file catalogFile
	if len(bytes.TrimSpace(data)) == 0 {
		return file, nil
	}

	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		decoder := yaml.NewDecoder(bytes.NewReader(data))
		decoder.KnownFields(true)
		if err := decoder.Decode(&file); err != nil && !errors.Is(err, io.EOF) {
			return catalogFile{}, err
		}

	case ".json":
		decoder := json.NewDecoder(bytes.NewReader(data))
		decoder.DisallowUnknownFields()
		if err := decoder.Decode(&file); err != nil {
			return catalogFile{}, err
		}
		if decoder.More() {
			return catalogFile{}, errors.New("unexpected data after the top-level JSON object")
		}

	default:
		return catalogFile{}, fmt.Errorf("unsupported extension %q: use .yaml, .yml or .json", filepath.Ext(path))
	}
	return file, nil
}

// addFile adds the providers, then the logical models, then the shorthand
// models of file, so that logical models may use any provider of the file.
func (c *Catalog) addFile(file catalogFile) error {
	c.mu.Lock()
	defer c.mu.Unlock()

	for i, entry := range file.Providers {
		p, err := normalizeProvider(entry.Provider)
		if err != nil {
			return fmt.Errorf("providers[%d]: %w", i, err)
		}
		if _, ok := c.providers[p.ID]; ok {
			return fmt.Errorf("providers[%d]: duplicate provider id %q", i, p.ID)
		}
		c.providers[p.ID] = p
	}

	providerExists := func(id string) bool {
		_, ok := c.providers[id]
		return ok
	}
	for i, entry := range file.LogicalModels {
		model, err := normalizeModel(entry.logicalModel(), providerExists)
		if err != nil {
			return fmt.Errorf("logical_models[%d]: %w", i, err)
		}
		if _, ok := c.models[model.Name]; ok {
			return fmt.Errorf("logical_models[%d]: duplicate logical model name %q", i, model.Name)
		}
		c.models[model.Name] = model
	}

	for i, entry := range file.Providers {
		for j, name := range entry.Models {
			candidate := Candidate{ProviderID: entry.ID, Model: name, Weight: 1}
			if err := c.mergeModel(name, CapabilityChat, candidate); err != nil {
				return fmt.Errorf("providers[%d].models[%d]: %w", i, j, err)
			}
		}
	}
	return nil
}

func (entry logicalModelEntry) logicalModel() LogicalModel {
	model := LogicalModel{Name: entry.Name, Capabilities: entry.Capabilities}
	for _, candidate := range entry.Candidates {
		weight := 1
		if candidate.Weight != nil {
			weight = *candidate.Weight
		}
		model.Candidates = append(model.Candidates, Candidate{
			ProviderID: candidate.ProviderID,
			Model:      candidate.Model,
			Priority:   candidate.Priority,
			Weight:     weight,
		})
	}
	return model
}

// addOpenAIFromEnv adds the "openai" provider and its models from the
// OPENAI_* variables described at LoadCatalog.
func (c *Catalog) addOpenAIFromEnv(env func(string) string) error {
	chatModels := splitList(env("OPENAI_MODELS"))
	imageModels := splitList(env("OPENAI_IMAGE_MODELS"))
	if len(chatModels) == 0 && len(imageModels) == 0 {
		return nil
	}

	baseURL := strings.TrimSpace(env("OPENAI_BASE_URL"))
	apiKey := strings.TrimSpace(env("OPENAI_API_KEY"))
	if baseURL == "" && apiKey == "" {
		return errors.New("OPENAI_MODELS or OPENAI_IMAGE_MODELS is set, but OPENAI_BASE_URL and OPENAI_API_KEY are both empty: set at least one of them")
	}
	if baseURL == "" {
		baseURL = DefaultOpenAIBaseURL
	}

	c.mu.Lock()
	defer c.mu.Unlock()

	p, err := normalizeProvider(Provider{ID: "openai", Name: "openai", Kind: "openai", BaseURL: baseURL, APIKey: apiKey})
	if err != nil {
		return fmt.Errorf("OPENAI_BASE_URL: %w", err)
	}
	if _, ok := c.providers[p.ID]; ok {
		return errors.New(`provider id "openai" is defined in PROVIDERS_FILE and by the OPENAI_* variables: rename the provider in the file or unset OPENAI_MODELS and OPENAI_IMAGE_MODELS`)
	}
	c.providers[p.ID] = p

	for _, name := range chatModels {
		if err := c.mergeModel(name, CapabilityChat, Candidate{ProviderID: p.ID, Model: name, Weight: 1}); err != nil {
			return fmt.Errorf("OPENAI_MODELS: %w", err)
		}
	}
	for _, name := range imageModels {
		if err := c.mergeModel(name, CapabilityImageGeneration, Candidate{ProviderID: p.ID, Model: name, Weight: 1}); err != nil {
			return fmt.Errorf("OPENAI_IMAGE_MODELS: %w", err)
		}
	}
	return nil
}

// splitList splits a comma-separated list, trims spaces and drops empty
// items.
func splitList(list string) []string {
	var items []string
	for item := range strings.SplitSeq(list, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	return items
}

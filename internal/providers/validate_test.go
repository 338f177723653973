package providers

import (
	"strings"
	"testing"
)

func TestAddModel(t *testing.T) {
	c := NewCatalog()
	if err := c.AddProvider(Provider{ID: "alpha", BaseURL: "http://127.0.0.1:9/v1"}); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name    string
		model   LogicalModel
		wantErr string
	}{
		{"valid", LogicalModel{Name: "gpt", Candidates: []Candidate{{ProviderID: "alpha", Model: "a", Weight: 0}}}, ""},
		{"duplicate name", LogicalModel{Name: "gpt", Candidates: []Candidate{{ProviderID: "alpha", Model: "b"}}}, "duplicate logical model"},
		{"unknown provider", LogicalModel{Name: "other", Candidates: []Candidate{{ProviderID: "ghost", Model: "a"}}}, `unknown provider "ghost"`},
		{"empty provider id", LogicalModel{Name: "other", Candidates: []Candidate{{Model: "a"}}}, "unknown provider"},
		{"no candidates", LogicalModel{Name: "other"}, "no candidates"},
		{"bad capability", LogicalModel{Name: "other", Capabilities: []Capability{"embeddings"}, Candidates: []Candidate{{ProviderID: "alpha", Model: "a"}}}, "invalid capability"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := c.AddModel(tc.model)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("AddModel: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("AddModel error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}

	model, ok := c.Model("gpt")
	if !ok {
		t.Fatal("model gpt is missing")
	}
	if model.Candidates[0].Weight != 0 {
		t.Errorf("weight = %d, want the given 0 kept", model.Candidates[0].Weight)
	}
	if len(model.Capabilities) != 1 || model.Capabilities[0] != CapabilityChat {
		t.Errorf("capabilities = %v, want the default [chat]", model.Capabilities)
	}
	if _, ok := c.Model("other"); ok {
		t.Error("a rejected model was added")
	}
}

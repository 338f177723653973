package integration

import (
	"context"
	"net/http"
	"testing"
)

// newSuperuser creates a superuser through App.EnsureAdmin, as `serve` does
// on a fresh database, and logs in as it.
func (s *stack) newSuperuser() *client {
	s.t.Helper()
	const username, password = "root", "root-password-123"
	err := s.app.EnsureAdmin(context.Background(), username, password, func(string, ...any) {})
	if err != nil {
		s.t.Fatal(err)
	}
	c := &client{t: s.t, baseURL: s.baseURL}
	var tokens struct {
		AccessToken string `json:"access_token"`
	}
	c.mustDo("POST", "/auth/login", map[string]any{"username": username, "password": password}, 200, &tokens)
	c.token = tokens.AccessToken
	return c
}

func TestChatOnAdminCreatedModel(t *testing.T) {
	s := newStack(t, stackOptions{})
	admin := s.newSuperuser()
	alice := s.newUser()

	// The stack's seeded catalog is in the admin listing too.
	var providersList struct {
		Items []struct {
			ID     string `json:"id"`
			Source string `json:"source"`
		} `json:"items"`
	}
	admin.mustDo("GET", "/admin/providers", nil, 200, &providersList)
	seededMock := false
	for _, p := range providersList.Items {
		if p.ID == "mock" && p.Source == "seed" {
			seededMock = true
		}
	}
	if !seededMock {
		t.Errorf("providers = %+v, want the seeded mock provider among them", providersList.Items)
	}

	admin.mustDo("POST", "/admin/providers", map[string]any{
		"id": "api-mock", "name": "Mock through the admin API", "base_url": s.mock.URL() + "/v1",
	}, 201, nil)
	admin.mustDo("POST", "/admin/providers/api-mock/keys", map[string]any{"label": "main", "secret": "sk-mock-0123456789"}, 201, nil)
	admin.mustDo("POST", "/admin/logical-models", map[string]any{
		"name":       "api-model",
		"candidates": []map[string]any{{"provider_id": "api-mock", "model": "mock-gpt"}},
	}, 201, nil)

	var models struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	alice.mustDo("GET", "/v1/models", nil, 200, &models)
	found := false
	for _, m := range models.Data {
		found = found || m.ID == "api-model"
	}
	if !found {
		t.Errorf("GET /v1/models = %+v, want api-model listed", models.Data)
	}

	convID := alice.conversation("api-model")
	var turn turnResponse
	alice.mustDo("POST", "/v1/conversations/"+convID+"/messages", map[string]any{"content": "through the admin catalog"}, 200, &turn)
	if turn.Run.Status != "succeeded" {
		t.Fatalf("run status = %s, want succeeded: %+v", turn.Run.Status, turn.Run)
	}
	if turn.Run.SelectedProviderID != "api-mock" || turn.Run.SelectedProviderModel != "mock-gpt" {
		t.Errorf("run used %s/%s, want api-mock/mock-gpt", turn.Run.SelectedProviderID, turn.Run.SelectedProviderModel)
	}

	admin.mustDo("DELETE", "/admin/logical-models/api-model", nil, http.StatusNoContent, nil)
	models.Data = nil
	alice.mustDo("GET", "/v1/models", nil, 200, &models)
	for _, m := range models.Data {
		if m.ID == "api-model" {
			t.Error("GET /v1/models still lists api-model after DELETE")
		}
	}
}

package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/aihigress/aihigress/internal/catalog"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

// registerCatalogAdminRoutes adds the routes that manage providers, their
// keys and logical models. Logical model names may contain '/', so their
// routes take the rest of the path as the name.
func (s *Server) registerCatalogAdminRoutes(admin *gin.RouterGroup) {
	g := admin.Group("", s.requireCatalogAdmin)

	g.POST("/providers", s.createProvider)
	g.GET("/providers", s.listProviders)
	g.GET("/providers/:id", s.getProvider)
	g.PATCH("/providers/:id", s.updateProvider)
	g.DELETE("/providers/:id", s.deleteProvider)

	g.POST("/providers/:id/keys", s.createProviderKey)
	g.GET("/providers/:id/keys", s.listProviderKeys)
	g.GET("/providers/:id/keys/:key_id", s.getProviderKey)
	g.PATCH("/providers/:id/keys/:key_id", s.updateProviderKey)
	g.DELETE("/providers/:id/keys/:key_id", s.deleteProviderKey)

	g.POST("/logical-models", s.createLogicalModel)
	g.GET("/logical-models", s.listLogicalModels)
	g.GET("/logical-models/*name", s.getLogicalModel)
	g.PATCH("/logical-models/*name", s.updateLogicalModel)
	g.DELETE("/logical-models/*name", s.deleteLogicalModel)
}

func (s *Server) requireCatalogAdmin(c *gin.Context) {
	if s.CatalogAdmin == nil {
		abortError(c, http.StatusServiceUnavailable, "service_unavailable", "catalog administration is not configured on this server")
		return
	}
	c.Next()
}

type providerView struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	Kind           string            `json:"kind"`
	BaseURL        string            `json:"base_url"`
	TimeoutSeconds int               `json:"timeout_seconds"`
	Enabled        bool              `json:"enabled"`
	Headers        map[string]string `json:"headers"`
	Source         string            `json:"source"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
}

func viewProvider(p *models.ProviderRow) providerView {
	headers := map[string]string{}
	// The admin API writes only valid objects. A row that fails to decode
	// shows no headers rather than failing the listing.
	_ = json.Unmarshal(p.Headers, &headers)
	return providerView{
		ID: p.ID, Name: p.Name, Kind: p.Kind, BaseURL: p.BaseURL, TimeoutSeconds: p.TimeoutSeconds,
		Enabled: p.Enabled, Headers: headers, Source: p.Source, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
}

// providerKeyView never contains the secret or its ciphertext.
type providerKeyView struct {
	ID             string    `json:"id"`
	ProviderID     string    `json:"provider_id"`
	Label          string    `json:"label"`
	SecretLast4    string    `json:"secret_last4"`
	Weight         int       `json:"weight"`
	MaxQPS         int       `json:"max_qps"`
	Enabled        bool      `json:"enabled"`
	DisabledReason string    `json:"disabled_reason"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

func viewProviderKey(k *models.ProviderKey) providerKeyView {
	return providerKeyView{
		ID: k.ID, ProviderID: k.ProviderID, Label: k.Label, SecretLast4: k.SecretLast4, Weight: k.Weight,
		MaxQPS: k.MaxQPS, Enabled: k.Enabled, DisabledReason: k.DisabledReason, CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt,
	}
}

type candidateView struct {
	ProviderID string `json:"provider_id"`
	Model      string `json:"model"`
	Priority   int    `json:"priority"`
	Weight     int    `json:"weight"`
}

type logicalModelView struct {
	Name         string                 `json:"name"`
	Capabilities []providers.Capability `json:"capabilities"`
	// Candidates are in the order the admin listed them. Routing orders
	// them by priority and weight.
	Candidates []candidateView `json:"candidates"`
	Source     string          `json:"source"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
}

func viewLogicalModel(m *store.LogicalModel) logicalModelView {
	capabilities := []providers.Capability{}
	_ = json.Unmarshal(m.Capabilities, &capabilities)
	candidates := make([]candidateView, 0, len(m.Candidates))
	for _, candidate := range m.Candidates {
		candidates = append(candidates, candidateView{
			ProviderID: candidate.ProviderID, Model: candidate.Model, Priority: candidate.Priority, Weight: candidate.Weight,
		})
	}
	return logicalModelView{
		Name: m.Name, Capabilities: capabilities, Candidates: candidates,
		Source: m.Source, CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt,
	}
}

func (s *Server) createProvider(c *gin.Context) {
	var in catalog.ProviderInput
	if !decodeJSON(c, &in) {
		return
	}
	p, err := s.CatalogAdmin.CreateProvider(c, in)
	if err != nil {
		s.catalogError(c, err)
		return
	}
	s.logCatalogWrite(c, "provider created", "provider_id", p.ID)
	c.JSON(http.StatusCreated, viewProvider(p))
}

func (s *Server) listProviders(c *gin.Context) {
	list, err := s.Store.ListProviders(c)
	if err != nil {
		s.internalError(c, "list providers failed", err)
		return
	}
	views := make([]providerView, 0, len(list))
	for i := range list {
		views = append(views, viewProvider(&list[i]))
	}
	c.JSON(http.StatusOK, gin.H{"items": views})
}

func (s *Server) getProvider(c *gin.Context) {
	p, err := s.Store.Provider(c, c.Param("id"))
	if err != nil {
		s.catalogError(c, providerLookupError(err))
		return
	}
	c.JSON(http.StatusOK, viewProvider(p))
}

func (s *Server) updateProvider(c *gin.Context) {
	var in catalog.ProviderInput
	if !decodeJSON(c, &in) {
		return
	}
	p, err := s.CatalogAdmin.UpdateProvider(c, c.Param("id"), in)
	if err != nil {
		s.catalogError(c, err)
		return
	}
	s.logCatalogWrite(c, "provider updated", "provider_id", p.ID)
	c.JSON(http.StatusOK, viewProvider(p))
}

func (s *Server) deleteProvider(c *gin.Context) {
	id := c.Param("id")
	if err := s.CatalogAdmin.DeleteProvider(c, id); err != nil {
		s.catalogError(c, err)
		return
	}
	s.logCatalogWrite(c, "provider deleted", "provider_id", id)
	c.Status(http.StatusNoContent)
}

func (s *Server) createProviderKey(c *gin.Context) {
	var in catalog.KeyInput
	if !decodeJSON(c, &in) {
		return
	}
	k, err := s.CatalogAdmin.CreateKey(c, c.Param("id"), in)
	if err != nil {
		s.catalogError(c, err)
		return
	}
	s.logCatalogWrite(c, "provider key created", "provider_id", k.ProviderID, "key_id", k.ID, "label", k.Label)
	c.JSON(http.StatusCreated, viewProviderKey(k))
}

func (s *Server) listProviderKeys(c *gin.Context) {
	keys, err := s.CatalogAdmin.Keys(c, c.Param("id"))
	if err != nil {
		s.catalogError(c, err)
		return
	}
	views := make([]providerKeyView, 0, len(keys))
	for i := range keys {
		views = append(views, viewProviderKey(&keys[i]))
	}
	c.JSON(http.StatusOK, gin.H{"items": views})
}

func (s *Server) getProviderKey(c *gin.Context) {
	k, err := s.CatalogAdmin.Key(c, c.Param("id"), c.Param("key_id"))
	if err != nil {
		s.catalogError(c, err)
		return
	}
	c.JSON(http.StatusOK, viewProviderKey(k))
}

func (s *Server) updateProviderKey(c *gin.Context) {
	var in catalog.KeyInput
	if !decodeJSON(c, &in) {
		return
	}
	k, err := s.CatalogAdmin.UpdateKey(c, c.Param("id"), c.Param("key_id"), in)
	if err != nil {
		s.catalogError(c, err)
		return
	}
	s.logCatalogWrite(c, "provider key updated", "provider_id", k.ProviderID, "key_id", k.ID, "label", k.Label,
		"secret_replaced", in.Secret != nil, "enabled", k.Enabled)
	c.JSON(http.StatusOK, viewProviderKey(k))
}

func (s *Server) deleteProviderKey(c *gin.Context) {
	providerID, keyID := c.Param("id"), c.Param("key_id")
	if err := s.CatalogAdmin.DeleteKey(c, providerID, keyID); err != nil {
		s.catalogError(c, err)
		return
	}
	s.logCatalogWrite(c, "provider key deleted", "provider_id", providerID, "key_id", keyID)
	c.Status(http.StatusNoContent)
}

func (s *Server) createLogicalModel(c *gin.Context) {
	var in catalog.ModelInput
	if !decodeJSON(c, &in) {
		return
	}
	m, err := s.CatalogAdmin.CreateModel(c, in)
	if err != nil {
		s.catalogError(c, err)
		return
	}
	s.logCatalogWrite(c, "logical model created", "logical_model", m.Name)
	c.JSON(http.StatusCreated, viewLogicalModel(m))
}

func (s *Server) listLogicalModels(c *gin.Context) {
	list, err := s.Store.ListLogicalModels(c)
	if err != nil {
		s.internalError(c, "list logical models failed", err)
		return
	}
	views := make([]logicalModelView, 0, len(list))
	for i := range list {
		views = append(views, viewLogicalModel(&list[i]))
	}
	c.JSON(http.StatusOK, gin.H{"items": views})
}

func (s *Server) getLogicalModel(c *gin.Context) {
	name, ok := logicalModelParam(c)
	if !ok {
		return
	}
	m, err := s.Store.LogicalModel(c, name)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = catalog.ErrModelNotFound
		}
		s.catalogError(c, err)
		return
	}
	c.JSON(http.StatusOK, viewLogicalModel(m))
}

func (s *Server) updateLogicalModel(c *gin.Context) {
	name, ok := logicalModelParam(c)
	if !ok {
		return
	}
	var in catalog.ModelInput
	if !decodeJSON(c, &in) {
		return
	}
	m, err := s.CatalogAdmin.UpdateModel(c, name, in)
	if err != nil {
		s.catalogError(c, err)
		return
	}
	s.logCatalogWrite(c, "logical model updated", "logical_model", m.Name)
	c.JSON(http.StatusOK, viewLogicalModel(m))
}

func (s *Server) deleteLogicalModel(c *gin.Context) {
	name, ok := logicalModelParam(c)
	if !ok {
		return
	}
	if err := s.CatalogAdmin.DeleteModel(c, name); err != nil {
		s.catalogError(c, err)
		return
	}
	s.logCatalogWrite(c, "logical model deleted", "logical_model", name)
	c.Status(http.StatusNoContent)
}

// logicalModelParam returns the name from a /logical-models/*name route,
// or writes a 404 when the name is empty.
func logicalModelParam(c *gin.Context) (string, bool) {
	name := strings.TrimPrefix(c.Param("name"), "/")
	if name == "" {
		abortError(c, http.StatusNotFound, "logical_model_not_found", "no logical model name in the path; use /admin/logical-models/{name}")
		return "", false
	}
	return name, true
}

func providerLookupError(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return catalog.ErrProviderNotFound
	}
	return err
}

// catalogError writes the response for an error of catalog.Admin: 400 for
// invalid input, 404 for unknown ids, 409 for duplicates and providers in
// use, and 500 for anything else.
func (s *Server) catalogError(c *gin.Context, err error) {
	var (
		input *catalog.InputError
		inUse *store.ProviderInUseError
	)
	switch {
	case errors.As(err, &input):
		abortParamError(c, http.StatusBadRequest, input.Code, input.Param, input.Message)
	case errors.As(err, &inUse):
		abortError(c, http.StatusConflict, "provider_in_use",
			fmt.Sprintf("provider %q is used by the logical models %s; remove it from their candidates or delete them first", inUse.ProviderID, strings.Join(inUse.Models, ", ")))
	case errors.Is(err, catalog.ErrProviderNotFound):
		abortError(c, http.StatusNotFound, "provider_not_found", fmt.Sprintf("provider %q not found", c.Param("id")))
	case errors.Is(err, catalog.ErrKeyNotFound):
		abortError(c, http.StatusNotFound, "provider_key_not_found", fmt.Sprintf("key %q of provider %q not found", c.Param("key_id"), c.Param("id")))
	case errors.Is(err, catalog.ErrModelNotFound):
		name := strings.TrimPrefix(c.Param("name"), "/")
		abortError(c, http.StatusNotFound, "logical_model_not_found", fmt.Sprintf("logical model %q not found", name))
	case errors.Is(err, catalog.ErrProviderExists):
		abortParamError(c, http.StatusConflict, "provider_exists", "id", "a provider with this id already exists; choose another id or PATCH the existing one")
	case errors.Is(err, catalog.ErrKeyLabelTaken):
		abortParamError(c, http.StatusConflict, "provider_key_exists", "label", "this provider already has a key with this label; choose another label")
	case errors.Is(err, catalog.ErrModelExists):
		abortParamError(c, http.StatusConflict, "logical_model_exists", "name", "a logical model with this name already exists; PATCH it instead")
	default:
		s.internalError(c, "catalog request failed", err)
	}
}

// logCatalogWrite logs a successful write with the acting user. Callers
// pass ids and labels only, never a secret or a header value.
func (s *Server) logCatalogWrite(c *gin.Context, msg string, args ...any) {
	args = append(args, "user_id", c.GetString("user_id"), "request_id", c.GetString("request_id"))
	s.Logger.Info(msg, args...)
}

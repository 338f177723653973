// Package api holds the HTTP handlers. Handlers read and write through the
// store and start or signal workflows through the Temporal client; they never
// call upstreams themselves.
package api

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"go.temporal.io/sdk/client"

	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/auth"
	"github.com/aihigress/aihigress/internal/catalog"
	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/internal/metrics"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/requestlog"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/tokens"
)

// Limits are the request limits that handlers enforce.
type Limits struct {
	MaxBodyBytes        int64
	MaxContentChars     int
	SyncWaitTimeout     time.Duration
	UpstreamMaxAttempts int
}

// Server holds the dependencies of the handlers.
type Server struct {
	Store    *store.Store
	Temporal client.Client
	Issuer   *auth.Issuer
	// Tokens records the login sessions that access and refresh tokens
	// belong to; requireUser rejects tokens of revoked sessions.
	Tokens   *tokens.Store
	Catalog  *providers.Catalog
	APIKeys  *apikeys.Service
	Router   *router.Router
	Upstream *providers.Client
	Follower *events.Follower
	Limits   Limits
	Guards   Guards
	Logger   *slog.Logger
	// Metrics may be nil, which disables /metrics.
	Metrics *Metrics
	// MetricsToken, when set, is required as a bearer token on /metrics.
	MetricsToken string
	// Recorder receives the gateway's upstream attempts; nil records none.
	Recorder *metrics.Recorder
	// ProviderHealth rates providers in GET /admin/metrics/providers.
	ProviderHealth metrics.HealthThresholds
	// CatalogAdmin applies the /admin catalog writes; nil makes them 503.
	CatalogAdmin *catalog.Admin

	// RequestLog receives a row per gateway request; nil discards them.
	RequestLog *requestlog.Writer

	// Images configures image generation and the media links.
	Images ImageOptions

	// Readiness lists the dependencies that GET /readyz checks.
	Readiness Readiness

	drain drainState
	ready readyCache
}

// Handler returns the HTTP handler with every route.
func (s *Server) Handler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	guards := s.newGuardChain()
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// A path that differs from a route by a trailing slash gets the JSON
	// 404, not gin's HTML redirect.
	r.RedirectTrailingSlash = false
	guards.trustProxies(r, s.Guards.TrustedProxies)
	r.Use(s.requestID, s.recover, guards.limitBody)
	if s.Metrics != nil {
		r.Use(s.Metrics.observe)
		r.GET("/metrics", s.Metrics.handler(s.MetricsToken))
	}
	r.NoRoute(func(c *gin.Context) {
		abortError(c, http.StatusNotFound, "not_found", "no route for "+c.Request.Method+" "+c.Request.URL.Path)
	})
	r.NoMethod(func(c *gin.Context) {
		abortError(c, http.StatusMethodNotAllowed, "method_not_allowed", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})

	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", s.readyz)

	r.POST("/auth/register", guards.limitRegister, s.register)
	r.POST("/auth/login", guards.limitLogin, s.login)
	r.POST("/auth/refresh", s.refresh)

	// Rate limits need the caller's identity, so they run after
	// authentication.
	authed := r.Group("/", s.requireUser, guards.limitUser)
	authed.GET("/auth/me", s.me)
	authed.POST("/auth/logout", s.logout)
	authed.POST("/auth/logout-all", s.logoutAll)

	admin := authed.Group("/admin", s.requireSuperuser)
	s.registerAdminRoutes(admin)
	admin.GET("/metrics/providers", s.providerMetrics)

	// Gateway clients use API keys; the web app uses access tokens. Both
	// can list models and follow runs.
	gateway := r.Group("/v1", s.observeGateway, s.requireAPIKey, guards.limitAPIKey)
	gateway.POST("/chat/completions", s.chatCompletions)
	gateway.POST("/images/generations", s.imageGenerations)
	either := r.Group("/v1", s.requireUserOrAPIKey, guards.limitCaller)
	either.GET("/models", s.listModels)
	either.GET("/runs/:id", s.getRun)
	either.POST("/runs/:id/cancel", s.cancelRun)
	either.GET("/runs/:id/result", s.getRunResult)
	either.GET("/runs/:id/events", s.streamRunEvents)

	v1 := authed.Group("/v1")
	s.registerAPIKeyRoutes(v1)

	v1.POST("/assistants", s.createAssistant)
	v1.GET("/assistants", s.listAssistants)
	v1.GET("/assistants/:id", s.getAssistant)
	v1.PUT("/assistants/:id", s.updateAssistant)
	v1.DELETE("/assistants/:id", s.deleteAssistant)

	v1.POST("/conversations", s.createConversation)
	v1.GET("/conversations", s.listConversations)
	v1.GET("/conversations/:id", s.getConversation)
	v1.PUT("/conversations/:id", s.updateConversation)
	v1.DELETE("/conversations/:id", s.deleteConversation)

	v1.POST("/conversations/:id/messages", s.postMessage)
	v1.GET("/conversations/:id/messages", s.listMessages)
	v1.DELETE("/conversations/:id/messages", s.clearMessages)
	v1.POST("/messages/:id/regenerate", s.regenerate)
	v1.POST("/conversations/:id/image-generations", s.postImageGeneration)

	// The signature in the query is the credential of a media link.
	if s.Images.MediaHandler != nil {
		media := gin.WrapH(s.Images.MediaHandler)
		r.GET("/media/images/*object_key", media)
		r.HEAD("/media/images/*object_key", media)
	}

	return guards.wrap(r)
}

func (s *Server) requestID(c *gin.Context) {
	id := c.GetHeader("X-Request-Id")
	if id == "" || len(id) > 128 {
		id = uuid.NewString()
	}
	c.Header("X-Request-Id", id)
	c.Set("request_id", id)
	c.Next()
}

// recover turns a panic into a JSON 500 and logs it; a panic is a bug, but
// the client still gets the documented error shape.
func (s *Server) recover(c *gin.Context) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.Logger.Error("handler panic", "path", c.FullPath(), "panic", p, "request_id", c.GetString("request_id"))
			if !c.Writer.Written() {
				abortError(c, http.StatusInternalServerError, "internal_error", "internal error; the request ID is in the X-Request-Id header")
			}
		}
	}()
	c.Next()
}

// requireSuperuser rejects users without the superuser role. It runs after
// requireUser.
func (s *Server) requireSuperuser(c *gin.Context) {
	if !currentUser(c).IsSuperuser {
		abortError(c, http.StatusForbidden, "superuser_required", "this route needs a superuser account")
		return
	}
	c.Next()
}

// internalError logs err and responds 500. It is for database failures that
// the client cannot fix.
func (s *Server) internalError(c *gin.Context, msg string, err error) {
	s.Logger.Error(msg, "error", err, "path", c.FullPath(), "user_id", c.GetString("user_id"), "request_id", c.GetString("request_id"))
	abortError(c, http.StatusInternalServerError, "internal_error", msg)
}

// unavailable logs err and responds 503 when a dependency is down.
func (s *Server) unavailable(c *gin.Context, msg string, err error) {
	s.Logger.Error(msg, "error", err, "path", c.FullPath(), "user_id", c.GetString("user_id"), "request_id", c.GetString("request_id"))
	abortError(c, http.StatusServiceUnavailable, "service_unavailable", msg+"; try again shortly")
}

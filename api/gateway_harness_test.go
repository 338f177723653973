package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/aihigress/aihigress/api"
	"github.com/aihigress/aihigress/internal/apikeys"
	"github.com/aihigress/aihigress/internal/auth"
	"github.com/aihigress/aihigress/internal/mockupstream"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/requestlog"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/internal/tokens"
	"github.com/aihigress/aihigress/models"
)

const (
	gatewayMasterKey = "gateway-test-master-key-0123456789"
	testJWTSecret    = "gateway-test-jwt-secret-0123456789"
	// upstreamSecret is the key that the "wrong-key" and "keyed" mock
	// upstreams require.
	upstreamSecret = "sk-upstream-right"
	// gatewayImagePromptChars is the image prompt limit of the test server.
	// The server has no Temporal client, so image requests can be checked
	// but not run.
	gatewayImagePromptChars = 40
)

// gatewayEnv is an API server without Temporal, on loopback, in front of
// one mock upstream per provider, so that each provider's request count
// shows which candidates the gateway tried.
type gatewayEnv struct {
	t       testing.TB
	baseURL string
	store   *store.Store
	keys    *apikeys.Service
	issuer  *auth.Issuer
	// sessions records the login sessions that access tokens need.
	sessions *tokens.Store
	log      *requestlog.Writer
	userID   string
	mocks    map[string]*mockupstream.Server
}

// providerSpec is one provider of the test catalog and its mock upstream.
type providerSpec struct {
	mock     mockupstream.Options
	provider providers.Provider
}

func testProviders() map[string]providerSpec {
	return map[string]providerSpec{
		"main":         {},
		"paced":        {provider: providers.Provider{Headers: map[string]string{"X-Mock-TPS": "40", "X-Mock-Tokens": "8"}}},
		"keyed":        {mock: mockupstream.Options{APIKey: upstreamSecret}, provider: providers.Provider{Keys: []providers.ProviderKey{{ID: "key-right", Secret: upstreamSecret}}}},
		"rate-limited": {},
		"broken":       {},
		"wrong-key":    {mock: mockupstream.Options{APIKey: upstreamSecret}, provider: providers.Provider{Keys: []providers.ProviderKey{{ID: "key-wrong", Secret: "sk-upstream-wrong"}}}},
		"cut":          {},
		"slow":         {provider: providers.Provider{TimeoutSeconds: 1, Headers: map[string]string{"X-Mock-Slow-Ms": "5000"}}},
		"good":         {},
		"fixed":        {provider: providers.Provider{Headers: map[string]string{"X-Mock-Tokens": "16"}}},
		"disabled":     {provider: providers.Provider{Disabled: true}},
	}
}

// testModels are the logical models of the test catalog.
func testModels() []providers.LogicalModel {
	chat := []providers.Capability{providers.CapabilityChat}
	candidate := func(provider, model string, priority int) providers.Candidate {
		return providers.Candidate{ProviderID: provider, Model: model, Priority: priority, Weight: 1}
	}
	model := func(name string, candidates ...providers.Candidate) providers.LogicalModel {
		return providers.LogicalModel{Name: name, Capabilities: chat, Candidates: candidates}
	}
	return []providers.LogicalModel{
		model("mock-gpt", candidate("main", "mock-gpt", 0)),
		model("mock-gpt-mini", candidate("main", "mock-gpt-mini", 0)),
		model("paced", candidate("paced", "paced-model", 0)),
		model("fixed-16", candidate("fixed", "mock-gpt", 0)),
		model("unavailable", candidate("disabled", "mock-gpt", 0)),
		model("keyed", candidate("keyed", "keyed-model", 0)),
		model("bad-request", candidate("main", "fault-400", 0)),
		model("cut-after-first", candidate("main", "fault-cut", 0)),
		model("all-cut", candidate("cut", "fault-cut-before-first", 0)),
		model("all-429", candidate("rate-limited", "fault-429", 0)),
		model("all-500", candidate("broken", "fault-500", 0)),
		model("failover",
			candidate("rate-limited", "fault-429", 60),
			candidate("broken", "fault-500", 50),
			candidate("wrong-key", "wrong-key-model", 40),
			candidate("cut", "fault-cut-before-first", 30),
			candidate("slow", "fault-slow-start", 20),
			candidate("good", "good-model", 10),
		),
		// cooldown fails fast, so a second request comes within the 1 s
		// cooldown that the mock's Retry-After header sets.
		model("cooldown",
			candidate("rate-limited", "fault-429", 30),
			candidate("wrong-key", "wrong-key-model", 20),
			candidate("good", "good-model", 10),
		),
		{Name: "image-only", Capabilities: []providers.Capability{providers.CapabilityImageGeneration},
			Candidates: []providers.Candidate{candidate("main", "mock-image", 0)}},
	}
}

func newGatewayEnv(t testing.TB) *gatewayEnv {
	t.Helper()
	ctx := context.Background()
	st := testenv.Store(t)

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}

	env := &gatewayEnv{t: t, store: st, mocks: map[string]*mockupstream.Server{}}
	catalog := providers.NewCatalog()
	for id, spec := range testProviders() {
		mock, err := mockupstream.Start("", spec.mock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = mock.Close() })
		env.mocks[id] = mock

		p := spec.provider
		p.ID, p.Name, p.Kind, p.BaseURL = id, id, "openai", mock.URL()+"/v1"
		if err := catalog.AddProvider(p); err != nil {
			t.Fatal(err)
		}
	}
	// The models go in with a provider of their own, because AddProvider
	// is the only way to add models.
	anchor, err := mockupstream.Start("", mockupstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = anchor.Close() })
	if err := catalog.AddProvider(providers.Provider{ID: "anchor", Kind: "openai", BaseURL: anchor.URL() + "/v1"}, testModels()...); err != nil {
		t.Fatal(err)
	}

	rdb, prefix := testenv.RedisClient(t)

	keys, err := apikeys.NewService(st, gatewayMasterKey, apikeys.Options{Redis: rdb, RedisPrefix: prefix, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	rt := router.New(catalog, rdb, prefix, router.Options{Logger: logger})
	routerCtx, stopRouter := context.WithCancel(ctx)
	routerDone := make(chan struct{})
	go func() {
		defer close(routerDone)
		_ = rt.Run(routerCtx)
	}()
	t.Cleanup(func() {
		stopRouter()
		<-routerDone
	})
	env.keys = keys
	env.issuer = auth.NewIssuer(testJWTSecret, time.Hour, time.Hour, time.Now)
	env.sessions = tokens.New(rdb, tokens.Options{Prefix: prefix})

	user := &models.User{Username: "gw_" + testenv.Suffix(), PasswordHash: "x", IsActive: true}
	user.Email = user.Username + "@example.com"
	if err := st.CreateUser(ctx, user); err != nil {
		t.Fatal(err)
	}
	env.userID = user.ID

	upstream := providers.NewClient(providers.ClientOptions{})
	t.Cleanup(upstream.CloseIdleConnections)
	env.log = requestlog.New(st.DB, requestlog.Options{FlushInterval: 20 * time.Millisecond, Logger: logger})
	env.log.Start()
	t.Cleanup(func() { _ = env.log.Close(context.Background()) })

	server := &api.Server{
		Store:      st,
		Issuer:     env.issuer,
		Catalog:    catalog,
		APIKeys:    keys,
		Router:     rt,
		Tokens:     env.sessions,
		Upstream:   upstream,
		Limits:     api.Limits{MaxBodyBytes: 1 << 20, MaxContentChars: 32000, UpstreamMaxAttempts: 4},
		Images:     api.ImageOptions{MaxPromptChars: gatewayImagePromptChars},
		Logger:     logger,
		RequestLog: env.log,
	}
	srv := httptest.NewServer(server.Handler())
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	env.baseURL = srv.URL
	return env
}

// newKey creates an API key for the test user; nil allowedModels allows
// every model.
func (e *gatewayEnv) newKey(allowedModels []string) string {
	e.t.Helper()
	secret, _, err := e.keys.Create(context.Background(), e.userID, apikeys.NewKey{Name: "test " + testenv.Suffix(), AllowedModels: allowedModels})
	if err != nil {
		e.t.Fatal(err)
	}
	return secret
}

// client returns an OpenAI SDK client for the gateway that never retries,
// so that every call is one request.
func (e *gatewayEnv) client(credential string, opts ...option.RequestOption) openai.Client {
	base := []option.RequestOption{option.WithBaseURL(e.baseURL + "/v1/"), option.WithAPIKey(credential), option.WithMaxRetries(0)}
	return openai.NewClient(append(base, opts...)...)
}

// directClient returns an SDK client for the mock upstream of provider.
func (e *gatewayEnv) directClient(provider string) openai.Client {
	return openai.NewClient(option.WithBaseURL(e.mocks[provider].URL()+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
}

// chatCount returns how many chat completion requests provider's mock
// upstream has received.
func (e *gatewayEnv) chatCount(provider string) int64 {
	return e.mocks[provider].Stats().ChatCompletions
}

// requestLogRow waits for the request log row of requestID.
func (e *gatewayEnv) requestLogRow(requestID string) models.RequestLog {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var rows []models.RequestLog
		if err := e.store.DB.Where("request_id = ?", requestID).Find(&rows).Error; err != nil {
			e.t.Fatal(err)
		}
		if len(rows) == 1 {
			return rows[0]
		}
		if len(rows) > 1 || time.Now().After(deadline) {
			e.t.Fatalf("request log has %d rows for request %s, want 1", len(rows), requestID)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func chatParams(model, prompt string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
	}
}

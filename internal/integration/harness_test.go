// Package integration runs the service against real parts: a Temporal dev
// server, the HTTP API over loopback, the mock upstream over HTTP, and the
// database and Redis chosen by TEST_DATABASE_URL and TEST_REDIS_URL.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/app"
	"github.com/aihigress/aihigress/internal/config"
	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/internal/mockupstream"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/testenv"
)

// temporalAddress is the dev server shared by the package's tests. Tests
// run one at a time because every worker polls the same task queue.
var temporalAddress string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	srv, err := testenv.StartTemporal()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration tests need a Temporal dev server:", err)
		os.Exit(1)
	}
	temporalAddress = srv.FrontendHostPort()
	code := m.Run()
	removeBuiltBinary()
	_ = srv.Stop()
	os.Exit(code)
}

// stack is one running service: its dependencies, a worker and an API
// server on loopback.
type stack struct {
	t       *testing.T
	app     *app.App
	mock    *mockupstream.Server
	baseURL string
	cfg     config.Config
	stopAPI func()
}

type stackOptions struct {
	mock       mockupstream.Options
	noWorker   bool
	syncWait   time.Duration
	maxContent int
	env        map[string]string
}

func newStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test")
	}
	databaseURL, sqlitePath := testenv.DatabaseURL(t)
	redisURL, prefix := testenv.Redis(t)

	mock, err := mockupstream.Start("", opts.mock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mock.Close() })

	env := map[string]string{
		"DATABASE_URL":       databaseURL,
		"SQLITE_PATH":        sqlitePath,
		"REDIS_URL":          redisURL,
		"REDIS_PREFIX":       prefix,
		"TEMPORAL_ADDRESS":   temporalAddress,
		"JWT_SECRET":         "integration-test-secret-0123456789",
		"MASTER_KEY":         "integration-test-master-key-0123456789",
		"SSE_HEARTBEAT":      "2s",
		"DELTA_MERGE_WINDOW": "20ms",
		// Every test registers and polls from one address and user, faster
		// than the default limits allow. The limiter still runs.
		"RATE_LIMIT_LOGIN":    "100000/1m",
		"RATE_LIMIT_REGISTER": "100000/1m",
		"RATE_LIMIT_USER":     "100000/1m",
		"IMAGE_LOCAL_DIR":     filepath.Join(t.TempDir(), "media"),
		// The package's tests share one Temporal dev server, so only the
		// test of the schedules creates them.
		"MAINTENANCE_SCHEDULES": "off",
		// A test that ends while a run streams stops its workers at once,
		// instead of waiting for the activity.
		"WORKER_STOP_TIMEOUT": "0s",
	}
	if opts.syncWait > 0 {
		env["SYNC_WAIT_TIMEOUT"] = opts.syncWait.String()
	}
	if opts.maxContent > 0 {
		env["MAX_CONTENT_CHARS"] = strconv.Itoa(opts.maxContent)
	}
	for k, v := range opts.env {
		env[k] = v
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Connect(ctx, cfg, testCatalog(t, mock.URL()+"/v1"), logger)
	if err != nil {
		cancel()
		t.Fatal(err)
	}

	s := &stack{t: t, app: a, mock: mock, cfg: cfg}
	if !opts.noWorker {
		chat := a.ChatWorker()
		if err := chat.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(chat.Stop)
		// The image worker shares the API's client, as in `serve` with
		// IMAGE_WORKER_IN_API, so image workflows start eagerly.
		stopImages, err := a.StartImageWorker()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stopImages)
	}
	s.baseURL, s.stopAPI = s.startAPI(ctx, true)
	t.Cleanup(func() {
		s.stopAPI()
		cancel()
		a.Close()
	})
	return s
}

// startAPI serves the API on a new loopback port, as a second API process
// would: with its own Redis subscription hub, or none.
func (s *stack) startAPI(ctx context.Context, withHub bool) (string, func()) {
	var hub *events.Hub
	hubCtx, cancel := context.WithCancel(ctx)
	if withHub {
		hub = events.NewHub(hubCtx, s.app.Bus, s.app.Logger)
	}
	apiServer, err := s.app.APIServer(hub)
	if err != nil {
		s.t.Fatal(err)
	}
	srv := httptest.NewServer(apiServer.Handler())
	return srv.URL, func() {
		srv.CloseClientConnections()
		srv.Close()
		cancel()
	}
}

// testCatalog registers the mock upstream as provider "mock" with logical
// models that reach its fault modes.
func testCatalog(t *testing.T, baseURL string) *providers.Catalog {
	t.Helper()
	c := providers.NewCatalog()
	chat := []providers.Capability{providers.CapabilityChat}
	model := func(name string, candidates ...providers.Candidate) providers.LogicalModel {
		return providers.LogicalModel{Name: name, Capabilities: chat, Candidates: candidates}
	}
	candidate := func(upstream string, priority int) providers.Candidate {
		return providers.Candidate{ProviderID: "mock", Model: upstream, Priority: priority, Weight: 1}
	}
	err := c.AddProvider(providers.Provider{ID: "mock", Name: "Mock", Kind: "openai", BaseURL: baseURL},
		model("mock-gpt", candidate("mock-gpt", 0)),
		model("failover-429", candidate("fault-429", 2), candidate("mock-gpt", 1)),
		model("failover-cut", candidate("fault-cut", 2), candidate("mock-gpt", 1)),
		model("always-500", candidate("fault-500", 0)),
		model("bad-request", candidate("fault-400", 0)),
		model("slow-start", candidate("fault-slow-start", 0)),
		model("stall", candidate("fault-stall", 0)),
	)
	if err != nil {
		t.Fatal(err)
	}

	// The mock rejects keys that start with "bad-" with 401, so the first
	// candidate of failover-401 fails and its key is taken out of use. The
	// seed stores the key with the label "default".
	err = c.AddProvider(providers.Provider{ID: "mock-badkey", Name: "Mock with a rejected key", Kind: "openai", BaseURL: baseURL,
		APIKey: "bad-integration-key"},
		model("failover-401", providers.Candidate{ProviderID: "mock-badkey", Model: "mock-gpt", Priority: 2, Weight: 1}, candidate("mock-gpt", 1)),
	)
	if err != nil {
		t.Fatal(err)
	}

	// Image models: the OpenAI lane on "mock", and the Gemini lane on
	// "mock-gemini", whose base URL is the API root.
	images := []providers.Capability{providers.CapabilityImageGeneration}
	imageModel := func(name string, candidates ...providers.Candidate) providers.LogicalModel {
		return providers.LogicalModel{Name: name, Capabilities: images, Candidates: candidates}
	}
	err = c.AddProvider(providers.Provider{ID: "mock-gemini", Name: "Mock Gemini", Kind: "gemini", BaseURL: strings.TrimSuffix(baseURL, "/v1")},
		imageModel("image-gemini", providers.Candidate{ProviderID: "mock-gemini", Model: "gemini-image", Weight: 1}),
		imageModel("image-gemini-blocked", providers.Candidate{ProviderID: "mock-gemini", Model: "fault-safety", Weight: 1}),
	)
	if err != nil {
		t.Fatal(err)
	}
	err = c.AddProvider(providers.Provider{ID: "mock-images", Name: "Mock images", Kind: "openai", BaseURL: baseURL},
		imageModel("image-openai", providers.Candidate{ProviderID: "mock-images", Model: "gpt-image-mock", Weight: 1}),
		imageModel("image-failover", providers.Candidate{ProviderID: "mock-images", Model: "fault-500", Priority: 2, Weight: 1},
			providers.Candidate{ProviderID: "mock-images", Model: "gpt-image-mock", Priority: 1, Weight: 1}),
		imageModel("image-bad-request", providers.Candidate{ProviderID: "mock-images", Model: "fault-400", Weight: 1}),
		imageModel("image-slow", providers.Candidate{ProviderID: "mock-images", Model: "fault-slow-start", Weight: 1}),
	)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// client is a user of the API.
type client struct {
	t       *testing.T
	baseURL string
	token   string
}

var userCounter int

func (s *stack) newUser() *client {
	s.t.Helper()
	userCounter++
	name := fmt.Sprintf("user%d_%s", userCounter, testenv.Suffix())
	c := &client{t: s.t, baseURL: s.baseURL}
	c.mustDo("POST", "/auth/register", map[string]any{"username": name, "email": name + "@example.com", "password": "password123"}, 201, nil)
	var tokens struct {
		AccessToken string `json:"access_token"`
	}
	c.mustDo("POST", "/auth/login", map[string]any{"username": name, "password": "password123"}, 200, &tokens)
	c.token = tokens.AccessToken
	return c
}

// at returns a client for the same user on another API server.
func (c *client) at(baseURL string) *client {
	return &client{t: c.t, baseURL: baseURL, token: c.token}
}

func (c *client) request(method, path string, body any, header http.Header) *http.Response {
	c.t.Helper()
	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		reader = strings.NewReader(b)
	case []byte:
		reader = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		reader = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.baseURL+path, reader)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// do sends a request and decodes a JSON response into out; it returns the
// status code and the raw body.
func (c *client) do(method, path string, body any, out any) (int, []byte) {
	c.t.Helper()
	resp := c.request(method, path, body, nil)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if out != nil && len(raw) > 0 && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, raw
}

func (c *client) mustDo(method, path string, body any, want int, out any) []byte {
	c.t.Helper()
	status, raw := c.do(method, path, body, out)
	if status != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, raw)
	}
	return raw
}

// conversation creates an assistant on model and a conversation with it.
func (c *client) conversation(model string) string {
	c.t.Helper()
	var assistant, conv struct {
		ID string `json:"id"`
	}
	c.mustDo("POST", "/v1/assistants", map[string]any{"name": "Test", "system_prompt": "Be brief.", "default_logical_model": model}, 201, &assistant)
	c.mustDo("POST", "/v1/conversations", map[string]any{"assistant_id": assistant.ID}, 201, &conv)
	return conv.ID
}

type runDetail struct {
	RunID                 string  `json:"run_id"`
	Kind                  string  `json:"kind"`
	Status                string  `json:"status"`
	SelectedProviderID    string  `json:"selected_provider_id"`
	SelectedProviderModel string  `json:"selected_provider_model"`
	ErrorCode             *string `json:"error_code"`
	OutputText            string  `json:"output_text"`
	OutputPreview         string  `json:"output_preview"`
	WorkflowID            string  `json:"workflow_id"`
	Attempt               int     `json:"attempt"`
	LastSeq               int64   `json:"last_seq"`
	Usage                 struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

type turnResponse struct {
	UserMessageID      string    `json:"user_message_id"`
	AssistantMessageID string    `json:"assistant_message_id"`
	Run                runDetail `json:"run"`
}

// frame is one parsed SSE frame.
type frame struct {
	ID    int64
	HasID bool
	Event string
	Data  string
	// Retry is the value of the retry: field, or "" without one.
	Retry string
}

// sseStream reads frames from an open SSE response.
type sseStream struct {
	resp   *http.Response
	reader *bufio.Reader
}

func (c *client) openEvents(path string, header http.Header) *sseStream {
	c.t.Helper()
	resp := c.request("GET", path, nil, header)
	if resp.StatusCode != 200 {
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.t.Fatalf("GET %s: status %d: %s", path, resp.StatusCode, raw)
	}
	return &sseStream{resp: resp, reader: bufio.NewReader(resp.Body)}
}

func (c *client) postStreaming(path string, body any) *sseStream {
	c.t.Helper()
	resp := c.request("POST", path, body, nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.t.Fatalf("POST %s: status %d (%s): %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), raw)
	}
	return &sseStream{resp: resp, reader: bufio.NewReader(resp.Body)}
}

// next returns the next frame, or an error at the end of the stream.
func (s *sseStream) next() (frame, error) {
	var f frame
	seen := false
	for {
		line, err := s.reader.ReadString('\n')
		if err != nil {
			return f, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if seen {
				return f, nil
			}
			continue
		}
		seen = true
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			f.ID, _ = strconv.ParseInt(value, 10, 64)
			f.HasID = true
		case "event":
			f.Event = value
		case "data":
			f.Data = value
		case "retry":
			f.Retry = value
		}
	}
}

// readUntil collects frames until one of type event arrives (included).
func (s *sseStream) readUntil(t *testing.T, event string) []frame {
	t.Helper()
	var frames []frame
	for {
		f, err := s.next()
		if err != nil {
			t.Fatalf("stream ended before %q: %v (got %d frames)", event, err, len(frames))
		}
		frames = append(frames, f)
		if f.Event == event {
			return frames
		}
	}
}

func (s *sseStream) close() { s.resp.Body.Close() }

// runEvents keeps the run events of a frame list, dropping replay.done,
// heartbeat, done and reconnect.
func runEvents(frames []frame) []frame {
	var out []frame
	for _, f := range frames {
		switch f.Event {
		case "replay.done", "heartbeat", "done", "reconnect":
		default:
			out = append(out, f)
		}
	}
	return out
}

// replyText rebuilds the reply from deltas, honouring message.reset.
func replyText(t *testing.T, frames []frame) string {
	t.Helper()
	var text strings.Builder
	for _, f := range frames {
		switch f.Event {
		case "message.reset":
			text.Reset()
		case "message.delta":
			var data struct {
				Payload struct {
					Delta string `json:"delta"`
				} `json:"payload"`
			}
			if err := json.Unmarshal([]byte(f.Data), &data); err != nil {
				t.Fatalf("decode delta %q: %v", f.Data, err)
			}
			text.WriteString(data.Payload.Delta)
		}
	}
	return text.String()
}

// checkSequence fails unless the run events carry seq after+1, after+2, ...
// with matching ids, each once.
func checkSequence(t *testing.T, frames []frame, after int64) {
	t.Helper()
	want := after + 1
	for _, f := range runEvents(frames) {
		var data struct {
			Type string `json:"type"`
			Seq  int64  `json:"seq"`
		}
		if err := json.Unmarshal([]byte(f.Data), &data); err != nil {
			t.Fatalf("decode %s frame: %v", f.Event, err)
		}
		if data.Type != "run.event" {
			t.Errorf("frame %s has type %q, want run.event", f.Event, data.Type)
		}
		if data.Seq != want || f.ID != want {
			t.Fatalf("event %s has seq %d and id %d, want %d", f.Event, data.Seq, f.ID, want)
		}
		want++
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

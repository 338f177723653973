package activities_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/aihigress/aihigress/activities"
	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/workflows"
)

// recordingUpstream is an OpenAI-compatible upstream on loopback that
// streams a fixed reply and keeps the request bodies it received.
type recordingUpstream struct {
	mu     sync.Mutex
	bodies []map[string]json.RawMessage
}

func (u *recordingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var body map[string]json.RawMessage
	_ = json.Unmarshal(raw, &body)
	u.mu.Lock()
	u.bodies = append(u.bodies, body)
	u.mu.Unlock()

	w.Header().Set("Content-Type", "text/event-stream")
	for _, word := range []string{"Hello", " world"} {
		chunk, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": word}}}})
		_, _ = io.WriteString(w, "data: "+string(chunk)+"\n\n")
	}
	_, _ = io.WriteString(w, `data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":2,"total_tokens":13}}`+"\n\n")
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
}

func (u *recordingUpstream) lastMessages(t *testing.T) []providers.Message {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.bodies) == 0 {
		t.Fatal("upstream received no request")
	}
	var messages []providers.Message
	if err := json.Unmarshal(u.bodies[len(u.bodies)-1]["messages"], &messages); err != nil {
		t.Fatal(err)
	}
	return messages
}

type fixture struct {
	store    *store.Store
	chat     *activities.Chat
	upstream *recordingUpstream
	user     models.User
	conv     models.Conversation
}

func newFixture(t *testing.T, limits activities.ChatLimits) *fixture {
	t.Helper()
	st := testenv.Store(t)
	redisURL, prefix := testenv.Redis(t)
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })

	upstream := &recordingUpstream{}
	srv := httptest.NewServer(upstream)
	t.Cleanup(srv.Close)
	catalog := providers.NewCatalog()
	err = catalog.AddProvider(providers.Provider{ID: "up", Kind: "openai", BaseURL: srv.URL + "/v1"},
		providers.LogicalModel{Name: "model-x", Candidates: []providers.Candidate{{ProviderID: "up", Model: "upstream-x"}}})
	if err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	f := &fixture{store: st, upstream: upstream}
	f.user = models.User{Username: "u" + testenv.Suffix(), Email: testenv.Suffix() + "@example.com", PasswordHash: "x", IsActive: true}
	if err := st.CreateUser(ctx, &f.user); err != nil {
		t.Fatal(err)
	}
	assistant := models.Assistant{UserID: f.user.ID, Name: "A", SystemPrompt: "You are terse.", DefaultLogicalModel: "model-x"}
	if err := st.CreateAssistant(ctx, &assistant); err != nil {
		t.Fatal(err)
	}
	f.conv = models.Conversation{UserID: f.user.ID, AssistantID: assistant.ID}
	if err := st.CreateConversation(ctx, &f.conv); err != nil {
		t.Fatal(err)
	}

	if limits.DeltaMergeWindow == 0 {
		limits.DeltaMergeWindow = 10 * time.Millisecond
	}
	f.chat = &activities.Chat{
		Store:   st,
		Bus:     events.NewBus(rdb, prefix),
		Catalog: catalog,
		Router:  router.New(catalog, rdb, prefix, router.Options{}),
		Client:  providers.NewClient(providers.ClientOptions{}),
		Limits:  limits,
		Logger:  slog.New(slog.DiscardHandler),
	}
	return f
}

// turn stores a user message and runs StreamChat and FinalizeRun for it, as
// the workflow would.
func (f *fixture) turn(t *testing.T, content string) models.ChatRun {
	t.Helper()
	ctx := context.Background()
	turn, err := f.store.CreateTurn(ctx, store.NewTurn{UserID: f.user.ID, ConversationID: f.conv.ID, Content: content, LogicalModel: "model-x"})
	if err != nil {
		t.Fatal(err)
	}

	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(f.chat.StartRun)
	env.RegisterActivity(f.chat.StreamChat)
	env.RegisterActivity(f.chat.FinalizeRun)

	if _, err := env.ExecuteActivity(f.chat.StartRun, turn.Run.ID); err != nil {
		t.Fatalf("StartRun: %v", err)
	}
	value, err := env.ExecuteActivity(f.chat.StreamChat, workflows.StreamChatInput{
		RunID: turn.Run.ID, Attempt: 1, Candidate: workflows.Candidate{ProviderID: "up", Model: "upstream-x"},
	})
	if err != nil {
		t.Fatalf("StreamChat: %v", err)
	}
	var result workflows.StreamChatResult
	if err := value.Get(&result); err != nil {
		t.Fatal(err)
	}
	if result.TextLength != len("Hello world") || result.CompletionTokens != 2 {
		t.Errorf("StreamChat result = %+v, want 11 characters and 2 completion tokens", result)
	}
	for i := 0; i < 2; i++ {
		// A retried FinalizeRun must not end the run twice.
		if _, err := env.ExecuteActivity(f.chat.FinalizeRun, workflows.FinalizeInput{RunID: turn.Run.ID, Status: models.RunSucceeded}); err != nil {
			t.Fatalf("FinalizeRun: %v", err)
		}
	}
	run, err := f.store.RunByID(ctx, turn.Run.ID)
	if err != nil {
		t.Fatal(err)
	}
	return *run
}

func TestStreamChatSendsHistoryInOrder(t *testing.T) {
	f := newFixture(t, activities.ChatLimits{HistoryMaxMessages: 40, HistoryMaxChars: 10000})
	f.turn(t, "first question")
	run := f.turn(t, "second question")

	got := f.upstream.lastMessages(t)
	want := []providers.Message{
		{Role: "system", Content: "You are terse."},
		{Role: "user", Content: "first question"},
		{Role: "assistant", Content: "Hello world"},
		{Role: "user", Content: "second question"},
	}
	if len(got) != len(want) {
		t.Fatalf("upstream messages = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	if run.Status != models.RunSucceeded || run.OutputText != "Hello world" {
		t.Errorf("run = %s %q, want succeeded with the streamed text", run.Status, run.OutputText)
	}
	evs, err := f.store.EventsAfter(context.Background(), run.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	terminal := 0
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Errorf("event %d has seq %d", i, e.Seq)
		}
		switch e.EventType {
		case models.EventMessageDelta:
			var p struct{ Delta string }
			_ = json.Unmarshal(e.Payload, &p)
			text.WriteString(p.Delta)
		case models.EventMessageCompleted:
			terminal++
		}
	}
	if text.String() != "Hello world" {
		t.Errorf("deltas = %q, want %q", text.String(), "Hello world")
	}
	if terminal != 1 {
		t.Errorf("message.completed stored %d times, want 1", terminal)
	}
}

func TestStreamChatHistoryLimits(t *testing.T) {
	tests := []struct {
		name   string
		limits activities.ChatLimits
		want   []string // contents after the system prompt
	}{
		{
			name:   "message limit drops oldest",
			limits: activities.ChatLimits{HistoryMaxMessages: 3, HistoryMaxChars: 10000},
			want:   []string{"q2", "Hello world", "q3"},
		},
		{
			name:   "character limit drops oldest",
			limits: activities.ChatLimits{HistoryMaxMessages: 40, HistoryMaxChars: len("Hello world") + len("q3")},
			want:   []string{"Hello world", "q3"},
		},
		{
			name:   "current message always kept",
			limits: activities.ChatLimits{HistoryMaxMessages: 40, HistoryMaxChars: 1},
			want:   []string{"q3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.limits)
			f.turn(t, "q1")
			f.turn(t, "q2")
			f.turn(t, "q3")

			got := f.upstream.lastMessages(t)
			if len(got) == 0 || got[0].Role != "system" {
				t.Fatalf("first message = %+v, want the system prompt", got)
			}
			var contents []string
			for _, m := range got[1:] {
				contents = append(contents, m.Content)
			}
			if strings.Join(contents, "|") != strings.Join(tt.want, "|") {
				t.Errorf("history = %q, want %q", contents, tt.want)
			}
		})
	}
}

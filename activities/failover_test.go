package activities_test

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/mock"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/aihigress/aihigress/activities"
	"github.com/aihigress/aihigress/internal/events"
	"github.com/aihigress/aihigress/internal/mockupstream"
	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/router"
	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
	"github.com/aihigress/aihigress/worker"
	"github.com/aihigress/aihigress/workflows"
)

// Router settings of the failover tests: one failure is enough for a
// cooldown, so that each case shows whether its failure counted.
const (
	testFailureCooldown = 45 * time.Second
	testAuthCooldown    = 20 * time.Minute
)

// failoverFixture is a chat worker whose candidates are two mock upstreams
// on loopback: "primary" fails in the way a case selects by model name or
// key, and "backup" returns a normal completion.
type failoverFixture struct {
	store *store.Store
	chat  *activities.Chat
	// observer is a second process on the same Redis, which reads the
	// cooldowns that the worker's router shares.
	observer *router.Router
	clock    func() time.Time
	primary  *mockupstream.Server
	backup   *mockupstream.Server
	disabled *keyDisabler
	user     models.User
	conv     models.Conversation
}

// keyDisabler records the calls of router.Options.DisableKey.
type keyDisabler struct {
	mu    sync.Mutex
	calls []string // "keyID: reason"
}

func (d *keyDisabler) disable(_ context.Context, keyID, reason string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, keyID+": "+reason)
	return nil
}

func (d *keyDisabler) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.calls...)
}

func startMock(t *testing.T) *mockupstream.Server {
	t.Helper()
	srv, err := mockupstream.Start("127.0.0.1:0", mockupstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func newFailoverFixture(t *testing.T) *failoverFixture {
	t.Helper()
	f := &failoverFixture{store: testenv.Store(t), primary: startMock(t), backup: startMock(t), disabled: &keyDisabler{}}

	// The router's clock does not advance, so cooldowns do not end during a
	// test and their lengths can be compared exactly.
	frozen := time.Now().Truncate(time.Millisecond)
	f.clock = func() time.Time { return frozen }

	catalog := providers.NewCatalog()
	primaryURL, backupURL := f.primary.URL()+"/v1", f.backup.URL()+"/v1"
	add := func(p providers.Provider) {
		if err := catalog.AddProvider(p); err != nil {
			t.Fatal(err)
		}
	}
	add(providers.Provider{ID: "primary", BaseURL: primaryURL})
	add(providers.Provider{ID: "rejecting", BaseURL: primaryURL, Keys: []providers.ProviderKey{{ID: "key-401", Secret: "bad-key", Weight: 1}}})
	add(providers.Provider{ID: "forbidding", BaseURL: primaryURL, Keys: []providers.ProviderKey{{ID: "key-403", Secret: "forbidden-key", Weight: 1}}})
	// Keys of weight 0 come after all others, so the bad key goes first.
	add(providers.Provider{ID: "mixed", BaseURL: primaryURL, Keys: []providers.ProviderKey{
		{ID: "key-bad", Secret: "bad-mixed", Weight: 1},
		{ID: "key-good", Secret: "good-mixed", Weight: 0},
	}})
	failover := func(name string, first providers.Candidate) providers.LogicalModel {
		first.Priority, first.Weight = 2, 1
		return providers.LogicalModel{Name: name, Candidates: []providers.Candidate{
			first, {ProviderID: "backup", Model: "mock-gpt", Priority: 1, Weight: 1},
		}}
	}
	err := catalog.AddProvider(providers.Provider{ID: "backup", BaseURL: backupURL},
		failover("m-429", providers.Candidate{ProviderID: "primary", Model: "fault-429"}),
		failover("m-500", providers.Candidate{ProviderID: "primary", Model: "fault-500"}),
		failover("m-cut-before", providers.Candidate{ProviderID: "primary", Model: "fault-cut-before-first"}),
		failover("m-cut", providers.Candidate{ProviderID: "primary", Model: "fault-cut"}),
		failover("m-400", providers.Candidate{ProviderID: "primary", Model: "fault-400"}),
		failover("m-401", providers.Candidate{ProviderID: "rejecting", Model: "mock-gpt"}),
		failover("m-403", providers.Candidate{ProviderID: "forbidding", Model: "mock-gpt"}),
		failover("m-ok", providers.Candidate{ProviderID: "primary", Model: "mock-gpt"}),
		providers.LogicalModel{Name: "m-mixed", Candidates: []providers.Candidate{{ProviderID: "mixed", Model: "mock-gpt"}}},
	)
	if err != nil {
		t.Fatal(err)
	}

	redisURL, prefix := testenv.Redis(t)
	newRouter := func(opts router.Options) *router.Router {
		redisOpts, err := redis.ParseURL(redisURL)
		if err != nil {
			t.Fatal(err)
		}
		rdb := redis.NewClient(redisOpts)
		t.Cleanup(func() { _ = rdb.Close() })
		opts.Now = f.clock
		opts.Rand = rand.NewPCG(7, 11)
		opts.FailureThreshold = 1
		opts.FailureCooldown = testFailureCooldown
		opts.AuthCooldown = testAuthCooldown
		return router.New(catalog, rdb, prefix, opts)
	}
	f.observer = newRouter(router.Options{})
	workerRouter := newRouter(router.Options{DisableKey: f.disabled.disable})

	ctx := context.Background()
	f.user = models.User{Username: "u" + testenv.Suffix(), Email: testenv.Suffix() + "@example.com", PasswordHash: "x", IsActive: true}
	if err := f.store.CreateUser(ctx, &f.user); err != nil {
		t.Fatal(err)
	}
	assistant := models.Assistant{UserID: f.user.ID, Name: "A", DefaultLogicalModel: "m-ok"}
	if err := f.store.CreateAssistant(ctx, &assistant); err != nil {
		t.Fatal(err)
	}
	f.conv = models.Conversation{UserID: f.user.ID, AssistantID: assistant.ID}
	if err := f.store.CreateConversation(ctx, &f.conv); err != nil {
		t.Fatal(err)
	}

	busOpts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	busClient := redis.NewClient(busOpts)
	t.Cleanup(func() { _ = busClient.Close() })
	f.chat = &activities.Chat{
		Store:   f.store,
		Bus:     events.NewBus(busClient, prefix),
		Catalog: catalog,
		Router:  workerRouter,
		Client:  providers.NewClient(providers.ClientOptions{}),
		Limits:  activities.ChatLimits{HistoryMaxMessages: 10, HistoryMaxChars: 10000, DeltaMergeWindow: 5 * time.Millisecond},
		Logger:  slog.New(slog.DiscardHandler),
	}
	return f
}

func (f *failoverFixture) newTurn(t *testing.T, model string) *store.Turn {
	t.Helper()
	turn, err := f.store.CreateTurn(context.Background(), store.NewTurn{
		UserID: f.user.ID, ConversationID: f.conv.ID, Content: "try " + model, LogicalModel: model,
	})
	if err != nil {
		t.Fatal(err)
	}
	return turn
}

// cooldowns lists the active cooldowns as another process reads them, as
// "c:provider/model=length" and "k:key=length".
func (f *failoverFixture) cooldowns(t *testing.T) []string {
	t.Helper()
	list, err := f.observer.Cooldowns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range list {
		length := c.Until.Sub(f.clock()).Round(time.Millisecond)
		if c.KeyID != "" {
			out = append(out, "k:"+c.KeyID+"="+length.String())
		} else {
			out = append(out, "c:"+c.ProviderID+"/"+c.Model+"="+length.String())
		}
	}
	return out
}

func TestChatRunFailover(t *testing.T) {
	tests := []struct {
		model         string
		wantStatus    string
		wantCode      string
		wantAttempt   int
		wantProvider  string
		wantModel     string
		wantCooldowns []string
		wantDisabled  string // prefix of the one DisableKey call, "" for none
		wantPrimary   int64  // chat requests that reached the primary mock
		wantBackup    int64
	}{
		{model: "m-429", wantStatus: "succeeded", wantAttempt: 2, wantProvider: "backup", wantModel: "mock-gpt",
			wantCooldowns: []string{"c:primary/fault-429=1s"}, wantPrimary: 1, wantBackup: 1},
		{model: "m-500", wantStatus: "succeeded", wantAttempt: 2, wantProvider: "backup", wantModel: "mock-gpt",
			wantCooldowns: []string{"c:primary/fault-500=" + testFailureCooldown.String()}, wantPrimary: 1, wantBackup: 1},
		{model: "m-cut-before", wantStatus: "succeeded", wantAttempt: 2, wantProvider: "backup", wantModel: "mock-gpt",
			wantCooldowns: []string{"c:primary/fault-cut-before-first=" + testFailureCooldown.String()}, wantPrimary: 1, wantBackup: 1},
		// The cut came after text, so the upstream was working and is not
		// cooled down.
		{model: "m-cut", wantStatus: "succeeded", wantAttempt: 2, wantProvider: "backup", wantModel: "mock-gpt",
			wantPrimary: 1, wantBackup: 1},
		{model: "m-401", wantStatus: "succeeded", wantAttempt: 2, wantProvider: "backup", wantModel: "mock-gpt",
			wantCooldowns: []string{"k:key-401=" + testAuthCooldown.String()}, wantDisabled: "key-401: upstream returned 401 at ",
			wantPrimary: 1, wantBackup: 1},
		{model: "m-403", wantStatus: "succeeded", wantAttempt: 2, wantProvider: "backup", wantModel: "mock-gpt",
			wantCooldowns: []string{"k:key-403=" + testAuthCooldown.String()}, wantDisabled: "key-403: upstream returned 403 at ",
			wantPrimary: 1, wantBackup: 1},
		// The only candidate succeeds on the second attempt with its other key.
		{model: "m-mixed", wantStatus: "succeeded", wantAttempt: 2, wantProvider: "mixed", wantModel: "mock-gpt",
			wantCooldowns: []string{"k:key-bad=" + testAuthCooldown.String()}, wantDisabled: "key-bad: upstream returned 401 at ",
			wantPrimary: 2, wantBackup: 0},
		{model: "m-400", wantStatus: "failed", wantCode: "upstream_bad_request", wantAttempt: 1, wantProvider: "primary", wantModel: "fault-400",
			wantPrimary: 1, wantBackup: 0},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			f := newFailoverFixture(t)
			turn := f.newTurn(t, tt.model)

			var suite testsuite.WorkflowTestSuite
			suite.SetLogger(tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
			env := suite.NewTestWorkflowEnvironment()
			worker.RegisterChat(env, f.chat)
			env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil).Maybe()
			env.ExecuteWorkflow(workflows.ChatRunWorkflowName, workflows.ChatRunInput{RunID: turn.Run.ID})
			if !env.IsWorkflowCompleted() {
				t.Fatal("workflow did not complete")
			}
			if err := env.GetWorkflowError(); err != nil {
				t.Fatalf("workflow error: %v", err)
			}

			run, err := f.store.RunByID(context.Background(), turn.Run.ID)
			if err != nil {
				t.Fatal(err)
			}
			if run.Status != tt.wantStatus || run.ErrorCode != tt.wantCode || run.Attempt != tt.wantAttempt {
				t.Errorf("run = status %s code %q attempt %d, want %s %q %d (message %q)",
					run.Status, run.ErrorCode, run.Attempt, tt.wantStatus, tt.wantCode, tt.wantAttempt, run.ErrorMessage)
			}
			if run.SelectedProviderID != tt.wantProvider || run.SelectedProviderModel != tt.wantModel {
				t.Errorf("run answered by %s/%s, want %s/%s", run.SelectedProviderID, run.SelectedProviderModel, tt.wantProvider, tt.wantModel)
			}

			value, err := env.QueryWorkflow(workflows.RunStateQuery)
			if err != nil {
				t.Fatal(err)
			}
			var state workflows.RunState
			if err := value.Get(&state); err != nil {
				t.Fatal(err)
			}
			if state.Provider != tt.wantProvider || state.Model != tt.wantModel {
				t.Errorf("run_state names %s/%s, want %s/%s", state.Provider, state.Model, tt.wantProvider, tt.wantModel)
			}

			if got := f.cooldowns(t); strings.Join(got, " ") != strings.Join(tt.wantCooldowns, " ") {
				t.Errorf("cooldowns = %q, want %q", got, tt.wantCooldowns)
			}
			disabled := f.disabled.list()
			switch {
			case tt.wantDisabled == "" && len(disabled) != 0:
				t.Errorf("DisableKey calls = %q, want none", disabled)
			case tt.wantDisabled != "" && (len(disabled) != 1 || !strings.HasPrefix(disabled[0], tt.wantDisabled)):
				t.Errorf("DisableKey calls = %q, want one starting with %q", disabled, tt.wantDisabled)
			}

			if got := f.primary.Stats().ChatCompletions; got != tt.wantPrimary {
				t.Errorf("primary mock received %d chat requests, want %d", got, tt.wantPrimary)
			}
			if got := f.backup.Stats().ChatCompletions; got != tt.wantBackup {
				t.Errorf("backup mock received %d chat requests, want %d", got, tt.wantBackup)
			}
		})
	}
}

// startedRun creates a run for model and marks it running, as StartRun does
// before the workflow's first attempt.
func (f *failoverFixture) startedRun(t *testing.T, env *testsuite.TestActivityEnvironment, model string) string {
	t.Helper()
	turn := f.newTurn(t, model)
	if _, err := env.ExecuteActivity(f.chat.StartRun, turn.Run.ID); err != nil {
		t.Fatalf("StartRun: %v", err)
	}
	return turn.Run.ID
}

func activityEnv(f *failoverFixture) *testsuite.TestActivityEnvironment {
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(f.chat.StartRun)
	env.RegisterActivity(f.chat.StreamChat)
	return env
}

func TestStreamChatCandidateChoice(t *testing.T) {
	primary := workflows.Candidate{ProviderID: "primary", Model: "mock-gpt"}
	backup := workflows.Candidate{ProviderID: "backup", Model: "mock-gpt"}
	tests := []struct {
		name string
		// coolPrimary makes another process report a 429 on the primary
		// candidate after StartRun.
		coolPrimary bool
		tried       []workflows.Candidate
		want        workflows.Candidate
	}{
		{name: "planned candidate usable", want: primary},
		{name: "planned candidate cooling switches", coolPrimary: true, want: backup},
		{name: "planned candidate tried prefers untried", tried: []workflows.Candidate{primary}, want: backup},
		{name: "all tried keeps planned", tried: []workflows.Candidate{primary, backup}, want: primary},
		{name: "cooling and all tried takes usable", coolPrimary: true, tried: []workflows.Candidate{primary, backup}, want: backup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFailoverFixture(t)
			env := activityEnv(f)
			runID := f.startedRun(t, env, "m-ok")
			if tt.coolPrimary {
				rateLimited := &providers.UpstreamError{Kind: providers.ErrorRateLimited, StatusCode: 429, RetryAfter: time.Minute}
				f.observer.Report(context.Background(), router.Pick{Candidate: providers.Candidate{ProviderID: "primary", Model: "mock-gpt"}}, rateLimited)
			}

			value, err := env.ExecuteActivity(f.chat.StreamChat, workflows.StreamChatInput{RunID: runID, Attempt: 1, Candidate: primary, Tried: tt.tried})
			if err != nil {
				t.Fatalf("StreamChat: %v", err)
			}
			var result workflows.StreamChatResult
			if err := value.Get(&result); err != nil {
				t.Fatal(err)
			}
			if result.Candidate != tt.want {
				t.Errorf("StreamChat used %+v, want %+v", result.Candidate, tt.want)
			}
			run, err := f.store.RunByID(context.Background(), runID)
			if err != nil {
				t.Fatal(err)
			}
			if run.SelectedProviderID != tt.want.ProviderID {
				t.Errorf("run records provider %s, want %s", run.SelectedProviderID, tt.want.ProviderID)
			}
			wantPrimary := int64(0)
			if tt.want == primary {
				wantPrimary = 1
			}
			if got := f.primary.Stats().ChatCompletions; got != wantPrimary {
				t.Errorf("primary mock received %d chat requests, want %d", got, wantPrimary)
			}
		})
	}
}

func TestStreamChatAllCoolingDown(t *testing.T) {
	f := newFailoverFixture(t)
	env := activityEnv(f)
	runID := f.startedRun(t, env, "m-ok")
	for _, c := range []providers.Candidate{{ProviderID: "primary", Model: "mock-gpt"}, {ProviderID: "backup", Model: "mock-gpt"}} {
		rateLimited := &providers.UpstreamError{Kind: providers.ErrorRateLimited, StatusCode: 429, RetryAfter: 30 * time.Second}
		f.observer.Report(context.Background(), router.Pick{Candidate: c}, rateLimited)
	}

	_, err := env.ExecuteActivity(f.chat.StreamChat, workflows.StreamChatInput{
		RunID: runID, Attempt: 1, Candidate: workflows.Candidate{ProviderID: "primary", Model: "mock-gpt"},
	})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("StreamChat error = %v, want an application error", err)
	}
	if appErr.Type() != workflows.ErrorCoolingDown || appErr.NonRetryable() {
		t.Errorf("error type %s non-retryable %v, want retryable %s", appErr.Type(), appErr.NonRetryable(), workflows.ErrorCoolingDown)
	}
	// The router's clock does not advance, so the wait is measured against
	// the real clock and is at most the 30 seconds of Retry-After.
	if d := appErr.NextRetryDelay(); d <= 0 || d > 30*time.Second {
		t.Errorf("NextRetryDelay = %s, want within (0, 30s]", d)
	}
	if got := f.primary.Stats().ChatCompletions + f.backup.Stats().ChatCompletions; got != 0 {
		t.Errorf("mocks received %d chat requests while every candidate was cooling down, want 0", got)
	}
	run, err := f.store.RunByID(context.Background(), runID)
	if err != nil {
		t.Fatal(err)
	}
	if run.Attempt != 1 || run.SelectedProviderID != "primary" {
		t.Errorf("run records attempt %d on %s, want attempt 1 on the planned primary", run.Attempt, run.SelectedProviderID)
	}
}

func TestStartRunPlansWithCooldowns(t *testing.T) {
	f := newFailoverFixture(t)
	env := activityEnv(f)
	ctx := context.Background()

	start := func() []workflows.Candidate {
		t.Helper()
		turn := f.newTurn(t, "m-ok")
		value, err := env.ExecuteActivity(f.chat.StartRun, turn.Run.ID)
		if err != nil {
			t.Fatalf("StartRun: %v", err)
		}
		var result workflows.StartRunResult
		if err := value.Get(&result); err != nil {
			t.Fatal(err)
		}
		return result.Candidates
	}
	format := func(cs []workflows.Candidate) string {
		parts := make([]string, len(cs))
		for i, c := range cs {
			parts[i] = c.ProviderID + "/" + c.Model
		}
		return strings.Join(parts, ",")
	}

	if got := format(start()); got != "primary/mock-gpt,backup/mock-gpt" {
		t.Errorf("candidates without cooldowns = %s, want primary/mock-gpt,backup/mock-gpt", got)
	}
	rateLimited := &providers.UpstreamError{Kind: providers.ErrorRateLimited, StatusCode: 429, RetryAfter: time.Minute}
	f.observer.Report(ctx, router.Pick{Candidate: providers.Candidate{ProviderID: "primary", Model: "mock-gpt"}}, rateLimited)
	if got := format(start()); got != "backup/mock-gpt" {
		t.Errorf("candidates with primary cooling = %s, want backup/mock-gpt", got)
	}
	f.observer.Report(ctx, router.Pick{Candidate: providers.Candidate{ProviderID: "backup", Model: "mock-gpt"}}, rateLimited)
	if got := format(start()); got != "primary/mock-gpt,backup/mock-gpt" {
		t.Errorf("candidates with every candidate cooling = %s, want all of them for later attempts", got)
	}
}

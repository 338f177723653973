package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/internal/testenv"
	"github.com/aihigress/aihigress/models"
)

// newImageRun stores a user and a queued gateway image run of that user.
func newImageRun(t *testing.T, st *store.Store) *models.ChatRun {
	t.Helper()
	ctx := context.Background()
	suffix := testenv.Suffix()
	user := &models.User{Username: "u" + suffix, Email: "u" + suffix + "@example.com", PasswordHash: "x", IsActive: true}
	if err := st.CreateUser(ctx, user); err != nil {
		t.Fatal(err)
	}
	run, _, err := st.CreateGatewayRun(ctx, store.NewGatewayRun{
		UserID: user.ID, LogicalModel: "image-model", RequestBody: models.JSON(`{"prompt":"a kite"}`), Kind: models.RunKindImage,
	})
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func TestStartAttemptMarksRunRunning(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	run := newImageRun(t, st)

	if err := st.StartAttempt(ctx, run.ID, 1, "p1", "m1"); err != nil {
		t.Fatal(err)
	}
	first, err := st.RunByID(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if first.Status != models.RunRunning {
		t.Errorf("status after the first attempt = %q, want running", first.Status)
	}
	if first.StartedAt == nil {
		t.Fatal("started_at is not set after the first attempt")
	}
	if first.Attempt != 1 || first.SelectedProviderID != "p1" || first.SelectedProviderModel != "m1" {
		t.Errorf("attempt = %d on %s/%s, want 1 on p1/m1", first.Attempt, first.SelectedProviderID, first.SelectedProviderModel)
	}

	// The second attempt keeps the start time of the run.
	time.Sleep(10 * time.Millisecond)
	if err := st.StartAttempt(ctx, run.ID, 2, "p2", "m2"); err != nil {
		t.Fatal(err)
	}
	second, err := st.RunByID(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if second.StartedAt == nil || !second.StartedAt.Equal(*first.StartedAt) {
		t.Errorf("started_at after the second attempt = %v, want the first attempt's %v", second.StartedAt, first.StartedAt)
	}
	if second.Attempt != 2 || second.SelectedProviderID != "p2" || second.SelectedProviderModel != "m2" {
		t.Errorf("attempt = %d on %s/%s, want 2 on p2/m2", second.Attempt, second.SelectedProviderID, second.SelectedProviderModel)
	}
}

func TestStartAttemptLeavesTerminalRun(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	run := newImageRun(t, st)
	if _, _, _, err := st.FinalizeRun(ctx, run.ID, store.Outcome{Status: models.RunCanceled, ErrorCode: "canceled"}); err != nil {
		t.Fatal(err)
	}

	if err := st.StartAttempt(ctx, run.ID, 1, "p1", "m1"); err != nil {
		t.Fatal(err)
	}
	got, err := st.RunByID(ctx, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != models.RunCanceled {
		t.Errorf("status = %q, want canceled to stay", got.Status)
	}
	if got.Attempt != 0 || got.SelectedProviderID != "" {
		t.Errorf("attempt = %d on %q, want no attempt recorded", got.Attempt, got.SelectedProviderID)
	}
}

// TestActiveRunWorkflowIDsCoverImageRuns checks that a conversation's active
// chat and image runs are both listed by their own workflow IDs, which differ
// in prefix, and that ended runs are left out.
func TestActiveRunWorkflowIDsCoverImageRuns(t *testing.T) {
	st := testenv.Store(t)
	ctx := context.Background()
	suffix := testenv.Suffix()
	user := &models.User{Username: "u" + suffix, Email: "u" + suffix + "@example.com", PasswordHash: "x", IsActive: true}
	if err := st.CreateUser(ctx, user); err != nil {
		t.Fatal(err)
	}
	assistant := &models.Assistant{UserID: user.ID, Name: "a", DefaultLogicalModel: "m"}
	if err := st.CreateAssistant(ctx, assistant); err != nil {
		t.Fatal(err)
	}
	conversation := &models.Conversation{UserID: user.ID, AssistantID: assistant.ID, Title: "c"}
	if err := st.CreateConversation(ctx, conversation); err != nil {
		t.Fatal(err)
	}
	turn := func(kind string) models.ChatRun {
		t.Helper()
		created, err := st.CreateTurn(ctx, store.NewTurn{
			UserID: user.ID, ConversationID: conversation.ID, Content: "hi", LogicalModel: "m",
			Kind: kind, RequestBody: models.JSON(`{"prompt":"a kite"}`),
		})
		if err != nil {
			t.Fatal(err)
		}
		return created.Run
	}
	chat, image, ended := turn(models.RunKindChat), turn(models.RunKindImage), turn(models.RunKindChat)
	if _, _, _, err := st.FinalizeRun(ctx, ended.ID, store.Outcome{Status: models.RunCanceled}); err != nil {
		t.Fatal(err)
	}
	want := []string{store.WorkflowIDPrefix + chat.ID, store.ImageWorkflowIDPrefix + image.ID}
	slices.Sort(want)

	lists := []struct {
		name string
		list func() ([]string, error)
	}{
		{"conversation", func() ([]string, error) { return st.ActiveRunWorkflowIDs(ctx, conversation.ID) }},
		{"assistant", func() ([]string, error) { return st.ActiveRunWorkflowIDsOfAssistant(ctx, assistant.ID) }},
	}
	for _, tt := range lists {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.list()
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("active workflow IDs = %v, want %v", got, want)
			}
		})
	}
}

// TestStoredTimesHaveMicroseconds checks that times read back with no more
// than microseconds, as PostgreSQL keeps them, so that SQLite and
// PostgreSQL return the same values.
func TestStoredTimesHaveMicroseconds(t *testing.T) {
	st := testenv.Store(t)
	run := newImageRun(t, st)
	stored, err := st.RunByID(context.Background(), run.ID)
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]time.Time{"created_at": stored.CreatedAt, "updated_at": stored.UpdatedAt} {
		if value.Nanosecond()%1000 != 0 {
			t.Errorf("%s = %s, want whole microseconds", name, value.Format(time.RFC3339Nano))
		}
	}
}

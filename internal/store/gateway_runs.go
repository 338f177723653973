package store

import (
	"context"
	"errors"

	"gorm.io/gorm"

	"github.com/aihigress/aihigress/models"
)

// NewGatewayRun describes a background chat completion that a gateway client
// started with an API key. The run has no conversation: the activity builds
// the upstream request from RequestBody.
type NewGatewayRun struct {
	UserID   string
	APIKeyID string
	// LogicalModel is the request's "model".
	LogicalModel string
	// RequestBody is the client's request as a JSON object, without the
	// fields that only steer the gateway ("background", "stream").
	RequestBody    models.JSON
	IdempotencyKey string
	// Kind is models.RunKindChat when empty, or models.RunKindImage.
	Kind string
}

// CreateGatewayRun writes a queued run and its first event (message.created,
// with null conversation and message ids) in one transaction.
//
// Idempotency keys are scoped to the API key, so two keys of one user may use
// the same value. When the key has been used before, CreateGatewayRun stores
// nothing and returns the earlier run with existing=true. The caller must
// check that the earlier run belongs to the same API key and request.
func (s *Store) CreateGatewayRun(ctx context.Context, in NewGatewayRun) (run *models.ChatRun, existing bool, err error) {
	storedKey := gatewayIdempotencyKey(in.APIKeyID, in.IdempotencyKey)
	if storedKey != "" {
		earlier, err := s.runByIdempotencyKey(ctx, in.UserID, storedKey)
		if err == nil {
			return earlier, true, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, false, err
		}
	}

	created := s.NewGatewayRunRow(in)
	if err := s.InsertGatewayRun(ctx, created); err != nil {
		if storedKey != "" && isUniqueViolation(err) {
			// A concurrent request with the same key won the race.
			earlier, err := s.runByIdempotencyKey(ctx, in.UserID, storedKey)
			return earlier, err == nil, err
		}
		return nil, false, err
	}
	return created, false, nil
}

// NewGatewayRunRow returns the queued run that CreateGatewayRun stores for
// in, with its ID, without storing it and without looking up the
// idempotency key.
func (s *Store) NewGatewayRunRow(in NewGatewayRun) *models.ChatRun {
	created := newRun(newID(), in.UserID, in.LogicalModel, nil, s.DB.NowFunc())
	setKind(&created, in.Kind)
	if in.APIKeyID != "" {
		created.APIKeyID = &in.APIKeyID
	}
	created.RequestBody = in.RequestBody
	if storedKey := gatewayIdempotencyKey(in.APIKeyID, in.IdempotencyKey); storedKey != "" {
		created.IdempotencyKey = &storedKey
	}
	return &created
}

// InsertGatewayRun stores a run from NewGatewayRunRow and its first event
// in one transaction, so a reader that finds the run also finds the event.
func (s *Store) InsertGatewayRun(ctx context.Context, run *models.ChatRun) error {
	return s.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		return createRunWithFirstEvent(tx, run)
	})
}

// gatewayIdempotencyKey returns the value stored in chat_runs.idempotency_key
// for a client's Idempotency-Key. The unique index covers (user_id,
// idempotency_key), so the API key id goes into the value to give each API
// key its own namespace. A request without an API key uses the user's
// namespace, which conversation messages share.
func gatewayIdempotencyKey(apiKeyID, key string) string {
	if key == "" || apiKeyID == "" {
		return key
	}
	return "apikey:" + apiKeyID + ":" + key
}

func (s *Store) runByIdempotencyKey(ctx context.Context, userID, storedKey string) (*models.ChatRun, error) {
	var run models.ChatRun
	err := s.DB.WithContext(ctx).Where("user_id = ? AND idempotency_key = ?", userID, storedKey).First(&run).Error
	if err != nil {
		return nil, notFound(err)
	}
	return &run, nil
}

// RunScope is the set of runs that a principal may read and cancel.
type RunScope struct {
	UserID string
	// APIKeyID, when set, narrows the scope to the runs that this API key
	// created. Empty means every run of the user, which is the scope of the
	// user's access token.
	APIKeyID string
}

// RunInScope returns run id when it is in scope, and ErrNotFound otherwise,
// so that a caller cannot tell another principal's run from a missing one.
func (s *Store) RunInScope(ctx context.Context, scope RunScope, id string) (*models.ChatRun, error) {
	if !validUUID(id) || scope.UserID == "" {
		return nil, ErrNotFound
	}
	query := s.DB.WithContext(ctx).Where("id = ? AND user_id = ?", id, scope.UserID)
	if scope.APIKeyID != "" {
		query = query.Where("api_key_id = ?", scope.APIKeyID)
	}
	var run models.ChatRun
	if err := query.First(&run).Error; err != nil {
		return nil, notFound(err)
	}
	return &run, nil
}

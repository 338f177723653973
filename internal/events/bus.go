package events

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aihigress/aihigress/models"
)

// Bus publishes stored events on Redis, one channel per run.
type Bus struct {
	rdb    *redis.Client
	prefix string

	// OnPublished, when set, receives the created_at of each event after
	// its publish succeeded, for the publish lag metric. Set it before the
	// first Publish.
	OnPublished func(createdAt time.Time)
}

// NewBus returns a Bus whose channel names start with prefix.
func NewBus(rdb *redis.Client, prefix string) *Bus {
	return &Bus{rdb: rdb, prefix: prefix}
}

func (b *Bus) channel(runID string) string {
	return b.prefix + "run-events:" + runID
}

// Publish sends events, which must already be stored, to live subscribers.
func (b *Bus) Publish(ctx context.Context, events []models.ChatRunEvent) error {
	if len(events) == 0 {
		return nil
	}
	batch := make([]Wire, len(events))
	for i, e := range events {
		batch[i] = ToWire(e)
	}
	body, err := json.Marshal(batch)
	if err != nil {
		return fmt.Errorf("encode events: %w", err)
	}
	if err := b.rdb.Publish(ctx, b.channel(events[0].RunID), body).Err(); err != nil {
		return fmt.Errorf("publish events of run %s: %w", events[0].RunID, err)
	}
	if b.OnPublished != nil {
		for _, e := range events {
			b.OnPublished(e.CreatedAt)
		}
	}
	return nil
}

// Hub shares one Redis subscription connection among all the SSE streams of
// a process and fans messages out to them.
type Hub struct {
	bus    *Bus
	pubsub *redis.PubSub
	logger *slog.Logger

	mu   sync.Mutex
	subs map[string]map[*Subscription]struct{}
}

// Subscription receives the live events of one run.
type Subscription struct {
	hub   *Hub
	runID string
	ch    chan []Wire
	// lagged is signalled when a batch was dropped because ch was full, so
	// the reader knows to catch up from the database.
	lagged  chan struct{}
	dropped atomic.Int64
}

// NewHub starts the fan-out loop; it stops when ctx ends.
func NewHub(ctx context.Context, bus *Bus, logger *slog.Logger) *Hub {
	h := &Hub{
		bus:    bus,
		pubsub: bus.rdb.Subscribe(ctx),
		logger: logger,
		subs:   make(map[string]map[*Subscription]struct{}),
	}
	go h.run(ctx)
	return h
}

func (h *Hub) run(ctx context.Context) {
	defer h.pubsub.Close()
	messages := h.pubsub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-messages:
			if !ok {
				return
			}
			h.dispatch(msg)
		}
	}
}

func (h *Hub) dispatch(msg *redis.Message) {
	var batch []Wire
	if err := json.Unmarshal([]byte(msg.Payload), &batch); err != nil || len(batch) == 0 {
		h.logger.Warn("drop malformed event message", "channel", msg.Channel, "error", err)
		return
	}
	runID := batch[0].RunID

	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subs[runID] {
		select {
		case sub.ch <- batch:
		default:
			sub.dropped.Add(1)
			select {
			case sub.lagged <- struct{}{}:
			default:
			}
		}
	}
}

// Subscribe starts receiving the live events of runID. The caller must
// Close the subscription.
func (h *Hub) Subscribe(ctx context.Context, runID string) (*Subscription, error) {
	sub := &Subscription{hub: h, runID: runID, ch: make(chan []Wire, 256), lagged: make(chan struct{}, 1)}

	// The Redis command is sent under the lock so that a concurrent Close of
	// the run's last subscription cannot unsubscribe after this subscribe.
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs[runID]) == 0 {
		if err := h.pubsub.Subscribe(ctx, h.bus.channel(runID)); err != nil {
			return nil, fmt.Errorf("subscribe to run %s: %w", runID, err)
		}
		h.subs[runID] = make(map[*Subscription]struct{})
	}
	h.subs[runID][sub] = struct{}{}
	return sub, nil
}

// C delivers batches of live events.
func (s *Subscription) C() <-chan []Wire { return s.ch }

// Lagged is signalled when live batches were dropped.
func (s *Subscription) Lagged() <-chan struct{} { return s.lagged }

// Close stops the subscription.
func (s *Subscription) Close() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs[s.runID], s)
	if len(h.subs[s.runID]) > 0 {
		return
	}
	delete(h.subs, s.runID)

	// Unsubscribing is best effort: a stale channel only costs messages that
	// dispatch finds no reader for.
	if err := h.pubsub.Unsubscribe(context.Background(), h.bus.channel(s.runID)); err != nil {
		h.logger.Debug("unsubscribe failed", "run_id", s.runID, "error", err)
	}
}

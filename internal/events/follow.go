package events

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aihigress/aihigress/internal/store"
	"github.com/aihigress/aihigress/models"
)

// Frame is one SSE frame. Data is written as a single data: line.
type Frame struct {
	ID int64 // a negative ID writes no id: line

	Event string
	Data  []byte
}

// Follower streams the events of a run to one client: the stored events
// after a cursor first, then the live ones, until the terminal event.
type Follower struct {
	Store  *store.Store
	Hub    *Hub // nil disables live fan-out; the database poll still delivers
	Logger *slog.Logger
	// Heartbeat is the longest quiet spell before a heartbeat frame.
	Heartbeat time.Duration
	// Poll is how often the database is read while following, which covers
	// batches lost by Redis.
	Poll time.Duration
	// OnLiveDelivery, when set, receives the created_at of each event that
	// was sent after replay.done, for the delivery lag metric. Events of
	// the replay are left out, because their age only shows when the client
	// connected.
	OnLiveDelivery func(createdAt time.Time)
}

const replayBatch = 500

// Follow sends every event of runID with seq > after through send, in order
// and once each, followed by replay.done after the stored ones and by done
// after the terminal one. It returns nil after done, or the error of send or
// of the database.
func (f *Follower) Follow(ctx context.Context, runID string, after int64, send func(Frame) error) error {
	var sub *Subscription
	if f.Hub != nil {
		var err error
		sub, err = f.Hub.Subscribe(ctx, runID)
		if err != nil {
			f.Logger.Warn("live events unavailable, falling back to polling", "run_id", runID, "error", err)
		} else {
			defer sub.Close()
		}
	}

	st := &followState{runID: runID, last: after, send: send}
	if err := f.catchUp(ctx, st); err != nil {
		return err
	}
	if !st.terminal {
		// A cursor at or past the terminal event has nothing left to
		// replay, but the stream must still end.
		ended, err := f.Store.TerminalEventAtOrBefore(ctx, runID, st.last)
		if err != nil {
			return err
		}
		st.terminal = ended
	}
	if err := send(Frame{ID: st.last, Event: "replay.done", Data: fmt.Appendf(nil, `{"type":"replay.done","run_id":%q,"last_seq":%d}`, runID, st.last)}); err != nil {
		return err
	}
	if st.terminal {
		return st.sendDone()
	}
	st.onLive = f.OnLiveDelivery

	var live <-chan []Wire
	var lagged <-chan struct{}
	if sub != nil {
		live, lagged = sub.C(), sub.Lagged()
	}
	heartbeat := time.NewTicker(f.Heartbeat)
	defer heartbeat.Stop()
	poll := time.NewTicker(f.Poll)
	defer poll.Stop()

	for !st.terminal {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case batch := <-live:
			if err := f.deliver(ctx, st, batch); err != nil {
				return err
			}
		case <-lagged:
			if err := f.catchUp(ctx, st); err != nil {
				return err
			}
		case <-poll.C:
			if err := f.catchUp(ctx, st); err != nil {
				return err
			}
		case <-heartbeat.C:
			if time.Since(st.lastSent) >= f.Heartbeat/2 {
				if err := send(Frame{ID: st.last, Event: "heartbeat", Data: []byte(`{"type":"heartbeat"}`)}); err != nil {
					return err
				}
				st.lastSent = time.Now()
			}
		}
	}
	return st.sendDone()
}

type followState struct {
	runID    string
	last     int64
	terminal bool
	lastSent time.Time
	send     func(Frame) error
	// onLive is Follower.OnLiveDelivery once the replay is done.
	onLive func(createdAt time.Time)
}

func (st *followState) emit(w Wire, data []byte) error {
	if err := st.send(Frame{ID: w.Seq, Event: w.EventType, Data: data}); err != nil {
		return err
	}
	st.last = w.Seq
	st.lastSent = time.Now()
	if st.onLive != nil {
		st.onLive(w.CreatedAt)
	}
	if models.IsTerminalEvent(w.EventType) {
		st.terminal = true
	}
	return nil
}

func (st *followState) sendDone() error {
	return st.send(Frame{ID: st.last, Event: "done", Data: []byte("[DONE]")})
}

// deliver sends a live batch, reading the database instead when the batch
// does not continue exactly where the client is.
func (f *Follower) deliver(ctx context.Context, st *followState, batch []Wire) error {
	for _, w := range batch {
		if st.terminal {
			return nil
		}
		switch {
		case w.Seq <= st.last:
			continue
		case w.Seq > st.last+1:
			return f.catchUp(ctx, st)
		}
		data, err := marshalWire(w)
		if err != nil {
			return err
		}
		if err := st.emit(w, data); err != nil {
			return err
		}
	}
	return nil
}

// catchUp sends every stored event after st.last.
func (f *Follower) catchUp(ctx context.Context, st *followState) error {
	for !st.terminal {
		stored, err := f.Store.EventsAfter(ctx, st.runID, st.last, replayBatch)
		if err != nil {
			return err
		}
		for _, e := range stored {
			w := ToWire(e)
			data, err := marshalWire(w)
			if err != nil {
				return err
			}
			if err := st.emit(w, data); err != nil {
				return err
			}
			if st.terminal {
				return nil
			}
		}
		if len(stored) < replayBatch {
			return nil
		}
	}
	return nil
}

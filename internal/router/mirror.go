package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

var errNoPong = errors.New("no response from Redis to PING on the subscription")

// Run keeps the local mirror of the cooldowns current until ctx ends, and
// reconnects after Redis failures. While it runs with a confirmed
// subscription, Plan and Acquire read no cooldowns from Redis. It returns
// nil when ctx ends, and an error at once when another Run of the same
// Router is active.
func (r *Router) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("router: Run is already running")
	}
	defer r.running.Store(false)

	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	for {
		started := time.Now()
		err := r.follow(ctx)
		r.live.Store(false)
		if ctx.Err() != nil {
			return nil
		}

		// A subscription that lasted a while proves that Redis is back, so
		// the next failure starts over with a short wait.
		if time.Since(started) > maxBackoff {
			backoff = minBackoff
		}
		r.logger.Warn("cooldown mirror lost its Redis subscription; reading cooldowns from Redis until it is back",
			"error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// MirrorLive reports whether Run currently serves Plan and Acquire from the
// local mirror.
func (r *Router) MirrorLive() bool {
	return r.live.Load()
}

// follow runs one subscription: it subscribes, loads the cooldown hash and
// applies messages until the connection fails or ctx ends.
func (r *Router) follow(ctx context.Context) error {
	pubsub := r.rdb.Subscribe(ctx, r.names.channel)
	defer pubsub.Close()
	// Closing the subscription interrupts a blocked receive at once, so
	// that Run returns promptly when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = pubsub.Close() })
	defer stop()

	// The snapshot must be taken after the subscription is active, or a
	// change made in between would be in neither.
	msg, err := pubsub.ReceiveTimeout(ctx, r.opts.PingInterval*5)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", r.names.channel, err)
	}
	if _, ok := msg.(*redis.Subscription); !ok {
		return fmt.Errorf("subscribe to %s: unexpected first message %T", r.names.channel, msg)
	}
	if err := r.sync(ctx); err != nil {
		return err
	}
	r.live.Store(true)
	lastSync := time.Now()

	awaitingPong := false
	for {
		msg, err := pubsub.ReceiveTimeout(ctx, r.opts.PingInterval)
		switch {
		case err != nil && !isTimeout(err):
			return err
		case err != nil && awaitingPong:
			return errNoPong
		case err != nil:
			if err := pubsub.Ping(ctx); err != nil {
				return fmt.Errorf("ping Redis on the subscription: %w", err)
			}
			awaitingPong = true
		default:
			awaitingPong = false
			switch m := msg.(type) {
			case *redis.Message:
				r.apply(m.Payload)
			case *redis.Subscription:
				// go-redis resubscribed after a reconnect, so messages may
				// have been lost in between.
				if err := r.sync(ctx); err != nil {
					return err
				}
				lastSync = time.Now()
			}
		}

		if time.Since(lastSync) >= r.opts.ResyncInterval {
			if err := r.sync(ctx); err != nil {
				return err
			}
			lastSync = time.Now()
		}
	}
}

// sync replaces the mirror's cooldowns with the hash in Redis and deletes
// fields whose cooldown has ended, so that the hash does not grow with every
// key and candidate that ever failed.
func (r *Router) sync(ctx context.Context) error {
	fields, err := r.rdb.HGetAll(ctx, r.names.cooldowns).Result()
	if err != nil {
		return fmt.Errorf("load cooldowns: %w", err)
	}
	now := r.opts.Now().UnixMilli()

	until := make(map[entryKey]int64, len(fields))
	var ended []any
	for field, value := range fields {
		end, err := strconv.ParseInt(value, 10, 64)
		e, ok := parseField(field)
		if err != nil || !ok {
			r.logger.Warn("ignore malformed cooldown", "field", field, "value", value)
			continue
		}
		if end <= now {
			ended = append(ended, field)
			continue
		}
		until[e] = end
	}
	r.mirror.replace(until, now)

	if len(ended) > 0 {
		args := append([]any{now}, ended...)
		if err := pruneScript.Run(ctx, r.rdb, []string{r.names.cooldowns}, args...).Err(); err != nil {
			r.logger.Warn("delete ended cooldowns failed", "error", err)
		}
	}
	return nil
}

// apply changes the mirror by one published message:
//
//	set <unix ms> <field>   the cooldown of field lasts at least until then
//	del <field>             the cooldown of field was cleared
//	fail <unix ms> <field>  the candidate has a failure count until then
//	ok <field>              the candidate's failure count was cleared
//
// The field comes last because a model name may contain spaces.
func (r *Router) apply(payload string) {
	op, rest, _ := strings.Cut(payload, " ")
	switch op {
	case "set", "fail":
		value, field, _ := strings.Cut(rest, " ")
		ms, err := strconv.ParseInt(value, 10, 64)
		e, ok := parseField(field)
		if err != nil || !ok {
			break
		}
		if op == "set" {
			r.mirror.setUntil(e, ms)
		} else {
			r.mirror.setFailing(e, ms)
		}
		return
	case "del", "ok":
		e, ok := parseField(rest)
		if !ok {
			break
		}
		if op == "del" {
			r.mirror.clearUntil(e)
		} else {
			r.mirror.clearFailing(e)
		}
		return
	}
	r.logger.Warn("ignore malformed router message", "payload", payload)
}

func isTimeout(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

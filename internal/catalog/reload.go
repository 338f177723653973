package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/aihigress/aihigress/internal/providers"
	"github.com/aihigress/aihigress/internal/secrets"
	"github.com/aihigress/aihigress/internal/store"
)

// reloadChannel is the Redis channel, after REDIS_PREFIX, on which writers
// announce catalog changes.
const reloadChannel = "catalog:reload"

// ReloaderOptions configures a Reloader.
type ReloaderOptions struct {
	Store  *store.Store
	Cipher *secrets.Cipher
	Redis  *redis.Client
	// Prefix is REDIS_PREFIX. Processes reload each other only when they
	// share it.
	Prefix string
	// Interval is the period of the fallback reload, which catches changes
	// whose notification was lost. Zero turns it off.
	Interval time.Duration
	Logger   *slog.Logger
}

// Reloader keeps a *providers.Catalog equal to the database. It reloads on
// every notification on the Redis channel and every Interval, and applies
// the result with Catalog.Replace, so that every holder of the catalog sees
// it. Create it with NewReloader.
type Reloader struct {
	catalog  *providers.Catalog
	loader   *loader
	redis    *redis.Client
	prefix   string
	channel  string
	interval time.Duration
	logger   *slog.Logger

	// reloadMu serializes load-and-replace, so that a reload that read the
	// tables before a write cannot replace the result of one that read them
	// after it.
	reloadMu sync.Mutex

	stop context.CancelFunc
	done chan struct{}
}

// NewReloader returns a Reloader that keeps catalog current. Call Reload
// for the first load and Start to follow changes.
func NewReloader(catalog *providers.Catalog, opts ReloaderOptions) *Reloader {
	return &Reloader{
		catalog:  catalog,
		loader:   newLoader(opts.Store, opts.Cipher, opts.Logger),
		redis:    opts.Redis,
		prefix:   opts.Prefix,
		channel:  opts.Prefix + reloadChannel,
		interval: opts.Interval,
		logger:   opts.Logger,
	}
}

// Reload loads the catalog from the database and replaces the contents of
// the Reloader's catalog. On error the catalog keeps its contents.
func (r *Reloader) Reload(ctx context.Context) error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()

	next, err := r.loader.load(ctx)
	if err != nil {
		return err
	}
	r.catalog.Replace(next)
	return nil
}

// Notify reloads this process's catalog, then publishes a notification so
// that every other Reloader with the same prefix reloads. Writers call it
// after each committed change.
func (r *Reloader) Notify(ctx context.Context) error {
	reloadErr := r.Reload(ctx)
	publishErr := r.publish(ctx)
	return errors.Join(reloadErr, publishErr)
}

// Publish makes every Reloader whose prefix is prefix (REDIS_PREFIX)
// reload. Use it in a process without a Reloader, because Reloader.Notify
// also reloads the local catalog.
func Publish(ctx context.Context, rdb *redis.Client, prefix string) error {
	channel := prefix + reloadChannel
	if err := rdb.Publish(ctx, channel, "reload").Err(); err != nil {
		return fmt.Errorf("publish catalog change on %s: %w", channel, err)
	}
	return nil
}

func (r *Reloader) publish(ctx context.Context) error {
	return Publish(ctx, r.redis, r.prefix)
}

// Start subscribes to the notification channel and then follows changes in
// the background until ctx ends or Stop is called. It returns once the
// subscription is active, so that a notification published afterwards is
// never missed.
func (r *Reloader) Start(ctx context.Context) error {
	pubsub := r.redis.Subscribe(ctx, r.channel)
	if _, err := pubsub.Receive(ctx); err != nil {
		_ = pubsub.Close()
		return fmt.Errorf("subscribe to %s: %w", r.channel, err)
	}

	ctx, r.stop = context.WithCancel(ctx)
	r.done = make(chan struct{})
	go r.run(ctx, pubsub)
	r.logger.Info("catalog reloader started", "channel", r.channel, "interval", r.interval)
	return nil
}

// Stop ends the background reloads started by Start and waits for them.
func (r *Reloader) Stop() {
	if r.stop == nil {
		return
	}
	r.stop()
	<-r.done
}

func (r *Reloader) run(ctx context.Context, pubsub *redis.PubSub) {
	defer close(r.done)
	defer pubsub.Close()

	// go-redis resubscribes after a lost connection. Notifications sent
	// while it was down are lost, which the periodic reload makes up for.
	messages := pubsub.Channel()
	var tick <-chan time.Time
	if r.interval > 0 {
		ticker := time.NewTicker(r.interval)
		defer ticker.Stop()
		tick = ticker.C
	}

	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-messages:
			if !ok {
				return
			}
			drain(messages)
			r.reloadAndLog(ctx, "notification")
		case <-tick:
			r.reloadAndLog(ctx, "interval")
		}
	}
}

// drain drops the notifications that are already queued, because one
// reload covers all of them.
func drain(messages <-chan *redis.Message) {
	for {
		select {
		case <-messages:
		default:
			return
		}
	}
}

func (r *Reloader) reloadAndLog(ctx context.Context, trigger string) {
	if err := r.Reload(ctx); err != nil {
		if ctx.Err() == nil {
			r.logger.Error("catalog reload failed; keeping the previous catalog", "trigger", trigger, "error", err)
		}
		return
	}
	r.logger.Debug("catalog reloaded", "trigger", trigger)
}

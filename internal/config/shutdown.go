package config

import (
	"fmt"
	"time"
)

// Shutdown configures how `serve` and `worker` stop after SIGTERM or
// SIGINT.
type Shutdown struct {
	// Timeout bounds the shutdown of `serve`, from the signal to the end of
	// the last write of the request log.
	Timeout time.Duration
	// DrainDelay is how long `serve` keeps serving after the signal with
	// /readyz returning 503, so that load balancers stop sending requests
	// before the listener closes. It counts toward Timeout and is at most
	// half of it, which leaves the other half for open requests to end.
	DrainDelay time.Duration
	// WorkerStopTimeout is how long `worker` lets running activities finish
	// after it stops polling. Activities still running then are canceled and
	// retried on another worker after their heartbeat timeout. Zero cancels
	// them at once.
	WorkerStopTimeout time.Duration
}

func loadShutdown(env *lookup) Shutdown {
	return Shutdown{
		Timeout:           env.duration("SHUTDOWN_TIMEOUT", 15*time.Second),
		DrainDelay:        env.duration("SHUTDOWN_DRAIN_DELAY", 0),
		WorkerStopTimeout: env.duration("WORKER_STOP_TIMEOUT", 20*time.Second),
	}
}

func (s Shutdown) validate() error {
	if s.Timeout < time.Second {
		return fmt.Errorf("invalid configuration: SHUTDOWN_TIMEOUT must be at least 1s, got %s", s.Timeout)
	}
	if s.DrainDelay > s.Timeout/2 {
		return fmt.Errorf("invalid configuration: SHUTDOWN_DRAIN_DELAY (%s) must be at most half of SHUTDOWN_TIMEOUT (%s), so that open requests have time to end after it",
			s.DrainDelay, s.Timeout)
	}
	return nil
}

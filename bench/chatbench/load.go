package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// loadOptions shapes a closed-loop load: a fixed number of clients, each
// starting its next iteration when the previous one ends.
type loadOptions struct {
	// ramp is the time before the measurement window opens, which lets the
	// load reach a steady state.
	ramp   time.Duration
	window time.Duration
	// maxPerClient caps the iterations of each client.
	maxPerClient int

	// onWindowOpen and onWindowClose, when set, run at the window edges.
	onWindowOpen  func()
	onWindowClose func()
}

// loadResult counts the iterations of a load.
type loadResult struct {
	window time.Duration
	// inWindow counts the iterations that succeeded and ended inside the
	// window.
	inWindow int64
	total    int64
	errors   int64
}

// perSecond is the rate of iterations that ended inside the window.
func (r loadResult) perSecond() float64 {
	return float64(r.inWindow) / r.window.Seconds()
}

// sumLoads adds up the results of several loads.
func sumLoads(results []loadResult) loadResult {
	var sum loadResult
	for _, r := range results {
		sum.window += r.window
		sum.inWindow += r.inWindow
		sum.total += r.total
		sum.errors += r.errors
	}
	return sum
}

// errorPause keeps a client whose iterations fail at once from spinning.
const errorPause = 100 * time.Millisecond

// runLoad runs clients goroutines that call iterate until the window
// closes, ctx ends or they reach maxPerClient. iterate returns the time its
// iteration ended. Iterations still running when the window closes finish
// but do not count.
func runLoad(ctx context.Context, clients int, opts loadOptions, iterate func(ctx context.Context, client, iteration int) (time.Time, error)) loadResult {
	start := time.Now()
	windowOpen := start.Add(opts.ramp)
	windowClose := windowOpen.Add(opts.window)

	if opts.onWindowOpen != nil {
		timer := time.AfterFunc(opts.ramp, opts.onWindowOpen)
		defer timer.Stop()
	}
	if opts.onWindowClose != nil {
		timer := time.AfterFunc(opts.ramp+opts.window, opts.onWindowClose)
		defer timer.Stop()
	}

	var inWindow, total, failures atomic.Int64
	var wg sync.WaitGroup
	for client := range clients {
		wg.Go(func() {
			for iteration := 0; iteration < opts.maxPerClient && ctx.Err() == nil && time.Now().Before(windowClose); iteration++ {
				ended, err := iterate(ctx, client, iteration)
				total.Add(1)
				if err != nil {
					failures.Add(1)
					time.Sleep(errorPause)
					continue
				}
				if !ended.Before(windowOpen) && ended.Before(windowClose) {
					inWindow.Add(1)
				}
			}
		})
	}
	wg.Wait()

	return loadResult{window: opts.window, inWindow: inWindow.Load(), total: total.Load(), errors: failures.Load()}
}

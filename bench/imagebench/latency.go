package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// imagePath is one way to generate, store and read back an image.
type imagePath struct {
	name string
	run  func(ctx context.Context, prompt string) (sample, error)
}

// latencyResult holds the samples of each path, in the order of paths.
type latencyResult struct {
	paths   []string
	samples [][]sample
	// failures counts the failed samples of each path, and firstError
	// keeps the first failure's message.
	failures   []int
	firstError string
	// started is when the first counted sample started, after the warmup.
	started  time.Time
	duration time.Duration
}

// measureLatency runs warmup rounds and then rounds rounds. A round makes one
// image generation on every path with the same prompt, and the order of the
// paths turns by one each round, so that load from other processes falls
// on all of them alike. With concurrency above 1, that many clients run
// rounds at the same time.
func measureLatency(ctx context.Context, paths []imagePath, warmup, rounds, concurrency int, timeout time.Duration, logger *slog.Logger) (*latencyResult, error) {
	result := &latencyResult{samples: make([][]sample, len(paths)), failures: make([]int, len(paths))}
	for _, p := range paths {
		result.paths = append(result.paths, p.name)
	}

	for i := range warmup {
		for _, p := range paths {
			runCtx, cancel := context.WithTimeout(ctx, timeout)
			_, err := p.run(runCtx, fmt.Sprintf("imagebench warmup %d", i))
			cancel()
			if err != nil {
				return nil, fmt.Errorf("warmup on %s: %w", p.name, err)
			}
		}
	}

	result.started = time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := 0
	takeRound := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next >= rounds || ctx.Err() != nil {
			return 0, false
		}
		next++
		return next - 1, true
	}
	for client := range concurrency {
		wg.Go(func() {
			for {
				round, ok := takeRound()
				if !ok {
					return
				}
				if round > 0 && round%25 == 0 && client == 0 {
					logger.Info("latency rounds", "done", round, "of", rounds)
				}
				for k := range paths {
					index := (round + k) % len(paths)
					runCtx, cancel := context.WithTimeout(ctx, timeout)
					s, err := paths[index].run(runCtx, fmt.Sprintf("imagebench round %d", round))
					cancel()
					mu.Lock()
					if err != nil {
						result.failures[index]++
						if result.firstError == "" {
							result.firstError = paths[index].name + ": " + err.Error()
						}
					} else {
						result.samples[index] = append(result.samples[index], s)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	result.duration = time.Since(result.started)
	return result, ctx.Err()
}

// percentile returns the p-th percentile (0 < p <= 100) of values by the
// nearest-rank method, or 0 when values is empty.
func percentile(values []time.Duration, p float64) time.Duration {
	if len(values) == 0 {
		return 0
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	rank := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// field extracts one step of each sample.
func field(samples []sample, step func(sample) time.Duration) []time.Duration {
	values := make([]time.Duration, len(samples))
	for i, s := range samples {
		values[i] = step(s)
	}
	return values
}

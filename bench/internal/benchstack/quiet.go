package benchstack

import (
	"context"
	"log/slog"
	"time"
)

// Limits of WaitForQuiet.
const (
	QuietBusyPercent = 20
	QuietMaxWait     = time.Minute
)

// WaitForQuiet waits until less than QuietBusyPercent of the machine's CPU
// time was busy over one second, or QuietMaxWait has passed. Work that goes
// on after a load ends, such as Temporal's timers and visibility records or
// another program on the machine, would otherwise slow the next window.
func WaitForQuiet(ctx context.Context, logger *slog.Logger) error {
	started := time.Now()
	for time.Since(started) < QuietMaxWait {
		busyBefore, totalBefore, err := MachineCPU()
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		busyAfter, totalAfter, err := MachineCPU()
		if err != nil {
			return err
		}
		if total := totalAfter - totalBefore; total > 0 && 100*(busyAfter-busyBefore) < QuietBusyPercent*total {
			return nil
		}
	}
	logger.Warn("the machine is still busy; starting the next window anyway", "waited", QuietMaxWait, "busy_percent_limit", QuietBusyPercent)
	return nil
}

package benchdoc

import (
	"context"
	"os"
	"os/exec"
	"strings"
)

// CPUModel returns the model name of the first CPU in /proc/cpuinfo.
func CPUModel() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "model unknown"
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "model unknown"
}

// KernelRelease returns "Linux" and the kernel release.
func KernelRelease() string {
	raw, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "Linux"
	}
	return "Linux " + strings.TrimSpace(string(raw))
}

// GitRevision describes the checked-out commit of repoRoot, noting
// uncommitted changes outside bench/ and docs/, which do not change what is
// measured.
func GitRevision(ctx context.Context, repoRoot string) string {
	head, err := exec.CommandContext(ctx, "git", "-C", repoRoot, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown (git rev-parse failed)"
	}
	revision := strings.TrimSpace(string(head))
	status, err := exec.CommandContext(ctx, "git", "-C", repoRoot, "status", "--porcelain", "--", ".", ":!bench", ":!docs").Output()
	if err == nil && len(strings.TrimSpace(string(status))) > 0 {
		revision += " with uncommitted changes"
	}
	return revision
}

// LoadAverage returns the 1, 5 and 15 minute load averages from
// /proc/loadavg, or "unknown". Benchmarks report it because other processes
// on the machine skew their figures.
func LoadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	fields := strings.Fields(string(raw))
	if len(fields) < 3 {
		return "unknown"
	}
	return strings.Join(fields[:3], " ")
}

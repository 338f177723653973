// Package benchstack holds the process handling that the benchmark commands
// share: child processes with their logs, and the CPU and memory figures of
// processes read from /proc.
package benchstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StopGrace is how long a child may take to exit after SIGTERM before it is
// killed.
const StopGrace = 15 * time.Second

// Child is an `aihigress` subcommand running as a separate process, with its
// standard output and error written to a log file.
type Child struct {
	// Name and LogPath are set by StartChild.
	Name    string
	LogPath string

	cmd     *exec.Cmd
	logFile *os.File

	// ready is closed when the log contains the marker passed to StartChild.
	ready chan struct{}
	// exited is closed when the process has exited, after waitErr is set.
	exited  chan struct{}
	waitErr error

	stopOnce sync.Once
}

// StartChild runs binary with args and env, logging to dir/name.log.
func StartChild(name, binary string, args, env []string, dir, marker string) (*Child, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log file for %s: %w", name, err)
	}

	c := &Child{
		Name:    name,
		LogPath: logPath,
		logFile: logFile,
		ready:   make(chan struct{}),
		exited:  make(chan struct{}),
	}
	out := &markerWriter{dst: logFile, marker: []byte(marker), found: c.ready}
	c.cmd = exec.Command(binary, args...)
	c.cmd.Env = env
	c.cmd.Stdout = out
	c.cmd.Stderr = out
	if err := c.cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}

	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

func (c *Child) PID() int {
	return c.cmd.Process.Pid
}

// WaitReady waits until the child logs its marker, exits or ctx ends.
func (c *Child) WaitReady(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-c.exited:
		return fmt.Errorf("%s exited before it was ready (%v); see %s", c.Name, c.waitErr, c.LogPath)
	case <-ctx.Done():
		return fmt.Errorf("wait for %s to start: %w; see %s", c.Name, ctx.Err(), c.LogPath)
	}
}

// Stop sends SIGTERM, kills the process after StopGrace and closes the log.
func (c *Child) Stop() error {
	var err error
	c.stopOnce.Do(func() {
		select {
		case <-c.exited:
		default:
			if signalErr := c.cmd.Process.Signal(syscall.SIGTERM); signalErr != nil && !errors.Is(signalErr, os.ErrProcessDone) {
				err = fmt.Errorf("send SIGTERM to %s: %w", c.Name, signalErr)
			}
			select {
			case <-c.exited:
			case <-time.After(StopGrace):
				_ = c.cmd.Process.Kill()
				<-c.exited
				err = fmt.Errorf("%s did not exit within %s of SIGTERM and was killed", c.Name, StopGrace)
			}
		}
		if closeErr := c.logFile.Close(); closeErr != nil && err == nil {
			err = fmt.Errorf("close log of %s: %w", c.Name, closeErr)
		}
	})
	return err
}

// markerWriter copies output to dst and closes found the first time marker
// appears, including when a write splits the marker.
type markerWriter struct {
	dst    io.Writer
	marker []byte
	found  chan struct{}

	mu   sync.Mutex
	tail []byte
	seen bool
}

func (w *markerWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	if !w.seen && len(w.marker) > 0 {
		window := append(w.tail, p...)
		if bytes.Contains(window, w.marker) {
			w.seen = true
			close(w.found)
		}
		keep := min(len(window), len(w.marker)-1)
		w.tail = append(w.tail[:0], window[len(window)-keep:]...)
	}
	w.mu.Unlock()
	return w.dst.Write(p)
}

// ProcStatus reads one kB field of /proc/<pid>/status, such as VmHWM, in
// bytes.
func ProcStatus(pid int, field string) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status of process %d: %w", pid, err)
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		value, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s of process %d: %w", field, pid, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("process %d has no %s field", pid, field)
}

// ResetPeakRSS makes VmHWM restart from the current RSS. Linux supports it
// since 4.0, by writing 5 to /proc/<pid>/clear_refs.
func ResetPeakRSS(pid int) error {
	path := fmt.Sprintf("/proc/%d/clear_refs", pid)
	if err := os.WriteFile(path, []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS of process %d: %w", pid, err)
	}
	return nil
}

// ProcStat holds the fields of /proc/<pid>/stat that the benchmarks use.
type ProcStat struct {
	Comm     string
	PPID     int
	CPUTicks int64 // utime + stime
}

func ReadProcStat(pid int) (ProcStat, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcStat{}, fmt.Errorf("read stat of process %d: %w", pid, err)
	}

	// comm may contain spaces and parentheses, so the fields after it are
	// found from the last ')'.
	line := string(raw)
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return ProcStat{}, fmt.Errorf("parse stat of process %d: no command name", pid)
	}
	fields := strings.Fields(line[end+1:])
	// fields[0] is field 3 (state), so field n is fields[n-3].
	if len(fields) < 13 {
		return ProcStat{}, fmt.Errorf("parse stat of process %d: %d fields", pid, len(fields)+2)
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return ProcStat{}, fmt.Errorf("parse ppid of process %d: %w", pid, err)
	}
	utime, err := strconv.ParseInt(fields[11], 10, 64)
	if err != nil {
		return ProcStat{}, fmt.Errorf("parse utime of process %d: %w", pid, err)
	}
	stime, err := strconv.ParseInt(fields[12], 10, 64)
	if err != nil {
		return ProcStat{}, fmt.Errorf("parse stime of process %d: %w", pid, err)
	}
	return ProcStat{Comm: line[open+1 : end], PPID: ppid, CPUTicks: utime + stime}, nil
}

// ListPIDs returns the numeric entries of /proc.
func ListPIDs() ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, entry := range entries {
		if pid, err := strconv.Atoi(entry.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// FindChildByExe returns the child of parent whose executable is exe.
func FindChildByExe(parent int, exe string) (int, error) {
	want, err := filepath.EvalSymlinks(exe)
	if err != nil {
		return 0, fmt.Errorf("resolve %s: %w", exe, err)
	}
	pids, err := ListPIDs()
	if err != nil {
		return 0, err
	}
	for _, pid := range pids {
		stat, err := ReadProcStat(pid)
		if err != nil || stat.PPID != parent {
			continue
		}
		if got, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && got == want {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no child of process %d runs %s", parent, want)
}

// CPUTicksByComm sums utime + stime over every process named comm. Processes
// that exited earlier are not counted.
func CPUTicksByComm(comm string) (int64, int, error) {
	pids, err := ListPIDs()
	if err != nil {
		return 0, 0, err
	}
	var ticks int64
	count := 0
	for _, pid := range pids {
		stat, err := ReadProcStat(pid)
		if err != nil || stat.Comm != comm {
			continue
		}
		ticks += stat.CPUTicks
		count++
	}
	return ticks, count, nil
}

// MachineCPU reads the busy and total ticks of all cores from /proc/stat.
func MachineCPU() (busy, total int64, err error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	first, _, _ := strings.Cut(string(raw), "\n")
	fields := strings.Fields(first)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("parse /proc/stat: unexpected first line %q", first)
	}
	// The fields are user, nice, system, idle, iowait, irq, softirq, steal,
	// guest and guest_nice. Guest time is already part of user and nice, so
	// only the first eight are added.
	for i, field := range fields[1:min(len(fields), 9)] {
		n, err := strconv.ParseInt(field, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parse /proc/stat field %d: %w", i+1, err)
		}
		total += n
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return busy, total, nil
}

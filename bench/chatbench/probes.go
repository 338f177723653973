package main

import (
	"sync"
	"time"

	"github.com/aihigress/aihigress/bench/internal/benchstack"
)

// clockTicksPerSecond is USER_HZ, the unit of the CPU times in /proc. It
// is 100 on every Linux architecture that Go supports.
const clockTicksPerSecond = 100

// cpuSource reads the CPU time of one process or group of processes, in
// clock ticks.
type cpuSource struct {
	name string
	read func() (int64, error)
}

// pidSource reads the process whose pid the function returns at each
// read, so that it follows a restarted child.
func pidSource(name string, pid func() int) cpuSource {
	return cpuSource{name: name, read: func() (int64, error) {
		stat, err := benchstack.ReadProcStat(pid())
		return stat.CPUTicks, err
	}}
}

// commSource sums every process named comm, such as the backends of a
// PostgreSQL server.
func commSource(name, comm string) cpuSource {
	return cpuSource{name: name, read: func() (int64, error) {
		ticks, _, err := benchstack.CPUTicksByComm(comm)
		return ticks, err
	}}
}

type cpuSnapshot struct {
	at    time.Time
	ticks []int64 // per source; -1 when it could not be read
	busy  int64
	total int64
}

// cpuUsage is the CPU time one source used over the measured windows.
type cpuUsage struct {
	name        string
	coreSeconds float64
	// percentOfCore is 100 when the source kept one core busy for the
	// whole time measured.
	percentOfCore float64
}

// phaseCPU is the CPU use of the processes over the measured windows.
type phaseCPU struct {
	interval  time.Duration
	processes []cpuUsage
	// machineBusy is the share of all cores' time that was not idle, in
	// percent.
	machineBusy float64
}

// cpuMeter adds up the CPU time of every source over one or more windows,
// each from a call of open to the next call of close. The methods may run
// on timer goroutines.
type cpuMeter struct {
	sources []cpuSource

	mu       sync.Mutex
	start    *cpuSnapshot
	ticks    []int64 // per source; -1 once a source could not be read
	busy     int64
	total    int64
	interval time.Duration
	windows  int
}

func newCPUMeter(sources []cpuSource) *cpuMeter {
	return &cpuMeter{sources: sources, ticks: make([]int64, len(sources))}
}

func (m *cpuMeter) snapshot() *cpuSnapshot {
	snap := &cpuSnapshot{at: time.Now(), ticks: make([]int64, len(m.sources))}
	for i, source := range m.sources {
		ticks, err := source.read()
		if err != nil {
			ticks = -1
		}
		snap.ticks[i] = ticks
	}
	if busy, total, err := benchstack.MachineCPU(); err == nil {
		snap.busy, snap.total = busy, total
	}
	return snap
}

func (m *cpuMeter) open() {
	snap := m.snapshot()
	m.mu.Lock()
	m.start = snap
	m.mu.Unlock()
}

func (m *cpuMeter) close() {
	end := m.snapshot()
	m.mu.Lock()
	defer m.mu.Unlock()
	start := m.start
	if start == nil {
		return
	}
	m.start = nil

	for i := range m.sources {
		if m.ticks[i] < 0 || start.ticks[i] < 0 || end.ticks[i] < 0 {
			m.ticks[i] = -1
			continue
		}
		m.ticks[i] += end.ticks[i] - start.ticks[i]
	}
	m.busy += end.busy - start.busy
	m.total += end.total - start.total
	m.interval += end.at.Sub(start.at)
	m.windows++
}

// usage returns the CPU use over the closed windows, and false when no
// window closed.
func (m *cpuMeter) usage() (phaseCPU, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.windows == 0 {
		return phaseCPU{}, false
	}

	result := phaseCPU{interval: m.interval}
	for i, source := range m.sources {
		if m.ticks[i] < 0 {
			continue
		}
		seconds := float64(m.ticks[i]) / clockTicksPerSecond
		result.processes = append(result.processes, cpuUsage{
			name:          source.name,
			coreSeconds:   seconds,
			percentOfCore: 100 * seconds / m.interval.Seconds(),
		})
	}
	if m.total > 0 {
		result.machineBusy = 100 * float64(m.busy) / float64(m.total)
	}
	return result, true
}

// namedPID is a process whose memory is watched.
type namedPID struct {
	name string
	pid  int
}

// memoryResult is the peak RSS of each watched process during a phase.
type memoryResult struct {
	peaks []int64 // bytes, in the order of the watched processes
	names []string
	// fromHWM is true when the peaks are VmHWM after a reset at the start of
	// the phase; otherwise they are the highest VmRSS sampled.
	fromHWM bool
}

func (m memoryResult) total() int64 {
	var sum int64
	for _, peak := range m.peaks {
		sum += peak
	}
	return sum
}

// memoryProbe resets the peak RSS of the watched processes and samples
// their RSS every interval, as a fallback when the reset is not allowed.
type memoryProbe struct {
	processes []namedPID
	resetOK   bool

	mu      sync.Mutex
	sampled []int64

	stop chan struct{}
	done chan struct{}
}

func startMemoryProbe(processes []namedPID, interval time.Duration) *memoryProbe {
	m := &memoryProbe{
		processes: processes,
		resetOK:   true,
		sampled:   make([]int64, len(processes)),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	for _, p := range processes {
		if err := benchstack.ResetPeakRSS(p.pid); err != nil {
			m.resetOK = false
		}
	}

	go func() {
		defer close(m.done)
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			m.sample()
			select {
			case <-m.stop:
				return
			case <-ticker.C:
			}
		}
	}()
	return m
}

func (m *memoryProbe) sample() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, p := range m.processes {
		if rss, err := benchstack.ProcStatus(p.pid, "VmRSS"); err == nil {
			m.sampled[i] = max(m.sampled[i], rss)
		}
	}
}

// finish stops sampling and returns the peaks.
func (m *memoryProbe) finish() memoryResult {
	close(m.stop)
	<-m.done
	m.sample()

	result := memoryResult{fromHWM: m.resetOK}
	for i, p := range m.processes {
		result.names = append(result.names, p.name)
		peak := m.sampled[i]
		if m.resetOK {
			if hwm, err := benchstack.ProcStatus(p.pid, "VmHWM"); err == nil {
				peak = hwm
			} else {
				result.fromHWM = false
			}
		}
		result.peaks = append(result.peaks, peak)
	}
	return result
}

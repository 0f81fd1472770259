package locust

import "time"

// cpuMeter measures the process's CPU use between two samples, in
// percent of one core (psutil's Process.cpu_percent, which a Python worker
// reports): 150 means one and a half cores busy.
type cpuMeter struct {
	lastWall time.Time
	lastCPU  time.Duration
	ok       bool
}

// sample returns the CPU percentage since the previous sample (0 on the
// first).
func (m *cpuMeter) sample(now time.Time) float64 {
	cpu, ok := processCPU()
	if !ok {
		return 0
	}
	defer func() { m.lastWall, m.lastCPU, m.ok = now, cpu, true }()
	if !m.ok {
		return 0
	}
	wall := now.Sub(m.lastWall)
	if wall <= 0 {
		return 0
	}
	return 100 * float64(cpu-m.lastCPU) / float64(wall)
}

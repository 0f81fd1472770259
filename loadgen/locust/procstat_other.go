//go:build !unix

package locust

import (
	"runtime/metrics"
	"time"
)

func processCPU() (time.Duration, bool) {
	s := []metrics.Sample{{Name: "/cpu/classes/total:cpu-seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64 {
		return 0, false
	}
	return time.Duration(s[0].Value.Float64() * float64(time.Second)), true
}

func processRSS() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

package sim

import (
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/prometheus/promql"

	"github.com/canarylab/canarylab/orchestrator/metricstore"
)

// Stores are recycled between runs: opening one (a TSDB head, its
// buffers, a working directory) and closing it cost as much as a short
// run's samples. A recycled head only accepts samples after the ones it
// held, so each run on it is shifted in the store's time: its virtual
// time zero is the store's base. The analysis and the report never see
// the shift, only the store does, and PromQL does not either as long as
// no query reads absolute time (see shape.absolute): every function of a
// range and the lookback work on differences of timestamps. Runs whose
// queries read it get a new store at the fixed epoch, as before.
type pooled struct {
	store  *metricstore.Store
	engine *promql.Engine
	// base is where the run's virtual time zero is in the store.
	base time.Duration
}

var pool struct {
	sync.Mutex
	free []pooled
}

// poolSize bounds the stores kept: one or two a worker.
func poolSize() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// shared is the PromQL engine of sim engines given none: one for all, so
// that their runs can share stores (a store is bound to its engine).
var shared = sync.OnceValue(func() *promql.Engine { return metricstore.NewEngine(nil) })

// getStore returns an empty store for a run with engine, recycled when
// it may be.
func getStore(engine *promql.Engine, recycle bool) (pooled, error) {
	if recycle {
		pool.Lock()
		for i := len(pool.free) - 1; i >= 0; i-- {
			if p := pool.free[i]; p.engine == engine {
				pool.free = append(pool.free[:i], pool.free[i+1:]...)
				pool.Unlock()
				return p, nil
			}
		}
		pool.Unlock()
	}
	s, err := metricstore.Open(metricstore.Options{Engine: engine})
	return pooled{store: s, engine: engine}, err
}

// putStore empties p's store after a run whose last virtual time was end
// and keeps it for another run, or closes it when it must not be recycled
// or emptying it fails. When enough are kept, the oldest is closed: it
// may belong to a PromQL engine no longer used (a finished sweep's).
func putStore(p pooled, end time.Duration, recycle bool) {
	if !recycle {
		_ = p.store.Close()
		return
	}
	// The next run starts on a whole day after this one's end, so that
	// its virtual times are those of this run, shifted by days.
	const day = 24 * time.Hour
	p.base += (end/day + 1) * day
	if p.store.Recycle(epoch.Add(p.base)) != nil {
		_ = p.store.Close()
		return
	}
	pool.Lock()
	var evicted *metricstore.Store
	if len(pool.free) >= poolSize() {
		evicted = pool.free[0].store
		pool.free = append(pool.free[:0], pool.free[1:]...)
	}
	pool.free = append(pool.free, p)
	pool.Unlock()
	if evicted != nil {
		_ = evicted.Close()
	}
}

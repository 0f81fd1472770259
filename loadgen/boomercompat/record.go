package boomercompat

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"
	"unsafe"

	"github.com/myzhan/boomer"

	"github.com/canarylab/canarylab/loadgen/stats"
)

// defaultBoomer is the boomer that boomer's package-level RecordSuccess
// and RecordFailure report to. boomer offers no way to route them anywhere
// but its own runners, and a task's code calls exactly those functions, so
// the recorder swaps this variable while it is installed.
//
//go:linkname defaultBoomer github.com/myzhan/boomer.defaultBoomer
var defaultBoomer *boomer.Boomer

// installMu serialises installs: boomer's default is one per process, so
// one recorder at a time may own it.
var installMu sync.Mutex

// recorder receives what boomer tasks record and writes it to a
// stats.Stats.
//
// boomer's RecordSuccess sends each record on a channel of the default
// Boomer's local runner, which boomer only builds when it runs its own
// runner (with its console output and Locust 1 client). The recorder builds
// that runner's statistics channels itself, through reflection on boomer
// v1.6.0's unexported fields (checked at install, so another boomer
// version fails loudly rather than silently dropping records), and drains
// them with the record's exact values.
type recorder struct {
	st      *stats.Stats
	succ    reflect.Value
	fail    reflect.Value
	flushed chan struct{}
	prev    *boomer.Boomer
	stop    chan struct{}
	drained sync.WaitGroup
	success func(requestType, name string, responseTime any, responseLength int64)
	failure func(requestType, name string, responseTime any, exception string)
}

// recordBuffer is the capacity of the record channels: tasks block on a
// full one, as they do in boomer (whose channels hold 100).
const recordBuffer = 4096

// installRecorder makes boomer's RecordSuccess, RecordFailure and legacy
// events record to st until the returned recorder is uninstalled.
func installRecorder(st *stats.Stats) (*recorder, error) {
	if !installMu.TryLock() {
		return nil, errors.New("boomercompat: another pool already receives boomer's records in this process (close it first)")
	}
	b := boomer.NewStandaloneBoomer(0, 0)
	succ, fail, err := plantChannels(b)
	if err != nil {
		installMu.Unlock()
		return nil, err
	}
	r := &recorder{st: st, succ: succ, fail: fail, prev: defaultBoomer, stop: make(chan struct{}), flushed: make(chan struct{})}
	r.drain(succ, func(v reflect.Value) {
		st.Success(field(v, "requestType").String(), field(v, "name").String(),
			time.Duration(field(v, "responseTime").Int())*time.Millisecond, field(v, "responseLength").Int())
	})
	r.drain(fail, func(v reflect.Value) {
		st.Failure(field(v, "requestType").String(), field(v, "name").String(),
			time.Duration(field(v, "responseTime").Int())*time.Millisecond, 0, field(v, "error").String())
	})
	// boomer's legacy events carry the response time as an int64 or a
	// float64 (milliseconds); boomer panics on anything else, so do we.
	r.success = func(requestType, name string, responseTime any, responseLength int64) {
		st.Success(requestType, name, legacyResponseTime(responseTime), responseLength)
	}
	r.failure = func(requestType, name string, responseTime any, exception string) {
		st.Failure(requestType, name, legacyResponseTime(responseTime), 0, exception)
	}
	if err := boomer.Events.Subscribe("request_success", r.success); err != nil {
		r.close()
		return nil, fmt.Errorf("boomercompat: subscribe to request_success: %w", err)
	}
	if err := boomer.Events.Subscribe("request_failure", r.failure); err != nil {
		_ = boomer.Events.Unsubscribe("request_success", r.success)
		r.close()
		return nil, fmt.Errorf("boomercompat: subscribe to request_failure: %w", err)
	}
	defaultBoomer = b
	return r, nil
}

// flushMarker is the request type of the record flush sends: no task
// reports it (Locust's request types are words like "GET" or "http").
const flushMarker = "\x00canarylab-flush"

// flush returns once every record sent before it is in the stats: the
// channels are drained in order, so a marker sent after them arrives
// after them. A worker flushes when its users stopped and before it
// reports, so the master counts every request the tasks recorded.
func (r *recorder) flush() {
	select {
	case <-r.stop:
		return // uninstalled: nothing drains, nothing is left
	default:
	}
	for _, ch := range []reflect.Value{r.succ, r.fail} {
		marker := reflect.New(ch.Type().Elem().Elem())
		set(marker.Elem().FieldByName("requestType"), reflect.ValueOf(flushMarker))
		ch.Send(marker)
		<-r.flushed
	}
}

// uninstall gives boomer its default back. Records sent after it are
// boomer's again (dropped, as boomer drops them with no runner), so the
// tasks must have stopped first.
func (r *recorder) uninstall() {
	_ = boomer.Events.Unsubscribe("request_success", r.success)
	_ = boomer.Events.Unsubscribe("request_failure", r.failure)
	defaultBoomer = r.prev
	r.close()
}

func (r *recorder) close() {
	close(r.stop)
	r.drained.Wait()
	installMu.Unlock()
}

// drain records what arrives on ch until stop, then what is still queued.
func (r *recorder) drain(ch reflect.Value, record func(reflect.Value)) {
	r.drained.Add(1)
	go func() {
		defer r.drained.Done()
		cases := []reflect.SelectCase{
			{Dir: reflect.SelectRecv, Chan: ch},
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(r.stop)},
		}
		for {
			chosen, v, _ := reflect.Select(cases)
			if chosen == 1 {
				for {
					v, ok := ch.TryRecv()
					if !ok {
						return
					}
					r.take(v.Elem(), record)
				}
			}
			r.take(v.Elem(), record)
		}
	}()
}

// take records v, or answers a flush.
func (r *recorder) take(v reflect.Value, record func(reflect.Value)) {
	if field(v, "requestType").String() == flushMarker {
		r.flushed <- struct{}{}
		return
	}
	record(v)
}

// plantChannels gives b a local runner whose statistics channels exist,
// so that b.RecordSuccess and b.RecordFailure send on them, and returns
// those two channels.
func plantChannels(b *boomer.Boomer) (succ, fail reflect.Value, err error) {
	defer func() {
		// reflect panics on a field that is not there: another boomer.
		if p := recover(); p != nil {
			err = fmt.Errorf("boomercompat: this boomer is not v1.6.0 (%v); require github.com/myzhan/boomer v1.6.0", p)
		}
	}()
	lrField := reflect.ValueOf(b).Elem().FieldByName("localRunner")
	lr := reflect.New(lrField.Type().Elem())
	statsField := lr.Elem().FieldByName("stats")
	rs := reflect.New(statsField.Type().Elem())
	succField := rs.Elem().FieldByName("requestSuccessChan")
	failField := rs.Elem().FieldByName("requestFailureChan")
	succ = reflect.MakeChan(succField.Type(), recordBuffer)
	fail = reflect.MakeChan(failField.Type(), recordBuffer)
	for _, name := range []string{"requestType", "name", "responseTime", "responseLength"} {
		mustField(succ.Type().Elem().Elem(), name)
	}
	for _, name := range []string{"requestType", "name", "responseTime", "error"} {
		mustField(fail.Type().Elem().Elem(), name)
	}
	set(succField, succ)
	set(failField, fail)
	set(statsField, rs)
	set(lrField, lr)
	return succ, fail, nil
}

func mustField(t reflect.Type, name string) {
	if _, ok := t.FieldByName(name); !ok {
		panic(fmt.Sprintf("%s has no field %s", t, name))
	}
}

// set assigns v to an unexported (addressable) field.
func set(f, v reflect.Value) {
	reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Set(v)
}

// field reads an unexported field of a record struct.
func field(v reflect.Value, name string) reflect.Value { return v.FieldByName(name) }

func legacyResponseTime(v any) time.Duration {
	switch t := v.(type) {
	case int64:
		return time.Duration(t) * time.Millisecond
	case float64:
		return time.Duration(t * float64(time.Millisecond))
	default:
		panic(fmt.Sprintf("responseTime should be float64 or int64, not %T", v))
	}
}

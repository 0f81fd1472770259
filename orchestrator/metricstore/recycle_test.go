package metricstore

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// A recycled store holds nothing of before, takes samples from mint on
// and answers the same data, shifted, exactly as a new store does.
func TestRecycle(t *testing.T) {
	feed := func(s *Store, base time.Time) {
		t.Helper()
		app := s.Appender()
		for i := range 13 {
			for code, per := range map[string]float64{"200": 9.5, "503": 0.5} {
				l := labels.FromStrings("__name__", "req_total", "code", code)
				if err := app.Add(l, base.Add(time.Duration(i)*5*time.Second), per*float64(i*i)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	const q = `sum(rate(req_total{code!~"5.*"}[1m])) / sum(rate(req_total[1m])) * 100`
	fresh := openTestStore(t, Options{})
	feed(fresh, t0)
	want, err := fresh.Query(context.Background(), q, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}

	s := openTestStore(t, Options{})
	feed(s, t0)
	if err := s.Recycle(t0.Add(time.Minute)); err == nil {
		t.Error("recycling at the newest sample: no error")
	}
	later := t0.Add(24 * time.Hour)
	if err := s.Recycle(later); err != nil {
		t.Fatal(err)
	}
	if n := s.head.NumSeries(); n != 0 {
		t.Errorf("%d series after Recycle", n)
	}
	if v, err := s.QueryVector(context.Background(), `req_total`, later); err != nil || len(v) != 0 {
		t.Errorf("after Recycle: %v, %v", v, err)
	}
	if err := s.Append(labels.FromStrings("__name__", "old"), later.Add(-time.Millisecond), 1); err == nil {
		t.Error("a sample before mint was taken")
	}
	feed(s, later)
	got, err := s.Query(context.Background(), q, later.Add(time.Minute))
	if err != nil || got != want {
		t.Errorf("recycled: %v, %v; new: %v", got, err, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Recycle(later.Add(48 * time.Hour)); err != ErrClosed {
		t.Errorf("Recycle after Close: %v", err)
	}
}

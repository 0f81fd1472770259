package sim

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/canarylab/canarylab/mockserver"
	"github.com/canarylab/canarylab/mockserver/behavior"
	"github.com/canarylab/canarylab/orchestrator/mesh"
	"github.com/canarylab/canarylab/orchestrator/scenario"
	"github.com/canarylab/canarylab/scenarios"
)

// Drawing counts by cell gives the series the distribution that drawing
// each request gives: per series and scrape interval, the same mean and
// variance, and the same covariance between the primary's and the
// mirrored canary's totals, for models with every kind of case (errors,
// silent faults, a slow body, a cap) and a mirrored, split route.
func TestCellsDrawAsEachRequest(t *testing.T) {
	const steps = 4000
	canary := mustModel(t, behavior.Profile{
		Latency: latency(t, "lognormal(20ms,80ms) cap 300ms"),
		Errors:  &behavior.Errors{Rate: 0.15, Codes: map[int]float64{500: 2, 503: 1}},
		Faults:  faults(t, "reset:0.02,hang(10s):0.02,slowBody(1s):0.03"),
	})
	primary := mustModel(t, behavior.Profile{Latency: latency(t, "uniform(1ms,40ms)")})
	collect := func(each bool) map[string][]float64 {
		w := &world{r: rand.New(rand.NewPCG(3, 4)), rate: 20, matched: 1, primary: primary, canary: canary,
			primaryW: 70, canaryW: 30, mirrored: true, mirrorWeight: 50, ns: "test", target: "podinfo",
			byCode: [2]map[int]*codeSeries{{}, {}}, tables: map[tableKey]*table{}, shape: &shape{all: true}}
		w.s = mustScenario(t)
		incs := map[string][]float64{}
		last := map[*series]float64{}
		for i := range steps {
			if each {
				w.trafficEach(5 * time.Second)
			} else {
				w.trafficCells(5 * time.Second)
			}
			for _, h := range w.hists {
				h.flush()
			}
			for _, s := range w.all {
				if strings.HasSuffix(s.lbls.Get("__name__"), "_sum") {
					continue
				}
				k := s.lbls.String()
				if incs[k] == nil {
					incs[k] = make([]float64, steps)
				}
				incs[k][i] = s.v - last[s]
				last[s] = s.v
			}
		}
		return incs
	}
	cells, each := collect(false), collect(true)
	for k, a := range each {
		b := cells[k]
		ma, va := meanVar(a)
		if b == nil {
			// A series so rare that one way never drew it.
			if ma*steps > 3 {
				t.Errorf("%s: drawn %.1f times by request, never by cell", k, ma*steps)
			}
			continue
		}
		mb, vb := meanVar(b)
		if se := math.Sqrt((va + vb) / steps); math.Abs(ma-mb) > 4.5*se+1e-9 {
			t.Errorf("%s: mean %.4f by request, %.4f by cell (±%.4f)", k, ma, mb, 4.5*se)
		}
		// The variance of a sample variance is about 2σ⁴/n for the
		// near-normal counts of the busy series.
		if ma > 5 && math.Abs(va-vb) > 4.5*math.Sqrt(2*(va*va+vb*vb)/steps) {
			t.Errorf("%s: variance %.3f by request, %.3f by cell", k, va, vb)
		}
	}
	// Mirrored requests are the primary's own: the totals covary.
	total := func(incs map[string][]float64, workload string) []float64 {
		out := make([]float64, steps)
		for k, v := range incs {
			if strings.Contains(k, `__name__="istio_requests_total"`) && strings.Contains(k, `destination_workload="`+workload+`"`) {
				for i := range v {
					out[i] += v[i]
				}
			}
		}
		return out
	}
	ca, cb := cov(total(each, "podinfo-primary"), total(each, "podinfo")), cov(total(cells, "podinfo-primary"), total(cells, "podinfo"))
	if ca < 2 || math.Abs(ca-cb) > 0.2*ca {
		t.Errorf("covariance of the primary's and the canary's requests: %.2f by request, %.2f by cell", ca, cb)
	}
}

func meanVar(x []float64) (float64, float64) {
	m := 0.0
	for _, v := range x {
		m += v
	}
	m /= float64(len(x))
	s := 0.0
	for _, v := range x {
		s += (v - m) * (v - m)
	}
	return m, s / float64(len(x)-1)
}

func cov(x, y []float64) float64 {
	mx, _ := meanVar(x)
	my, _ := meanVar(y)
	s := 0.0
	for i := range x {
		s += (x[i] - mx) * (y[i] - my)
	}
	return s / float64(len(x)-1)
}

// Exact Poisson draws: mean and variance both the mean, on each side of
// the switch from inversion to PTRS.
func TestPoisson(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, mu := range []float64{0.001, 0.5, 3, 9.9, 10, 25, 400} {
		const n = 200_000
		x := make([]float64, n)
		for i := range x {
			x[i] = float64(poisson(r, mu, math.Exp(-mu)))
		}
		m, v := meanVar(x)
		if math.Abs(m-mu) > 4.5*math.Sqrt(mu/n) || math.Abs(v-mu) > 4.5*math.Sqrt((mu+2*mu*mu)/n) {
			t.Errorf("Poisson(%v): mean %.4f, variance %.4f", mu, m, v)
		}
	}
}

func mustModel(t *testing.T, p behavior.Profile) behavior.Model {
	t.Helper()
	m, err := p.Compile()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func latency(t *testing.T, s string) *behavior.Latency {
	t.Helper()
	l, err := behavior.ParseLatency(s)
	if err != nil {
		t.Fatal(err)
	}
	return &l
}

func faults(t *testing.T, s string) *behavior.Faults {
	t.Helper()
	f, err := behavior.ParseFaults(s)
	if err != nil {
		t.Fatal(err)
	}
	return &f
}

func mustScenario(t *testing.T) *scenario.Scenario {
	t.Helper()
	data, err := scenarios.Get("success")
	if err != nil {
		t.Fatal(err)
	}
	s, err := scenario.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A bucket's edge is its last nanosecond, with the histogram's own
// conversion: observe puts le in the bucket and le+1ns in the next.
func TestThreshold(t *testing.T) {
	for _, c := range []struct {
		bounds []float64
		conv   func(int64) float64
	}{{mesh.DurationBuckets(), msOf}, {mockserver.LatencyBuckets, secondsOf}} {
		for _, b := range c.bounds {
			le := threshold(b, c.conv)
			if c.conv(le) > b || c.conv(le+1) <= b {
				t.Errorf("bound %v: edge %dns converts to %v, the next to %v", b, le, c.conv(le), c.conv(le+1))
			}
		}
	}
}

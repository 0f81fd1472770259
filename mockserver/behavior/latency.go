package behavior

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// z99 is the standard normal quantile at 0.99: a lognormal given by its
// median m and 99th percentile p has sigma = ln(p/m) / z99.
const z99 = 2.3263478740408408

// Latency is a distribution of injected delays. Exactly one of the shapes is
// set. In a config file it is either an object with one shape (and an
// optional cap) or the short string form ParseLatency reads:
//
//	latency: lognormal(50ms, 400ms)
//	latency: {lognormal: {median: 50ms, p99: 400ms}, cap: 2s}
type Latency struct {
	Fixed       *Duration         `json:"fixed,omitempty"`
	Uniform     *UniformLatency   `json:"uniform,omitempty"`
	Normal      *NormalLatency    `json:"normal,omitempty"`
	Lognormal   *LognormalLatency `json:"lognormal,omitempty"`
	Mix         []MixEntry        `json:"mix,omitempty"`
	Percentiles PercentileTable   `json:"percentiles,omitempty"`
	// Cap bounds every sampled delay. A delay the cap shortens is counted
	// (Outcome.Capped), never silently clamped.
	Cap Duration `json:"cap,omitempty"`
}

// UniformLatency is uniform on [Min, Max].
type UniformLatency struct {
	Min Duration `json:"min"`
	Max Duration `json:"max"`
}

// NormalLatency is normal(Mean, Stddev) truncated at 0: negative draws are
// not clamped to 0 (that would pile mass at 0) but excluded, by sampling the
// conditional distribution.
type NormalLatency struct {
	Mean   Duration `json:"mean"`
	Stddev Duration `json:"stddev"`
}

// LognormalLatency is given by its median and 99th percentile, the two
// numbers people know about their service, instead of mu and sigma.
type LognormalLatency struct {
	Median Duration `json:"median"`
	P99    Duration `json:"p99"`
}

// MixEntry is one value of a discrete mix and its probability (0..1). The
// probabilities of a mix sum to at most 1; the rest of the requests get no
// delay, as in fortio's delay lists.
type MixEntry struct {
	Delay  Duration `json:"delay"`
	Weight float64  `json:"weight"`
}

// PercentileTable maps percentile names to delays: p50, p90, p95, p99, p999
// (99.9), p99.99, and min and max for the ends. Delays between two given
// percentiles are interpolated linearly; below the lowest the table runs down
// to min (default 0) and above the highest up to max (default: the highest
// given delay, so nothing exceeds it).
type PercentileTable map[string]Duration

type latencyShape int

const (
	shapeNone latencyShape = iota
	shapeFixed
	shapeUniform
	shapeNormal
	shapeLognormal
	shapeMix
	shapePercentiles
)

// UnmarshalJSON accepts the string form or the object form.
func (l *Latency) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		parsed, err := ParseLatency(s)
		if err != nil {
			return err
		}
		*l = parsed
		return nil
	}
	type plain Latency
	var p plain
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("must be a distribution such as \"50ms\", \"lognormal(50ms,400ms)\" or {uniform: {min: 10ms, max: 50ms}}: %w", err)
	}
	*l = Latency(p)
	return nil
}

// IsZero reports whether no shape is set.
func (l Latency) IsZero() bool { return l.shape() == shapeNone && l.Cap == 0 }

func (l Latency) shapes() []latencyShape {
	var s []latencyShape
	if l.Fixed != nil {
		s = append(s, shapeFixed)
	}
	if l.Uniform != nil {
		s = append(s, shapeUniform)
	}
	if l.Normal != nil {
		s = append(s, shapeNormal)
	}
	if l.Lognormal != nil {
		s = append(s, shapeLognormal)
	}
	if l.Mix != nil {
		s = append(s, shapeMix)
	}
	if l.Percentiles != nil {
		s = append(s, shapePercentiles)
	}
	return s
}

func (l Latency) shape() latencyShape {
	s := l.shapes()
	if len(s) == 0 {
		return shapeNone
	}
	return s[0]
}

// Validate checks the distribution's parameters; errors name the field
// below the latency (prefix them with its path).
func (l Latency) Validate() []FieldError {
	var errs []FieldError
	shapes := l.shapes()
	switch {
	case len(shapes) == 0 && l.Cap == 0:
		errs = append(errs, FieldError{Field: "", Message: "set one of fixed, uniform, normal, lognormal, mix or percentiles"})
	case len(shapes) > 1:
		errs = append(errs, FieldError{Field: "", Message: "set only one of fixed, uniform, normal, lognormal, mix or percentiles"})
	}
	if l.Uniform != nil && l.Uniform.Max < l.Uniform.Min {
		errs = append(errs, FieldError{Field: "uniform.max", Message: fmt.Sprintf("must be at least min (%s), got %s", l.Uniform.Min, l.Uniform.Max)})
	}
	if l.Normal != nil {
		if l.Normal.Mean <= 0 {
			errs = append(errs, FieldError{Field: "normal.mean", Message: "must be positive"})
		}
	}
	if l.Lognormal != nil {
		if l.Lognormal.Median <= 0 {
			errs = append(errs, FieldError{Field: "lognormal.median", Message: "must be positive"})
		}
		if l.Lognormal.P99 <= l.Lognormal.Median {
			errs = append(errs, FieldError{Field: "lognormal.p99", Message: fmt.Sprintf("must be greater than the median (%s), got %s; for a constant delay use fixed", l.Lognormal.Median, l.Lognormal.P99)})
		}
	}
	if l.Mix != nil {
		if len(l.Mix) == 0 {
			errs = append(errs, FieldError{Field: "mix", Message: "must list at least one delay"})
		}
		sum := 0.0
		for i, e := range l.Mix {
			if e.Weight < 0 || e.Weight > 1 || math.IsNaN(e.Weight) {
				errs = append(errs, FieldError{Field: fmt.Sprintf("mix[%d].weight", i), Message: fmt.Sprintf("must be a probability between 0 and 1, got %v", e.Weight)})
			}
			sum += e.Weight
		}
		if sum > 1+1e-9 {
			errs = append(errs, FieldError{Field: "mix", Message: fmt.Sprintf("weights sum to %.4g; they are probabilities and must sum to at most 1", sum)})
		}
	}
	if l.Percentiles != nil {
		if _, err := l.Percentiles.points(); err != nil {
			errs = append(errs, FieldError{Field: "percentiles", Message: err.Error()})
		}
	}
	return errs
}

// percentilePoint is one (quantile, delay) pair of a table.
type percentilePoint struct {
	q float64
	v float64 // nanoseconds
}

// ParsePercentileName reads "p50", "p999", "p99.9", "min" or "max" as a
// quantile in [0, 1].
func ParsePercentileName(name string) (float64, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	switch n {
	case "min", "p0":
		return 0, nil
	case "max", "p100":
		return 1, nil
	}
	if !strings.HasPrefix(n, "p") || len(n) < 2 {
		return 0, fmt.Errorf("%q is not a percentile: write p50, p90, p99, p999, min or max", name)
	}
	digits := n[1:]
	if !strings.Contains(digits, ".") && len(digits) > 2 {
		// p999 is 99.9, p9999 is 99.99: the first two digits are whole percent.
		digits = digits[:2] + "." + digits[2:]
	}
	pct, err := strconv.ParseFloat(digits, 64)
	if err != nil || pct <= 0 || pct >= 100 {
		return 0, fmt.Errorf("%q is not a percentile: write p50, p90, p99, p999, min or max", name)
	}
	return pct / 100, nil
}

func (t PercentileTable) points() ([]percentilePoint, error) {
	if len(t) == 0 {
		return nil, fmt.Errorf("must give at least one percentile, such as {p50: 20ms, p99: 200ms}")
	}
	pts := make([]percentilePoint, 0, len(t)+2)
	for name, d := range t {
		q, err := ParsePercentileName(name)
		if err != nil {
			return nil, err
		}
		pts = append(pts, percentilePoint{q, float64(d)})
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].q < pts[j].q })
	for i := 1; i < len(pts); i++ {
		if pts[i].q == pts[i-1].q {
			return nil, fmt.Errorf("percentile %v is given twice", pts[i].q*100)
		}
		if pts[i].v < pts[i-1].v {
			return nil, fmt.Errorf("delays must not decrease with the percentile: p%v is %s but p%v is %s",
				trimFloat(pts[i].q*100), time.Duration(pts[i].v), trimFloat(pts[i-1].q*100), time.Duration(pts[i-1].v))
		}
	}
	if pts[0].q > 0 {
		pts = append([]percentilePoint{{0, 0}}, pts...)
	}
	if last := pts[len(pts)-1]; last.q < 1 {
		pts = append(pts, percentilePoint{1, last.v})
	}
	return pts, nil
}

// latencyModel is a compiled Latency: parameters precomputed, ready to
// sample on the hot path without allocating.
type latencyModel struct {
	shape  latencyShape
	a, b   float64 // shape parameters in nanoseconds (or mu, sigma)
	lo     float64 // normal: Phi(-mean/stddev), the mass cut off below 0
	cum    []float64
	vals   []float64
	pts    []percentilePoint
	cap    time.Duration
	source string
}

func (l Latency) compile() (*latencyModel, error) {
	if errs := l.Validate(); len(errs) > 0 {
		return nil, errs[0]
	}
	m := &latencyModel{shape: l.shape(), cap: l.Cap.D(), source: l.String()}
	switch m.shape {
	case shapeFixed:
		m.a = float64(*l.Fixed)
	case shapeUniform:
		m.a, m.b = float64(l.Uniform.Min), float64(l.Uniform.Max)
	case shapeNormal:
		m.a, m.b = float64(l.Normal.Mean), float64(l.Normal.Stddev)
		if m.b > 0 {
			m.lo = normCDF(-m.a / m.b)
		}
	case shapeLognormal:
		m.a = math.Log(float64(l.Lognormal.Median))
		m.b = (math.Log(float64(l.Lognormal.P99)) - m.a) / z99
	case shapeMix:
		// Ascending delays, with the share that gets no delay first, so
		// the cumulative table is the distribution's CDF and quantile is
		// its inverse.
		entries := slices.Clone(l.Mix)
		sort.SliceStable(entries, func(i, j int) bool { return entries[i].Delay < entries[j].Delay })
		sum := 0.0
		for _, e := range entries {
			sum += e.Weight
		}
		acc := 0.0
		if rest := 1 - sum; rest > 0 {
			acc = rest
			m.cum = append(m.cum, acc)
			m.vals = append(m.vals, 0)
		}
		for _, e := range entries {
			acc += e.Weight
			m.cum = append(m.cum, acc)
			m.vals = append(m.vals, float64(e.Delay))
		}
	case shapePercentiles:
		m.pts, _ = l.Percentiles.points()
	}
	return m, nil
}

// sample draws one delay and reports the uncapped value too.
func (m *latencyModel) sample(r *rand.Rand) (d, uncapped time.Duration) {
	var ns float64
	switch m.shape {
	case shapeFixed:
		ns = m.a
	case shapeUniform:
		ns = m.a + r.Float64()*(m.b-m.a)
	case shapeNormal:
		ns = m.quantile(r.Float64())
	case shapeLognormal:
		ns = math.Exp(m.a + m.b*r.NormFloat64())
	case shapeMix, shapePercentiles:
		ns = m.quantile(r.Float64())
	}
	uncapped = toDuration(ns)
	if m.cap > 0 && uncapped > m.cap {
		return m.cap, uncapped
	}
	return uncapped, uncapped
}

// quantile is the inverse CDF of the uncapped distribution, in nanoseconds.
func (m *latencyModel) quantile(q float64) float64 {
	switch m.shape {
	case shapeFixed:
		return m.a
	case shapeUniform:
		return m.a + q*(m.b-m.a)
	case shapeNormal:
		if m.b == 0 {
			return m.a
		}
		p := m.lo + q*(1-m.lo)
		return math.Max(0, m.a+m.b*normQuantile(p))
	case shapeLognormal:
		return math.Exp(m.a + m.b*normQuantile(q))
	case shapeMix:
		// The first value whose cumulative share exceeds q (a draw on a
		// boundary belongs to the next value, as u < cum does).
		i := sort.Search(len(m.cum), func(i int) bool { return m.cum[i] > q })
		if i >= len(m.vals) {
			i = len(m.vals) - 1
		}
		return m.vals[i]
	case shapePercentiles:
		pts := m.pts
		i := sort.Search(len(pts), func(i int) bool { return pts[i].q >= q })
		if i == 0 {
			return pts[0].v
		}
		if i >= len(pts) {
			return pts[len(pts)-1].v
		}
		a, b := pts[i-1], pts[i]
		return a.v + (b.v-a.v)*(q-a.q)/(b.q-a.q)
	}
	return 0
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of the distribution with its
// cap applied: what a perfect server would show at that percentile.
func (l Latency) Quantile(q float64) (time.Duration, error) {
	m, err := l.compile()
	if err != nil {
		return 0, err
	}
	if m.shape == shapeNone {
		return 0, nil
	}
	d := toDuration(m.quantile(q))
	if m.cap > 0 && d > m.cap {
		d = m.cap
	}
	return d, nil
}

// toDuration converts nanoseconds, saturating: a heavy tail's draw beyond
// what a Duration holds must not wrap around to a negative delay.
func toDuration(ns float64) time.Duration {
	switch {
	case ns >= math.MaxInt64:
		return math.MaxInt64
	case ns > 0:
		return time.Duration(ns)
	}
	return 0
}

func normCDF(x float64) float64 { return 0.5 * math.Erfc(-x/math.Sqrt2) }

func normQuantile(p float64) float64 {
	if p <= 0 {
		return math.Inf(-1)
	}
	if p >= 1 {
		return math.Inf(1)
	}
	return math.Sqrt2 * math.Erfinv(2*p-1)
}

// String renders the distribution in the short form ParseLatency reads.
func (l Latency) String() string {
	var s string
	switch l.shape() {
	case shapeFixed:
		s = l.Fixed.String()
	case shapeUniform:
		s = fmt.Sprintf("uniform(%s,%s)", l.Uniform.Min, l.Uniform.Max)
	case shapeNormal:
		s = fmt.Sprintf("normal(%s,%s)", l.Normal.Mean, l.Normal.Stddev)
	case shapeLognormal:
		s = fmt.Sprintf("lognormal(%s,%s)", l.Lognormal.Median, l.Lognormal.P99)
	case shapeMix:
		parts := make([]string, len(l.Mix))
		for i, e := range l.Mix {
			parts[i] = fmt.Sprintf("%s:%s", e.Delay, trimFloat(e.Weight))
		}
		s = strings.Join(parts, ",")
	case shapePercentiles:
		names := make([]string, 0, len(l.Percentiles))
		for name := range l.Percentiles {
			names = append(names, name)
		}
		sort.Slice(names, func(i, j int) bool {
			qi, _ := ParsePercentileName(names[i])
			qj, _ := ParsePercentileName(names[j])
			return qi < qj
		})
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = fmt.Sprintf("%s=%s", n, l.Percentiles[n])
		}
		s = "percentiles(" + strings.Join(parts, ",") + ")"
	default:
		s = "0s"
	}
	if l.Cap > 0 {
		s += " cap " + l.Cap.String()
	}
	return s
}

// ParseLatency reads the short form of a latency distribution:
//
//	50ms                                  fixed
//	uniform(10ms,50ms)                    uniform on [10ms, 50ms]
//	normal(50ms,10ms)                     normal(mean, stddev) truncated at 0
//	lognormal(50ms,400ms)                 lognormal by median and p99
//	5ms:0.9,50ms:0.09,2s:0.01             discrete mix (probabilities; 90% also works)
//	percentiles(p50=10ms,p99=100ms)       percentile table, interpolated
//
// Any form may end with " cap 2s" to bound the delays.
func ParseLatency(s string) (Latency, error) {
	var l Latency
	src := strings.TrimSpace(s)
	if i := strings.LastIndex(src, " cap "); i >= 0 {
		c, err := ParseDuration(src[i+5:])
		if err != nil {
			return l, fmt.Errorf("cap: %w", err)
		}
		l.Cap = Duration(c)
		src = strings.TrimSpace(src[:i])
	}
	if src == "" {
		return l, fmt.Errorf("empty latency: write one such as \"50ms\" or \"lognormal(50ms,400ms)\"")
	}
	name, args, isCall, err := splitCall(src)
	if err != nil {
		return l, err
	}
	if !isCall {
		if strings.Contains(src, ":") {
			mix, err := parseMix(src)
			if err != nil {
				return l, err
			}
			l.Mix = mix
		} else {
			d, err := ParseDuration(src)
			if err != nil {
				return l, fmt.Errorf("%w; distributions: uniform(min,max), normal(mean,stddev), lognormal(median,p99), 5ms:0.9,50ms:0.1, percentiles(p50=…,p99=…)", err)
			}
			dd := Duration(d)
			l.Fixed = &dd
		}
		return l, l.validateErr()
	}
	switch name {
	case "fixed":
		ds, err := durationArgs(name, args, "delay")
		if err != nil {
			return l, err
		}
		l.Fixed = &ds[0]
	case "uniform":
		ds, err := durationArgs(name, args, "min", "max")
		if err != nil {
			return l, err
		}
		l.Uniform = &UniformLatency{Min: ds[0], Max: ds[1]}
	case "normal", "gaussian":
		ds, err := durationArgs(name, args, "mean", "stddev")
		if err != nil {
			return l, err
		}
		l.Normal = &NormalLatency{Mean: ds[0], Stddev: ds[1]}
	case "lognormal":
		ds, err := durationArgs(name, args, "median", "p99")
		if err != nil {
			return l, err
		}
		l.Lognormal = &LognormalLatency{Median: ds[0], P99: ds[1]}
	case "mix":
		mix, err := parseMix(strings.Join(args, ","))
		if err != nil {
			return l, err
		}
		l.Mix = mix
	case "percentiles":
		t := PercentileTable{}
		for _, a := range args {
			k, v, ok := strings.Cut(a, "=")
			if !ok {
				return l, fmt.Errorf("percentiles: %q must be name=delay, such as p99=200ms", a)
			}
			d, err := ParseDuration(v)
			if err != nil {
				return l, fmt.Errorf("percentiles: %s: %w", k, err)
			}
			t[strings.TrimSpace(k)] = Duration(d)
		}
		l.Percentiles = t
	default:
		return l, fmt.Errorf("unknown distribution %q: use fixed, uniform, normal, lognormal, mix or percentiles", name)
	}
	return l, l.validateErr()
}

func (l Latency) validateErr() error {
	if errs := l.Validate(); len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// splitCall splits "name(a, b)" into its name and arguments.
func splitCall(s string) (name string, args []string, ok bool, err error) {
	open := strings.IndexByte(s, '(')
	if open < 0 {
		return "", nil, false, nil
	}
	if !strings.HasSuffix(s, ")") {
		return "", nil, false, fmt.Errorf("%q: missing closing parenthesis", s)
	}
	name = strings.ToLower(strings.TrimSpace(s[:open]))
	inner := strings.TrimSpace(s[open+1 : len(s)-1])
	if inner != "" {
		for _, a := range strings.Split(inner, ",") {
			args = append(args, strings.TrimSpace(a))
		}
	}
	return name, args, true, nil
}

// durationArgs reads positional or named (median=50ms) duration arguments.
// Named ones may come in any order, but not before a positional one, and
// no argument may be given twice.
func durationArgs(fn string, args []string, names ...string) ([]Duration, error) {
	usage := fmt.Sprintf("%s(%s)", fn, strings.Join(names, ","))
	if len(args) != len(names) {
		return nil, fmt.Errorf("%s takes %d arguments, got %d", usage, len(names), len(args))
	}
	out := make([]Duration, len(names))
	set := make([]bool, len(names))
	named := false
	for i, a := range args {
		idx := i
		if k, v, ok := strings.Cut(a, "="); ok {
			named = true
			idx = slices.IndexFunc(names, func(n string) bool { return strings.EqualFold(strings.TrimSpace(k), n) })
			if idx < 0 {
				return nil, fmt.Errorf("%s: unknown argument %q", usage, k)
			}
			a = v
		} else if named {
			return nil, fmt.Errorf("%s: a positional argument (%s) cannot follow a named one", usage, a)
		}
		if set[idx] {
			return nil, fmt.Errorf("%s: %s is given twice", usage, names[idx])
		}
		set[idx] = true
		d, err := ParseDuration(a)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", usage, names[idx], err)
		}
		out[idx] = Duration(d)
	}
	return out, nil
}

func parseMix(s string) ([]MixEntry, error) {
	items, err := parseWeighted(s)
	if err != nil {
		return nil, err
	}
	mix := make([]MixEntry, len(items))
	for i, it := range items {
		d, err := ParseDuration(it.key)
		if err != nil {
			return nil, fmt.Errorf("mix entry %q: %w", it.key, err)
		}
		mix[i] = MixEntry{Delay: Duration(d), Weight: it.weight}
	}
	return mix, nil
}

type weightedItem struct {
	key    string
	weight float64
}

// parseWeighted reads "a:0.2,b:10%" into keys and probabilities.
func parseWeighted(s string) ([]weightedItem, error) {
	var out []weightedItem
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, w, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("%q must be value:probability, such as 503:0.2 or 50ms:10%%", part)
		}
		p, err := parseProbability(w)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", part, err)
		}
		out = append(out, weightedItem{strings.TrimSpace(k), p})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty list: write value:probability pairs such as 503:0.2,500:0.1")
	}
	return out, nil
}

// parseProbability reads 0.2 or 20%.
func parseProbability(s string) (float64, error) {
	s = strings.TrimSpace(s)
	scale := 1.0
	if strings.HasSuffix(s, "%") {
		s, scale = strings.TrimSuffix(s, "%"), 0.01
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a probability: write 0.2 or 20%%", s)
	}
	f *= scale
	if f < 0 || f > 1 || math.IsNaN(f) {
		return 0, fmt.Errorf("probability %v is outside 0..1", f)
	}
	return f, nil
}

func trimFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

package locust

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/canarylab/canarylab/loadgen/stats"
)

// readFrame reads a frame recorded by testdata/record_frames.py.
func readFrame(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	frame, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return frame
}

func mustDecode(t *testing.T, frame []byte) Message {
	t.Helper()
	m, err := DecodeMessage(frame)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const recordedNode = "vm_3544b1f0e13949e1b9587fccb3ee81e1"

func TestDecodeRecordedMasterFrames(t *testing.T) {
	ack := mustDecode(t, readFrame(t, "master_ack.hex"))
	if ack.Type != TypeAck || ack.NodeID != recordedNode {
		t.Fatalf("ack = %+v", ack)
	}
	if a := ParseAck(ack.Data); !a.HasIndex || a.Index != 0 {
		t.Errorf("ack index = %+v", a)
	}

	s1 := mustDecode(t, readFrame(t, "master_spawn_1.hex"))
	s2 := mustDecode(t, readFrame(t, "master_spawn_2.hex"))
	if s1.Type != TypeSpawn || s2.Type != TypeSpawn {
		t.Fatalf("types %q %q", s1.Type, s2.Type)
	}
	sp1, err := ParseSpawn(s1.Data)
	if err != nil {
		t.Fatal(err)
	}
	sp2, err := ParseSpawn(s2.Data)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"Api": 0, "Browser": 1}; !reflect.DeepEqual(sp1.UserClassesCount, want) {
		t.Errorf("spawn 1 counts = %v, want %v", sp1.UserClassesCount, want)
	}
	if want := map[string]int{"Api": 1, "Browser": 1}; !reflect.DeepEqual(sp2.UserClassesCount, want) {
		t.Errorf("spawn 2 counts = %v, want %v", sp2.UserClassesCount, want)
	}
	if !(sp2.Timestamp > sp1.Timestamp) || sp1.Timestamp < 1.7e9 || sp1.Timestamp == math.Trunc(sp1.Timestamp) {
		t.Errorf("timestamps %v %v: want float seconds, increasing", sp1.Timestamp, sp2.Timestamp)
	}
	if sp1.Host != "http://127.0.0.1:8089" || sp1.StopTimeout != 0 {
		t.Errorf("host %q stop_timeout %v", sp1.Host, sp1.StopTimeout)
	}
	raw := s1.Data.(map[string]any)
	if raw["stop_timeout"] != nil {
		t.Errorf("stop_timeout = %v, want None", raw["stop_timeout"])
	}
	po := sp1.ParsedOptions
	if po["master"] != true || po["num_users"] != nil || po["expect_workers"] != int64(1) || po["headless"] != false {
		t.Errorf("parsed_options: master=%v num_users=%v expect_workers=%#v headless=%v", po["master"], po["num_users"], po["expect_workers"], po["headless"])
	}
	if _, ok := raw["num_users"]; ok {
		t.Error("a 2.x spawn has no top-level num_users")
	}

	for _, name := range []string{"master_stop.hex", "master_quit.hex", "master_reconnect.hex"} {
		m := mustDecode(t, readFrame(t, name))
		if m.Data != nil || m.NodeID != recordedNode {
			t.Errorf("%s: %+v", name, m)
		}
	}
}

// Messages without floats or multi-key dicts re-encode to the master's
// very bytes; the others survive a round trip.
func TestReencodeRecordedFrames(t *testing.T) {
	for _, name := range []string{"master_ack.hex", "master_ack_after_stop.hex", "master_stop.hex", "master_quit.hex", "master_reconnect.hex", "python_client_ready.hex"} {
		frame := readFrame(t, name)
		got, err := mustDecode(t, frame).Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, frame) {
			t.Errorf("%s: re-encoded\n%x\nrecorded\n%x", name, got, frame)
		}
	}
	for _, name := range []string{"master_spawn_1.hex", "master_spawn_2.hex", "python_stats.hex", "python_heartbeat.hex"} {
		m := mustDecode(t, readFrame(t, name))
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if back := mustDecode(t, b); !reflect.DeepEqual(back, m) {
			t.Errorf("%s: round trip changed the message:\n%#v\n%#v", name, back, m)
		}
	}
}

func TestClientReadyBytes(t *testing.T) {
	got, err := Message{Type: TypeClientReady, Data: ClientReadyVersion, NodeID: "vm_abc"}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{0x93, 0xac}, "client_ready"...)
	want = append(want, 0xff, 0xa0|6)
	want = append(want, "vm_abc"...)
	if !bytes.Equal(got, want) {
		t.Errorf("client_ready = %x, want %x", got, want)
	}
	// A real node id is longer than 31 bytes: str8, as Python packs it.
	node := "recorder_" + strings.Repeat("0", 32)
	got, _ = Message{Type: TypeClientReady, Data: ClientReadyVersion, NodeID: node}.Encode()
	if py := readFrame(t, "python_client_ready.hex"); !bytes.Equal(got, py) {
		t.Errorf("client_ready = %x, Locust's WorkerRunner packs %x", got, py)
	}
}

func TestHeartbeatBytesMatchPython(t *testing.T) {
	node := "recorder_" + strings.Repeat("0", 32)
	got, err := Message{Type: TypeHeartbeat, NodeID: node, Data: Dict{
		{"state", "running"}, {"current_cpu_usage", 12.5}, {"current_memory_usage", int64(123456789)},
	}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if py := readFrame(t, "python_heartbeat.hex"); !bytes.Equal(got, py) {
		t.Errorf("heartbeat = %x, Python packs %x", got, py)
	}
}

func sortedKeys(m map[string]any) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestPythonStatsFrameShape(t *testing.T) {
	m := mustDecode(t, readFrame(t, "python_stats.hex"))
	data := m.Data.(map[string]any)
	want := append([]string(nil), EntryKeys...)
	sort.Strings(want)
	for _, e := range append(data["stats"].([]any), data["stats_total"]) {
		if got := sortedKeys(e.(map[string]any)); !reflect.DeepEqual(got, want) {
			t.Errorf("Python entry keys %v, EntryKeys %v", got, want)
		}
	}
	errs := data["errors"].(map[string]any)
	if len(errs) != 1 {
		t.Fatalf("errors = %v", errs)
	}
	for key, e := range errs {
		if k := ErrorKey("POST", "/orders", "HTTP 500"); k != key {
			t.Errorf("ErrorKey = %s, Locust's create_key gives %s", k, key)
		}
		if got := e.(map[string]any)["error"]; got != ParseError("HTTP 500") || got != "'HTTP 500'" {
			t.Errorf("error = %q, ParseError = %q", got, ParseError("HTTP 500"))
		}
	}
	// Python keys response_times by int below 100 ms and by float above.
	rt := data["stats_total"].(map[string]any)["response_times"].(map[any]any)
	if rt[int64(12)] != int64(1) || rt[1400.0] != int64(1) {
		t.Errorf("response_times = %#v", rt)
	}
}

// fixedClock is a settable clock for stats.
type fixedClock struct{ t time.Time }

func (c *fixedClock) now() time.Time { return c.t }

func sampleStats() (*stats.Stats, *fixedClock) {
	clk := &fixedClock{t: time.Unix(1_800_000_000, 250_000_000)}
	st := stats.New(clk.now)
	clk.t = clk.t.Add(400 * time.Millisecond)
	st.Success("GET", "/", 12500*time.Microsecond, 100)
	st.Success("GET", "/", 145*time.Millisecond, 100)
	clk.t = clk.t.Add(time.Second)
	st.Failure("POST", "/orders", 1450*time.Millisecond, 0, "HTTP 500")
	st.Failure("POST", "/orders", 3*time.Millisecond, 0, "connection refused")
	st.Failure("POST", "/orders", 4*time.Millisecond, 0, "HTTP 500")
	return st, clk
}

func TestStatsMessage(t *testing.T) {
	st, _ := sampleStats()
	snap := st.TakeInterval()
	m := Message{Type: TypeStats, NodeID: "n", Data: StatsData(snap, map[string]int{"Browser": 3, "Api": 0})}
	frame, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	data := mustDecode(t, frame).Data.(map[string]any)
	if got, want := sortedKeys(data), []string{"errors", "stats", "stats_total", "user_classes_count", "user_count"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("keys %v", got)
	}
	want := append([]string(nil), EntryKeys...)
	sort.Strings(want)
	entries := data["stats"].([]any)
	if len(entries) != 2 {
		t.Fatalf("%d entries", len(entries))
	}
	for _, e := range append(entries, data["stats_total"]) {
		e := e.(map[string]any)
		if got := sortedKeys(e); !reflect.DeepEqual(got, want) {
			t.Errorf("entry keys %v", got)
		}
		if _, ok := e["last_request_timestamp"].(float64); !ok {
			t.Errorf("last_request_timestamp %#v", e["last_request_timestamp"])
		}
		if _, ok := e["start_time"].(float64); !ok {
			t.Errorf("start_time %#v", e["start_time"])
		}
		if _, ok := e["min_response_time"].(float64); !ok {
			t.Errorf("min_response_time %#v", e["min_response_time"])
		}
		for _, k := range []string{"num_requests", "num_none_requests", "num_failures", "total_content_length"} {
			if _, ok := e[k].(int64); !ok {
				t.Errorf("%s %#v", k, e[k])
			}
		}
	}
	total := data["stats_total"].(map[string]any)
	if total["name"] != "Aggregated" || total["num_requests"] != int64(5) || total["num_failures"] != int64(3) {
		t.Errorf("stats_total %v", total)
	}
	if rt := total["response_times"].(map[any]any); rt[int64(12)] != int64(1) || rt[int64(140)] != int64(1) || rt[int64(1400)] != int64(1) {
		t.Errorf("response_times %#v (want Locust's buckets 12, 140, 1400)", rt)
	}
	if rps := total["num_reqs_per_sec"].(map[any]any); rps[int64(1_800_000_000)] != int64(2) || rps[int64(1_800_000_001)] != int64(3) {
		t.Errorf("num_reqs_per_sec %#v", rps)
	}
	errs := data["errors"].(map[string]any)
	if len(errs) != 2 {
		t.Fatalf("errors %v", errs)
	}
	e500 := errs[ErrorKey("POST", "/orders", "HTTP 500")].(map[string]any)
	if e500["occurrences"] != int64(2) || e500["error"] != "'HTTP 500'" || e500["method"] != "POST" || e500["name"] != "/orders" {
		t.Errorf("error entry %v", e500)
	}
	if data["user_count"] != int64(3) || !reflect.DeepEqual(data["user_classes_count"], map[string]any{"Browser": int64(3), "Api": int64(0)}) {
		t.Errorf("user counts %v %v", data["user_classes_count"], data["user_count"])
	}

	// The next interval is empty: no entries, an Aggregated entry with
	// None for min_response_time and last_request_timestamp.
	frame, _ = Message{Type: TypeStats, NodeID: "n", Data: StatsData(st.TakeInterval(), nil)}.Encode()
	data = mustDecode(t, frame).Data.(map[string]any)
	total = data["stats_total"].(map[string]any)
	if len(data["stats"].([]any)) != 0 || total["min_response_time"] != nil || total["last_request_timestamp"] != nil || total["num_requests"] != int64(0) {
		t.Errorf("empty interval: %v", data)
	}
	if _, ok := total["min_response_time"]; !ok {
		t.Error("min_response_time must be present (None)")
	}
}

func python(t *testing.T) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import locust.stats, msgpack").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3 with locust is required: %v", err)
		}
		t.Skipf("python3 with locust is not available: %v", err)
	}
	return py
}

type pySummary struct {
	NumRequests  int64    `json:"num_requests"`
	NumFailures  int64    `json:"num_failures"`
	Min          *float64 `json:"min_response_time"`
	Max          float64  `json:"max_response_time"`
	Median       float64  `json:"median_response_time"`
	Avg          float64  `json:"avg_response_time"`
	P95          float64  `json:"p95"`
	TotalContent int64    `json:"total_content_length"`
}

// Locust's own Python decodes our stats frames and merges them as the
// master does, with the same results as canarylab's statistics.
func TestPythonMasterMergesOurStats(t *testing.T) {
	py := python(t)
	st, clk := sampleStats()
	cum := st.Cumulative()
	var in bytes.Buffer
	for i := range 3 {
		if i == 2 {
			clk.t = clk.t.Add(time.Second)
			st.Success("GET", "/", 30*time.Millisecond, 7)
			cum = st.Cumulative()
		}
		// i == 1 is an empty interval: None min and timestamp.
		frame, err := Message{Type: TypeStats, NodeID: "n", Data: StatsData(st.TakeInterval(), map[string]int{"Browser": 2})}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		in.WriteString(hex.EncodeToString(frame) + "\n")
	}
	cmd := exec.Command(py, "testdata/check_stats.py")
	cmd.Stdin = &in
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("check_stats.py: %v\n%s", err, out)
	}
	var res struct {
		Problems []string             `json:"problems"`
		Total    pySummary            `json:"total"`
		Entries  map[string]pySummary `json:"entries"`
		Errors   map[string]struct {
			Name        string `json:"name"`
			Error       string `json:"error"`
			Occurrences int64  `json:"occurrences"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(res.Problems) > 0 {
		t.Errorf("Locust found problems: %v", res.Problems)
	}
	check := func(what string, py pySummary, e *stats.Entry) {
		t.Helper()
		if py.NumRequests != e.NumRequests || py.NumFailures != e.NumFailures || py.TotalContent != e.TotalContentLength {
			t.Errorf("%s: Locust counts %+v, canarylab %d/%d/%d", what, py, e.NumRequests, e.NumFailures, e.TotalContentLength)
		}
		if py.Min == nil || *py.Min != e.MinResponseTime || py.Max != e.MaxResponseTime {
			t.Errorf("%s: Locust min/max %v/%v, canarylab %v/%v", what, py.Min, py.Max, e.MinResponseTime, e.MaxResponseTime)
		}
		if py.Median != e.Median() || py.P95 != e.Percentile(0.95) || math.Abs(py.Avg-e.AvgResponseTime()) > 1e-9 {
			t.Errorf("%s: Locust median/p95/avg %v/%v/%v, canarylab %v/%v/%v", what, py.Median, py.P95, py.Avg, e.Median(), e.Percentile(0.95), e.AvgResponseTime())
		}
	}
	check("Aggregated", res.Total, cum.Total)
	for _, e := range cum.Entries {
		p, ok := res.Entries[e.Method+" "+e.Name]
		if !ok {
			t.Errorf("Locust has no entry %s %s", e.Method, e.Name)
			continue
		}
		check(e.Method+" "+e.Name, p, e)
	}
	if len(res.Errors) != 2 {
		t.Fatalf("errors %v", res.Errors)
	}
	e := res.Errors[ErrorKey("POST", "/orders", "HTTP 500")]
	if e.Occurrences != 2 || e.Error != "'HTTP 500'" {
		t.Errorf("HTTP 500 error as Locust sees it: %+v", e)
	}
}

func TestPyReprMatchesPython(t *testing.T) {
	cases := []string{"", "HTTP 500", "it's", `say "hi"`, `both ' and "`, "back\\slash", "tab\tnew\nline\r",
		"\x00\x1f\x7f", "é ü 中文", "\u00a0nbsp", "\u200bzero width", "emoji 😀", "\xff bad utf8"}
	py := python(t)
	// JSON cannot carry invalid UTF-8: the bytes travel as latin-1 code
	// points and Python rebuilds them (bad bytes as surrogate escapes).
	const script = "import sys, json\nfor s in json.load(sys.stdin):\n    print(repr(bytes(s, 'latin-1').decode('utf-8', 'surrogateescape')))\n"
	var latin []string
	for _, c := range cases {
		var r []rune
		for _, b := range []byte(c) {
			r = append(r, rune(b))
		}
		latin = append(latin, string(r))
	}
	in, _ := json.Marshal(latin)
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Env = append(os.Environ(), "PYTHONIOENCODING=utf-8:surrogateescape")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("python printed %d lines for %d cases: %q", len(lines), len(cases), out)
	}
	for i, c := range cases {
		if got := PyRepr(c); got != lines[i] {
			t.Errorf("PyRepr(%q) = %s, Python: %s", c, got, lines[i])
		}
	}
}

func TestDecodeMessageRejects(t *testing.T) {
	good, _ := Message{Type: "heartbeat", Data: nil, NodeID: "n"}.Encode()
	bad := map[string][]byte{
		"trailing bytes": append(append([]byte(nil), good...), 0xc0),
		"not an array":   {0x81, 0xa1, 'a', 0x01},
		"two items":      {0x92, 0xa1, 'a', 0xc0},
		"int type":       {0x93, 0x01, 0xc0, 0xa1, 'n'},
		"truncated":      good[:len(good)-1],
		"empty":          {},
	}
	for name, frame := range bad {
		if m, err := DecodeMessage(frame); err == nil {
			t.Errorf("%s: decoded %+v", name, m)
		}
	}
	deep := []byte{0x93, 0xa1, 'x'}
	for range 100 {
		deep = append(deep, 0x91)
	}
	deep = append(deep, 0xc0, 0xa1, 'n')
	if _, err := DecodeMessage(deep); err == nil {
		t.Error("100 nested arrays decoded")
	}
}

func TestDecodeCustomMessage(t *testing.T) {
	// A custom message with int and float keys, bytes and nesting.
	frame, err := Message{Type: "my_custom", NodeID: "n", Data: map[string]any{
		"ints":  map[int64]string{1: "a", 300: "b"},
		"list":  []any{int64(-5), uint64(math.MaxUint64), 2.5, "s", []byte{1, 2}, nil, true},
		"float": map[float64]int{1.5: 1},
	}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m := mustDecode(t, frame)
	d := m.Data.(map[string]any)
	if ints := d["ints"].(map[any]any); ints[int64(1)] != "a" || ints[int64(300)] != "b" {
		t.Errorf("ints %#v", ints)
	}
	want := []any{int64(-5), uint64(math.MaxUint64), 2.5, "s", []byte{1, 2}, nil, true}
	if !reflect.DeepEqual(d["list"], want) {
		t.Errorf("list %#v", d["list"])
	}
	if f := d["float"].(map[any]any); f[1.5] != int64(1) {
		t.Errorf("float keys %#v", f)
	}
}

func TestParseSpawn(t *testing.T) {
	sp, err := ParseSpawn(map[string]any{
		"timestamp":          int64(5),
		"user_classes_count": map[string]any{"A": uint64(200), "B": int64(0), "C": 3.0},
		"host":               nil,
		"stop_timeout":       int64(7),
	})
	if err != nil {
		t.Fatal(err)
	}
	if sp.Timestamp != 5 || sp.Host != "" || sp.StopTimeout != 7 || !reflect.DeepEqual(sp.UserClassesCount, map[string]int{"A": 200, "B": 0, "C": 3}) {
		t.Errorf("%+v", sp)
	}
	for name, data := range map[string]any{
		"not a dict":     []any{},
		"no timestamp":   map[string]any{"user_classes_count": map[string]any{}},
		"no counts":      map[string]any{"timestamp": 1.0},
		"negative count": map[string]any{"timestamp": 1.0, "user_classes_count": map[string]any{"A": int64(-1)}},
		"fraction":       map[string]any{"timestamp": 1.0, "user_classes_count": map[string]any{"A": 1.5}},
		"host int":       map[string]any{"timestamp": 1.0, "user_classes_count": map[string]any{}, "host": int64(1)},
	} {
		if _, err := ParseSpawn(data); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestEncodeRepairsBadUTF8(t *testing.T) {
	b, err := Message{Type: "stats", Data: Dict{{"name", "/caf\xe9"}}, NodeID: "n"}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if got := mustDecode(t, b).Data.(map[string]any)["name"]; got != "/caf\uFFFD" {
		t.Errorf("name %q", got)
	}
}

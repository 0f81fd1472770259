package mockserver

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/canarylab/canarylab/mockserver/strictyaml"
)

func TestParseConfigGood(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		check func(t *testing.T, c Config)
	}{
		{name: "empty", doc: "", check: func(t *testing.T, c Config) {
			if !c.Profile.IsZero() || c.Routes != nil || c.Seed != nil || c.Phases != nil {
				t.Errorf("%+v", c)
			}
		}},
		{name: "null", doc: "null"},
		{name: "empty object", doc: "{}"},
		{name: "comment only", doc: "# nothing here\n"},
		{name: "json", doc: `{"seed": 3, "profile": {"errors": "503:0.1"}, "routes": [{"path": "/a", "bodySize": "2KiB"}]}`, check: func(t *testing.T, c Config) {
			if *c.Seed != 3 || c.Routes[0].BodySize != 2048 || c.Profile.Errors.Probability(503) != 0.1 {
				t.Errorf("%s", c.Marshal())
			}
		}},
		{name: "everything", doc: `
seed: 18
profile:
  latency: {lognormal: {median: 20ms, p99: 200ms}, cap: 2s}
  errors: {rate: 0.1, codes: {503: 3, 500: 1}}
  faults: {reset: 0.01, hang: {rate: 0.01, duration: 10s}, truncate: {rate: 0.01, fraction: 0.2}}
phases:
  start: onTrigger
  repeat: true
  steps:
  - {name: a, duration: 30s}
  - {name: b, duration: 1m, profile: {errors: "503:0.5"}}
rules:
- name: canary
  when: {methods: [GET, POST], path: "/api/*", headers: {X-Canary: "true"}, query: {v: "2"}}
  profile: {latency: 100ms}
routes:
- {name: home, method: GET, path: /, body: hi, status: 202, headers: {X-A: b}}
- {method: "*", path: /users/:id, template: "{{.Params.id}}", profile: {errors: "500:0.5"}}
- {path: /blob, bodySize: 1MiB}
- {method: POST, path: /echo, echo: true}
- {path: /health, bypass: true}
requestFaults: {disabled: true, maxDelay: 5s}
server: {readHeaderTimeout: 5s, idleTimeout: 1m, shutdownTimeout: 10s, maxBodyBytes: 64KiB, maxInFlight: 100, disableProbes: true}
`, check: func(t *testing.T, c Config) {
			if len(c.Routes) != 5 || len(c.Rules) != 1 || len(c.Phases.Steps) != 2 || c.Server.MaxBodyBytes != 64<<10 ||
				c.Server.MaxInFlight != 100 || !c.RequestFaults.Disabled || c.Routes[2].BodySize != 1<<20 ||
				math.Abs(c.Profile.Errors.Probability(503)-0.075) > 1e-12 || c.Profile.Faults.Hang.Duration.String() != "10s" {
				t.Errorf("%s", c.Marshal())
			}
			if got := c.Profile.String(); got != "latency=lognormal(20ms,200ms) cap 2s errors=500:0.025,503:0.075 faults=reset:0.01,hang(10s):0.01,truncate(0.2):0.01" {
				t.Errorf("Profile.String() = %q", got)
			}
		}},
		{name: "last step without duration", doc: "phases: {steps: [{duration: 5s}, {name: forever}]}"},
		{name: "single open step", doc: "phases: {steps: [{profile: {errors: \"503\"}}]}"},
		{name: "same path, different methods", doc: "routes: [{method: GET, path: /a}, {method: POST, path: /a}]"},
		{name: "null fields", doc: "profile: null\nroutes: null\nphases: null\nseed: null"},
		{name: "latency forms", doc: `
routes:
- {path: /a, profile: {latency: 5ms}}
- {path: /b, profile: {latency: "uniform(1ms, 5ms)"}}
- {path: /c, profile: {latency: "normal(10ms,2ms) cap 20ms"}}
- {path: /d, profile: {latency: "5ms:0.9,50ms:10%"}}
- {path: /e, profile: {latency: "percentiles(p50=10ms,p99=100ms)"}}
- {path: /f, profile: {latency: {percentiles: {p50: 10ms, p999: 1s}}}}
- {path: /g, profile: {latency: {mix: [{delay: 5ms, weight: 0.5}]}}}
- {path: /h, profile: {latency: {fixed: 0}}}
`},
		{name: "rule path glob only", doc: `rules: [{when: {path: "*.json"}, profile: {errors: "500"}}]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.doc))
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
			// Every good config builds a server.
			if _, err := New(c, Options{Clock: newFakeClock()}); err != nil {
				t.Errorf("New: %v", err)
			}
		})
	}
}

func TestParseConfigBad(t *testing.T) {
	type fe struct{ Field, Message string } // a local type: vet wants keyed literals of imported ones
	tests := []struct {
		name string
		doc  string
		want []fe // exact fields, and a part of each message
	}{
		{"misspelt latency", "profile: {latncy: 5ms}", []fe{{"profile.latncy", "unknown field: did you mean latency?"}}},
		{"misspelt top level", "rotues: []", []fe{{"rotues", "did you mean routes?"}}},
		{"wrong case", "profile: {Errors: \"503\"}", []fe{{"profile.Errors", "did you mean errors? (names are case-sensitive)"}}},
		{"far from anything", "profile: {zzzzzzzz: 1}", []fe{{"profile.zzzzzzzz", "known fields here: errors, faults, latency"}}},
		{"unknown route field", "routes: [{path: /a, bdy: x}]", []fe{{"routes[0].bdy", "did you mean body?"}}},
		{"decode errors together", "unknown: 1\nprofile: {latncy: 1ms}\nroutes: [{path: /a, status: x}]", []fe{
			{"profile.latncy", "latency"}, {"routes[0].status", "whole number"}, {"unknown", "unknown field"}}},
		{"duplicate route", "routes: [{path: /a}, {path: /a, body: x}]", []fe{{"routes[1].path", "ANY /a is already routed by routes[0]"}}},
		{"duplicate route any and star", "routes: [{path: /a}, {method: '*', path: /a}]", []fe{{"routes[1].path", "already routed"}}},
		{"duplicate route method", "routes: [{path: /b}, {method: GET, path: /a}, {method: GET, path: /a}]", []fe{{"routes[2].path", "GET /a is already routed by routes[1]"}}},
		{"route path", "routes: [{path: users/:id}]", []fe{{"routes[0].path", "must start with /"}}},
		{"route method", "routes: [{path: /a, method: get}]", []fe{{"routes[0].method", "capitals"}}},
		{"route status", "routes: [{path: /a, status: 700}]", []fe{{"routes[0].status", "between 100 and 599"}}},
		{"route status type", `routes: [{path: /a, status: "200"}]`, []fe{{"routes[0].status", "must be a whole number, got the string \"200\""}}},
		{"two bodies", "routes: [{path: /a, body: x, echo: true}]", []fe{{"routes[0].body", "only one of"}}},
		{"body too big", "routes: [{path: /a, bodySize: 65MiB}]", []fe{{"routes[0].bodySize", "at most 64MiB"}}},
		{"body size unit", "routes: [{path: /a, bodySize: 10XB}]", []fe{{"routes[0].bodySize", "unknown unit"}}},
		{"body size negative", "routes: [{path: /a, bodySize: -5}]", []fe{{"routes[0].bodySize", "negative"}}},
		{"template", "routes: [{path: /a, template: '{{.Foo'}]", []fe{{"routes[0].template", "unclosed action"}}},
		{"header name", "routes: [{path: /a, headers: {'bad header': x}}]", []fe{{"routes[0].headers.bad header", "not a valid header name"}}},
		{"route profile", "routes: [{path: /a, profile: {latency: {lognormal: {median: 0s, p99: 1s}}}}]", []fe{{"routes[0].profile.latency.lognormal.median", "positive"}}},
		{"several route problems", "routes: [{path: a, method: x, status: 1}]", []fe{
			{"routes[0].path", "/"}, {"routes[0].method", "HTTP method"}, {"routes[0].status", "between"}}},
		{"errors rate", "profile: {errors: {rate: 1.5}}", []fe{{"profile.errors.rate", "between 0 and 1"}}},
		{"errors code", "profile: {errors: {rate: 0.5, codes: {700: 1}}}", []fe{{"profile.errors.codes.700", "between 100 and 599"}}},
		{"errors code key", "profile: {errors: {rate: 0.5, codes: {abc: 1}}}", []fe{{"profile.errors.codes.abc", "key must be a whole number"}}},
		{"errors short form", `profile: {errors: "503:x"}`, []fe{{"profile.errors", "not a probability"}}},
		{"faults sum", "profile: {faults: {reset: 0.6, close: 0.6}}", []fe{{"profile.faults", "sum to 1.2"}}},
		{"fault fraction", "profile: {faults: {hang: {rate: 0.1, fraction: 0.5}}}", []fe{{"profile.faults.hang.fraction", "only truncate"}}},
		{"latency order", "profile: {latency: {uniform: {min: 50ms, max: 10ms}}}", []fe{{"profile.latency.uniform.max", "at least min"}}},
		{"latency two shapes", "profile: {latency: {fixed: 5ms, normal: {mean: 5ms, stddev: 1ms}}}", []fe{{"profile.latency", "only one"}}},
		{"latency unknown shape field", "profile: {latency: {fixd: 5ms}}", []fe{{"profile.latency.fixd", "did you mean fixed?"}}},
		{"latency without unit", "profile: {latency: 50}", []fe{{"profile.latency", "must be a distribution"}}},
		{"max delay without unit", "requestFaults: {maxDelay: 5}", []fe{{"requestFaults.maxDelay", "with a unit"}}},
		{"phases empty", "phases: {}", []fe{{"phases.steps", "at least one step"}}},
		{"phases no steps", "phases: {steps: []}", []fe{{"phases.steps", "at least one step"}}},
		{"phases start", "phases: {start: later, steps: [{}]}", []fe{{"phases.start", `got "later"`}}},
		{"phases middle step open", "phases: {steps: [{}, {duration: 5s}]}", []fe{{"phases.steps[0].duration", "only the last step"}}},
		{"phases open steps", "phases: {steps: [{}, {}, {}]}", []fe{
			{"phases.steps[0].duration", "only the last step"}, {"phases.steps[1].duration", "only the last step"}}},
		{"phases repeat needs last duration", "phases: {repeat: true, steps: [{duration: 5s}, {}]}", []fe{{"phases.steps[1].duration", "repeating schedule"}}},
		{"phases step profile", "phases: {steps: [{profile: {errors: {rate: 3}}}]}", []fe{{"phases.steps[0].profile.errors.rate", "between 0 and 1"}}},
		{"rule empty when", `rules: [{when: {}, profile: {errors: "500"}}]`, []fe{{"rules[0].when", "matches every request"}}},
		{"rule no when", `rules: [{profile: {errors: "500"}}]`, []fe{{"rules[0].when", "matches every request"}}},
		{"rule empty profile", "rules: [{when: {path: /a}}]", []fe{{"rules[0].profile", "is empty"}}},
		{"rule when fields", `rules: [{when: {methods: [GET, get], path: a}, profile: {errors: "500"}}]`, []fe{
			{"rules[0].when.methods[1]", "not an HTTP method"}, {"rules[0].when.path", "must start with /"}}},
		{"second rule", `rules: [{when: {path: /a}, profile: {errors: "500"}}, {when: {path: /b}, profile: {errors: {rate: 2}}}]`, []fe{
			{"rules[1].profile.errors.rate", "between 0 and 1"}}},
		{"server limits", "server: {maxInFlight: -1}", []fe{{"server.maxInFlight", "must not be negative"}}},
		{"server size", "server: {maxBodyBytes: -1}", []fe{{"server.maxBodyBytes", "must not be negative"}}},
		{"server type", "server: {disableProbes: 1}", []fe{{"server.disableProbes", "true or false"}}},
		{"seed negative", "seed: -1", []fe{{"seed", "must not be negative"}}},
		{"seed type", "seed: abc", []fe{{"seed", "whole number"}}},
		{"routes not a list", "routes: {path: /a}", []fe{{"routes", "must be a list, got an object"}}},
		{"profile not an object", "profile: [1]", []fe{{"profile", "must be an object (key: value), got a list"}}},
		{"document not an object", "- a\n- b", []fe{{"", "must be an object"}}},
		{"everything wrong at once", `
profile: {errors: {rate: 2}}
phases: {steps: []}
rules: [{when: {}, profile: {errors: "500"}}]
routes: [{path: x}]
server: {maxInFlight: -3}
`, []fe{{"profile.errors.rate", ""}, {"phases.steps", ""}, {"rules[0].when", ""}, {"routes[0].path", ""}, {"server.maxInFlight", ""}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.doc))
			if err == nil {
				t.Fatal("ParseConfig accepted it")
			}
			var got strictyaml.FieldErrors
			if !errors.As(err, &got) {
				t.Fatalf("error %q (%T) is not a strictyaml.FieldErrors", err, err)
			}
			var fields, wantFields []string
			for _, e := range got {
				fields = append(fields, e.Field)
			}
			for _, w := range tc.want {
				wantFields = append(wantFields, w.Field)
			}
			if !slices.Equal(fields, wantFields) {
				t.Fatalf("fields %q, want %q\n(%v)", fields, wantFields, err)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i].Message, w.Message) {
					t.Errorf("%s: message %q, want it to contain %q", w.Field, got[i].Message, w.Message)
				}
			}
		})
	}
}

func TestParseConfigNotYAML(t *testing.T) {
	for _, doc := range []string{
		"profile: {}\nprofile: {}\n",
		"routes:\n- path: /a\n  path: /b\n",
		`{"seed": 1, "seed": 2}`,
		"profile: [",
		"\t- tab",
	} {
		_, err := ParseConfig([]byte(doc))
		if err == nil {
			t.Errorf("%q: accepted", doc)
			continue
		}
		if !strings.Contains(err.Error(), "not valid YAML or JSON") {
			t.Errorf("%q: error %q", doc, err)
		}
	}
	_, err := ParseConfig([]byte("profile: {}\nprofile: {}\n"))
	if !strings.Contains(err.Error(), "already set") {
		t.Errorf("duplicate key: error %q does not say so", err)
	}
}

// TestParseConfigLargeSeed: GET /status reports a random seed anywhere in
// the uint64 range, and the docs say a run is repeated by writing that seed
// into the config.
func TestParseConfigLargeSeed(t *testing.T) {
	srv, _ := newServer(t, "", Options{Seed: seedPtr(1 << 63)})
	doc := "seed: " + jsonString(t, srv.Seed())
	c, err := ParseConfig([]byte(doc))
	if err != nil {
		regressed(t, "strictyaml.check: an unsigned field refuses values above MaxInt64 (json.Number.Int64), so about half of the random seeds reported by GET /status cannot be written back into the config: "+err.Error())
	}
	if *c.Seed != 1<<63 {
		t.Errorf("seed %d", *c.Seed)
	}
}

func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestValidateBuiltConfig(t *testing.T) {
	c := Config{Routes: []Route{{Path: "x"}, {Path: "/y", Status: 42}}, Server: ServerSettings{MaxInFlight: -1}}
	err := c.Validate()
	var fes strictyaml.FieldErrors
	if !errors.As(err, &fes) || len(fes) != 3 {
		t.Fatalf("Validate() = %v", err)
	}
	if (Config{}).Validate() != nil {
		t.Error("the zero Config is not valid")
	}
	if _, err := New(c, Options{}); err == nil {
		t.Error("New accepted an invalid config")
	}
}

func TestParseSize(t *testing.T) {
	good := []struct {
		in   string
		want Size
	}{
		{"0", 0},
		{"1024", 1024},
		{"16KiB", 16 << 10},
		{"16kib", 16 << 10},
		{"1MiB", 1 << 20},
		{"1GiB", 1 << 30},
		{"10kB", 10_000},
		{"2MB", 2_000_000},
		{"1GB", 1_000_000_000},
		{"1.5KiB", 1536},
		{" 2 k ", 2048},
		{"3m", 3 << 20},
		{"7b", 7},
		{"7B", 7},
		{"0.5", 0},
	}
	for _, tc := range good {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "abc", "-1", "1XB", "1e3", "1 2", "KiB", "99999999999GiB", "1.KiB"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}

	var s Size
	for _, tc := range []struct {
		json string
		want Size
		ok   bool
	}{
		{`1024`, 1024, true},
		{`"16KiB"`, 16 << 10, true},
		{`0`, 0, true},
		{`-1`, 0, false},
		{`"-1"`, 0, false},
		{`true`, 0, false},
		{`1.5`, 0, false},
		{`"lots"`, 0, false},
	} {
		s = 0
		err := json.Unmarshal([]byte(tc.json), &s)
		if (err == nil) != tc.ok || (tc.ok && s != tc.want) {
			t.Errorf("Size.UnmarshalJSON(%s) = %d, %v", tc.json, s, err)
		}
	}
	if b, _ := json.Marshal(Size(2048)); string(b) != "2048" {
		t.Errorf("Size.MarshalJSON = %s", b)
	}
}

func TestConfigMarshalRoundTrip(t *testing.T) {
	c := mustParse(t, `
seed: 18
profile:
  latency: "percentiles(p50=10ms,p99=100ms) cap 1s"
  errors: "503:0.2,500:0.1"
  faults: "hang(10s):0.01,slowBody(2s):0.02,truncate(0.3):0.03"
phases: {steps: [{name: a, duration: 1m30s}, {name: b, profile: {latency: "5ms:0.5,1s:0.1"}}]}
rules: [{when: {headers: {X-A: "*"}}, profile: {errors: "500"}}]
routes:
- {path: /a, bodySize: 1.5KiB, headers: {x-b: c}, profile: {}}
- {path: /b, template: "<{{.Version}}> & co"}
requestFaults: {maxDelay: 1h}
`)
	first := c.Marshal()
	again, err := ParseConfig(first)
	if err != nil {
		t.Fatalf("the marshalled config does not parse: %v\n%s", err, first)
	}
	if second := again.Marshal(); string(second) != string(first) {
		t.Errorf("round trip changed the config:\n%s\n%s", first, second)
	}
	if again.Routes[0].Profile == nil {
		t.Error("an empty route profile was lost")
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(`profile: {errors: "503:0.1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err := LoadConfig(good); err != nil || c.Profile.Errors == nil {
		t.Errorf("LoadConfig(good) = %+v, %v", c, err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`profile: {latncy: 5ms}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(bad)
	var fes strictyaml.FieldErrors
	if err == nil || !strings.Contains(err.Error(), bad) || !errors.As(err, &fes) || fes[0].Field != "profile.latncy" {
		t.Errorf("LoadConfig(bad) = %v, want the path and the field errors", err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadConfig(missing) = %v", err)
	}
}

// TestExampleConfigs parses every shipped example and builds a server from
// it. Without an examples directory it covers no file.
func TestExampleConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d example configs", len(files))
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := LoadConfig(f)
			if err != nil {
				t.Fatal(err)
			}
			srv, err := New(c, Options{Clock: newFakeClock()})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			again, err := ParseConfig(c.Marshal())
			if err != nil || string(again.Marshal()) != string(c.Marshal()) {
				t.Errorf("round trip: %v", err)
			}
			_ = srv
		})
	}
}

package plan

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canarylab/canarylab/mockserver/strictyaml"
)

func TestParseGood(t *testing.T) {
	p, err := Parse([]byte(`
host: http://127.0.0.1:8080
users:
- name: Browser
  weight: 3
  wait: between(500ms, 2s)
  tasks:
  - {weight: 5, request: {path: /}}
  - {weight: 1, request: {method: post, path: '/orders?x=1', body: '{}', expect: [201, 2xx]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	u := p.Users[0]
	if u.Wait.Kind != WaitBetween || u.Wait.Min != 500*time.Millisecond || u.Wait.Max != 2*time.Second {
		t.Errorf("wait %+v", u.Wait)
	}
	r := u.Tasks[1].Request
	if r.HTTPMethod() != "POST" || r.StatsName() != "/orders" {
		t.Errorf("method %s name %s", r.HTTPMethod(), r.StatsName())
	}
	for code, want := range map[int]bool{201: true, 204: true, 200: true, 301: false, 503: false} {
		if got := r.Succeeded(code); got != want {
			t.Errorf("Succeeded(%d) = %v, want %v", code, got, want)
		}
	}
	def := u.Tasks[0].Request
	for code, want := range map[int]bool{200: true, 302: true, 404: false, 503: false, 0: false} {
		if got := def.Succeeded(code); got != want {
			t.Errorf("default Succeeded(%d) = %v, want %v", code, got, want)
		}
	}
}

func TestParseBadNamesTheField(t *testing.T) {
	tests := []struct {
		name, doc string
		fields    []string
	}{
		{"no users", "host: http://127.0.0.1:1", []string{"users"}},
		{"not loopback", "host: http://10.0.0.1:8080\nusers: [{name: A, tasks: [{request: {path: /}}]}]", []string{"host"}},
		{"bad class name", "users: [{name: 'my user', tasks: [{request: {path: /}}]}]", []string{"users[0].name"}},
		{"python keyword", "users: [{name: class, tasks: [{request: {path: /}}]}]", []string{"users[0].name"}},
		{"reserved name", "users: [{name: _canarylab_x, tasks: [{request: {path: /}}]}]", []string{"users[0].name"}},
		{"duplicate class", "users: [{name: A, tasks: [{request: {path: /}}]}, {name: A, tasks: [{request: {path: /}}]}]", []string{"users[1].name"}},
		{"no tasks", "users: [{name: A}]", []string{"users[0].tasks"}},
		{"relative path", "users: [{name: A, tasks: [{request: {path: x}}]}]", []string{"users[0].tasks[0].request.path"}},
		{"bad expect", "users: [{name: A, tasks: [{request: {path: /, expect: [6xx]}}]}]", []string{"users[0].tasks[0].request.expect[0]"}},
		{"bad wait", "users: [{name: A, wait: 'between(2s, 1s)', tasks: [{request: {path: /}}]}]", []string{"users[0].wait"}},
		{"unknown field", "users: [{name: A, tasks: [{reqest: {path: /}}]}]", []string{"users[0].tasks[0].reqest"}},
		{"negative weight", "users: [{name: A, weight: -1, tasks: [{weight: -2, request: {path: /}}]}]", []string{"users[0].weight", "users[0].tasks[0].weight"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			fe, ok := err.(strictyaml.FieldErrors)
			if !ok {
				t.Fatalf("error %v (%T), want FieldErrors", err, err)
			}
			var got []string
			for _, e := range fe {
				got = append(got, e.Field)
			}
			if strings.Join(got, ",") != strings.Join(tt.fields, ",") {
				t.Errorf("fields %v, want %v (%v)", got, tt.fields, err)
			}
		})
	}
}

func TestCheckHost(t *testing.T) {
	good := []string{"http://127.0.0.1:8080", "http://127.1.2.3", "https://localhost:8443", "http://[::1]:9000", "http://svc.localhost"}
	bad := []string{"http://10.0.0.1", "http://example.com", "ftp://127.0.0.1", "127.0.0.1:8080", "http://127.0.0.1.example.com", "http://[::2]:80"}
	for _, h := range good {
		if err := CheckHost(h); err != nil {
			t.Errorf("CheckHost(%q): %v", h, err)
		}
	}
	for _, h := range bad {
		if err := CheckHost(h); err == nil {
			t.Errorf("CheckHost(%q) accepted a host that is not loopback or not a URL", h)
		}
	}
}

func TestWait(t *testing.T) {
	tests := []struct {
		in      string
		elapsed time.Duration
		u       float64
		want    time.Duration
	}{
		{"none", time.Second, 0.5, 0},
		{"constant(1s)", 300 * time.Millisecond, 0.5, time.Second},
		{"between(1s, 3s)", 0, 0.25, 1500 * time.Millisecond},
		{"constantThroughput(4)", 100 * time.Millisecond, 0, 150 * time.Millisecond},
		{"constantThroughput(4)", time.Second, 0, 0},
		{"constantPacing(2s)", 500 * time.Millisecond, 0, 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		w, err := ParseWait(tt.in)
		if err != nil {
			t.Fatalf("ParseWait(%q): %v", tt.in, err)
		}
		if got := w.Next(tt.elapsed, tt.u); got != tt.want {
			t.Errorf("%s.Next(%v, %v) = %v, want %v", tt.in, tt.elapsed, tt.u, got, tt.want)
		}
		back, err := ParseWait(w.String())
		if err != nil || back != w {
			t.Errorf("%q → %q does not round trip: %+v %v", tt.in, w.String(), back, err)
		}
	}
	for _, bad := range []string{"between(1s)", "constant(5)", "poisson(1)", "constantThroughput(0)", "constantPacing(0s)", "between(2s,1s)"} {
		if _, err := ParseWait(bad); err == nil {
			t.Errorf("ParseWait(%q) accepted", bad)
		}
	}
}

func TestReadyPlansParse(t *testing.T) {
	files, err := filepath.Glob("../plans/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("ready plans: %v %v", files, err)
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := os.Stat("../plans/sample2.yaml"); err != nil {
		t.Error("the failing-traffic plan sample2.yaml is missing")
	}
}

func TestDefaultPlanIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestCheckHostClusterServices(t *testing.T) {
	for _, tc := range []struct {
		host      string
		inCluster bool
		ok        bool
	}{
		{"http://127.0.0.1:8080", false, true},
		{"http://podinfo.test.svc.cluster.local:80", true, true},
		{"http://podinfo.test.svc.cluster.local:80", false, false},
		{"http://podinfo.test:80", true, false},
		{"http://example.com", true, false},
		{"http://evil.com.svc.cluster.local.example.com", true, false},
		{"http://a.b.c.svc.cluster.local", true, false},
		{"http://Podinfo.test.svc.cluster.local", true, false},
	} {
		if tc.inCluster {
			t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
		} else {
			t.Setenv("KUBERNETES_SERVICE_HOST", "")
		}
		if err := CheckHost(tc.host); (err == nil) != tc.ok {
			t.Errorf("CheckHost(%q) in cluster %v: %v, want ok=%v", tc.host, tc.inCluster, err, tc.ok)
		}
	}
}

package mockserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canarylab/canarylab/mockserver/strictyaml"
)

// adminError is the body of a refused admin request.
type adminError struct {
	Error  string                  `json:"error"`
	Fields []strictyaml.FieldError `json:"fields"`
}

// fieldMessage returns the message of the error naming field, and whether
// there is one.
func (e adminError) fieldMessage(field string) (string, bool) {
	for _, f := range e.Fields {
		if f.Field == field {
			return f.Message, true
		}
	}
	return "", false
}

func mainStatus(srv *Server, target string) int {
	return do(srv.Handler(), http.MethodGet, target, nil).Code
}

func TestAdminGetConfig(t *testing.T) {
	const doc = `
seed: 9
profile: {errors: "503:0.1", latency: "lognormal(50ms,400ms) cap 2s"}
routes:
- {name: user, method: GET, path: /users/:id, bodySize: 16KiB}
`
	srv, _ := newServer(t, doc, Options{})
	want := srv.Config().Marshal()

	tests := []struct {
		name     string
		target   string
		headers  []string
		wantType string
	}{
		{"json", "/config", nil, "application/json"},
		{"yaml query", "/config?format=yaml", nil, "application/yaml"},
		{"yaml accept", "/config", []string{"Accept", "application/yaml"}, "application/yaml"},
		{"query wins over accept", "/config?format=json", []string{"Accept", "application/yaml"}, "application/json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := doAdmin(srv, http.MethodGet, tc.target, "", tc.headers...)
			if rec.Code != 200 {
				t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
			}
			if ct := rec.Header().Get("Content-Type"); ct != tc.wantType {
				t.Errorf("Content-Type = %q, want %q", ct, tc.wantType)
			}
			if g := rec.Header().Get("X-Canarylab-Config-Generation"); g != "1" {
				t.Errorf("X-Canarylab-Config-Generation = %q, want 1", g)
			}
			isJSON := json.Valid(rec.Body.Bytes())
			if isJSON != (tc.wantType == "application/json") {
				t.Errorf("body is JSON: %v, want %v:\n%s", isJSON, !isJSON, rec.Body.String())
			}
			cfg, err := ParseConfig(rec.Body.Bytes())
			if err != nil {
				t.Fatalf("the config served does not parse: %v\n%s", err, rec.Body.String())
			}
			if got := cfg.Marshal(); string(got) != string(want) {
				t.Errorf("round trip changed the config:\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestAdminPutConfig(t *testing.T) {
	srv, _ := newServer(t, `profile: {latency: 1ms}`, Options{})
	if mainStatus(srv, "/") != 200 {
		t.Fatal("the first config does not answer 200")
	}

	rec := doAdmin(srv, http.MethodPut, "/config", "profile: {errors: \"503\"}\nseed: 5\n")
	if rec.Code != 200 {
		t.Fatalf("PUT good config: %d %s", rec.Code, rec.Body.String())
	}
	applied := decodeJSON[struct {
		Generation uint64 `json:"generation"`
		Seed       uint64 `json:"seed"`
	}](t, rec)
	if applied.Generation != 2 || applied.Seed != 5 || srv.Generation() != 2 {
		t.Errorf("PUT answered %+v, Generation() = %d; want generation 2, seed 5", applied, srv.Generation())
	}
	if got := mainStatus(srv, "/"); got != 503 {
		t.Errorf("after PUT: status %d, want 503", got)
	}
	// JSON works as well as YAML.
	if rec := doAdmin(srv, http.MethodPut, "/config", `{"profile": {"errors": "502"}}`, "Content-Type", "application/json"); rec.Code != 200 {
		t.Fatalf("PUT JSON: %d %s", rec.Code, rec.Body.String())
	}
	if got := mainStatus(srv, "/"); got != 502 || srv.Generation() != 3 {
		t.Errorf("after PUT JSON: status %d, generation %d; want 502, 3", got, srv.Generation())
	}

	bad := []struct {
		name, doc string
		field     string
		message   string
	}{
		{"rate out of range", `profile: {errors: {rate: 2}}`, "profile.errors.rate", "between 0 and 1"},
		{"short form rate", `profile: {errors: "503:2"}`, "profile.errors", "outside 0..1"},
		{"route path", `routes: [{path: users}]`, "routes[0].path", "must start with /"},
		{"duplicate route", "routes: [{path: /a}, {path: /a, body: b}]", "routes[1].path", "already routed by routes[0]"},
		{"unknown top field", `profle: {errors: "503"}`, "profle", "did you mean profile?"},
		{"unknown nested field", `profile: {latncy: 5ms}`, "profile.latncy", "did you mean latency?"},
		{"case", `Profile: {latency: 5ms}`, "Profile", "case-sensitive"},
		{"wrong type", `server: {maxInFlight: many}`, "server.maxInFlight", "whole number"},
		{"rule matches all", `rules: [{when: {}, profile: {errors: "500"}}]`, "rules[0].when", "matches every request"},
		{"phase step", `phases: {steps: [{profile: {errors: "500"}}, {duration: 5s}]}`, "phases.steps[0].duration", "must be positive"},
		{"negative size", `server: {maxBodyBytes: -1}`, "server.maxBodyBytes", "negative"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			rec := doAdmin(srv, http.MethodPut, "/config", tc.doc)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", rec.Code, rec.Body.String())
			}
			e := decodeJSON[adminError](t, rec)
			msg, ok := e.fieldMessage(tc.field)
			if !ok {
				t.Fatalf("fields %+v do not name %s", e.Fields, tc.field)
			}
			if !strings.Contains(msg, tc.message) {
				t.Errorf("%s: message %q, want it to contain %q", tc.field, msg, tc.message)
			}
			if !strings.Contains(e.Error, tc.field) {
				t.Errorf("error %q does not name %s", e.Error, tc.field)
			}
			if srv.Generation() != 3 {
				t.Errorf("generation %d after a refused config, want 3", srv.Generation())
			}
			if got := mainStatus(srv, "/"); got != 502 {
				t.Errorf("after a refused config: status %d, want the old config's 502", got)
			}
		})
	}
	t.Run("several errors at once", func(t *testing.T) {
		rec := doAdmin(srv, http.MethodPut, "/config", "profile: {errors: {rate: 2}}\nroutes: [{path: x}]\n")
		e := decodeJSON[adminError](t, rec)
		if rec.Code != 400 || len(e.Fields) != 2 {
			t.Errorf("status %d, fields %+v; want 400 with two fields", rec.Code, e.Fields)
		}
	})
	t.Run("too large", func(t *testing.T) {
		rec := doAdmin(srv, http.MethodPut, "/config", "# "+strings.Repeat("x", maxAdminBody))
		if rec.Code != http.StatusRequestEntityTooLarge || !json.Valid(rec.Body.Bytes()) {
			t.Errorf("status %d %.100s, want 413 with a JSON error", rec.Code, rec.Body.String())
		}
	})
	t.Run("not YAML", func(t *testing.T) {
		rec := doAdmin(srv, http.MethodPut, "/config", "profile: [")
		if e := decodeJSON[adminError](t, rec); rec.Code != 400 || !strings.Contains(e.Error, "not valid YAML") {
			t.Errorf("status %d, %+v", rec.Code, e)
		}
	})
	if got := gather(t, srv).value("canarylab_mock_config_updates_total", map[string]string{"source": "api", "result": "refused"}); got != float64(len(bad)+2) {
		t.Errorf("config_updates{api,refused} = %v, want %d", got, len(bad)+2)
	}
	if got := gather(t, srv).value("canarylab_mock_config_updates_total", map[string]string{"source": "api", "result": "applied"}); got != 2 {
		t.Errorf("config_updates{api,applied} = %v, want 2", got)
	}
}

func TestAdminStartSettings(t *testing.T) {
	srv, _ := newServer(t, `profile: {errors: "503"}`, Options{})
	for _, doc := range []string{
		"server: {readHeaderTimeout: 3s}",
		"server: {idleTimeout: 1s}",
	} {
		for _, method := range []string{http.MethodPut, http.MethodPatch} {
			rec := doAdmin(srv, method, "/config", doc)
			field := strings.TrimSuffix(strings.TrimPrefix(strings.Fields(doc)[1], "{"), ":")
			if rec.Code != 400 || !strings.Contains(rec.Body.String(), "server."+field) {
				t.Errorf("%s %s: %d %s; want 400 naming server.%s", method, doc, rec.Code, rec.Body.String(), field)
			}
		}
	}
	if srv.Generation() != 1 || mainStatus(srv, "/") != 503 {
		t.Errorf("a refused start setting changed the config: generation %d", srv.Generation())
	}
	// Writing the value in force (the default) is fine.
	if rec := doAdmin(srv, http.MethodPut, "/config", "server: {readHeaderTimeout: 10s, idleTimeout: 2m}"); rec.Code != 200 {
		t.Errorf("PUT with the defaults spelled out: %d %s", rec.Code, rec.Body.String())
	}
	// The limits apply at once.
	if rec := doAdmin(srv, http.MethodPatch, "/config", `{"server": {"maxInFlight": 3, "maxBodyBytes": "1KiB"}}`); rec.Code != 200 {
		t.Errorf("PATCH limits: %d %s", rec.Code, rec.Body.String())
	}
	t.Run("message", func(t *testing.T) {
		err := sameStartSettings(ServerSettings{}, ServerSettings{IdleTimeout: 1_000_000_000})
		if err == nil {
			t.Fatal("no error")
		}
		if !strings.Contains(err.Error(), "server.idleTimeout") {
			t.Fatalf("error %q does not name server.idleTimeout", err)
		}
		if strings.Contains(err.Error(), "(10s)") {
			regressed(t, "server.go sameStartSettings: the message for an idleTimeout change quotes readHeaderTimeout's value: "+err.Error())
		}
	})
}

func TestAdminPatchConfig(t *testing.T) {
	srv, _ := newServer(t, `profile: {errors: "503", latency: 2ms}`, Options{})
	steps := []struct {
		name       string
		patch      string
		wantCode   int
		wantStatus int
		wantTiming string
	}{
		{"null deletes a key", `{"profile": {"errors": null}}`, 200, 200, "injected-delay;dur=2"},
		{"yaml patch merges", "profile:\n  errors: \"500\"\n", 200, 500, "injected-delay;dur=2"},
		{"nested merge into the latency object", `{"profile": {"latency": {"cap": "1ms"}}}`, 200, 500, `injected-delay;dur=1;desc="capped from 2ms"`},
		{"add routes", `{"routes": [{"path": "/*", "profile": {"errors": {"rate": 0}}}]}`, 200, 200, `injected-delay;dur=1;desc="capped from 2ms"`},
		{"bad value", `{"profile": {"errors": {"rate": 5}}}`, 400, 200, `injected-delay;dur=1;desc="capped from 2ms"`},
		{"bad field", `{"profile": {"eror": "503"}}`, 400, 200, `injected-delay;dur=1;desc="capped from 2ms"`},
		{"not an object", `[1, 2]`, 400, 200, `injected-delay;dur=1;desc="capped from 2ms"`},
		{"not YAML", `{"profile": `, 400, 200, `injected-delay;dur=1;desc="capped from 2ms"`},
		{"delete everything", `{"profile": null, "routes": null}`, 200, 200, "injected-delay;dur=0"},
	}
	gen := srv.Generation()
	for _, st := range steps {
		rec := doAdmin(srv, http.MethodPatch, "/config", st.patch)
		if rec.Code != st.wantCode {
			t.Fatalf("%s: PATCH answered %d %s, want %d", st.name, rec.Code, rec.Body.String(), st.wantCode)
		}
		if rec.Code == 200 {
			gen++
		}
		if srv.Generation() != gen {
			t.Errorf("%s: generation %d, want %d", st.name, srv.Generation(), gen)
		}
		main := do(srv.Handler(), http.MethodGet, "/", nil)
		if main.Code != st.wantStatus || main.Header().Get("Server-Timing") != st.wantTiming {
			t.Errorf("%s: then GET / = %d %q, want %d %q", st.name, main.Code, main.Header().Get("Server-Timing"), st.wantStatus, st.wantTiming)
		}
	}
	rec := doAdmin(srv, http.MethodPatch, "/config", `{"profile": {"errors": {"rate": 5}}}`)
	if e := decodeJSON[adminError](t, rec); !strings.Contains(fmt.Sprint(e.Fields), "profile.errors.rate") {
		t.Errorf("a bad PATCH's fields %+v do not name profile.errors.rate", e.Fields)
	}
}

func TestMergePatch(t *testing.T) {
	base := mustParse(t, `
profile: {errors: "503:0.5", latency: 5ms}
routes: [{path: /a, headers: {X-A: a, X-B: b}}]
`)
	got, err := MergePatch(base, []byte(`{"routes": [{"path": "/b"}], "profile": {"latency": null}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Routes) != 1 || got.Routes[0].Path != "/b" || got.Profile.Latency != nil || got.Profile.Errors == nil {
		t.Errorf("MergePatch = %s", got.Marshal())
	}
	// Lists are replaced whole; maps inside them are not merged.
	if len(got.Routes[0].Headers) != 0 {
		t.Errorf("headers survived the replacement of the routes list: %v", got.Routes[0].Headers)
	}
	// The base is left alone.
	if base.Profile.Latency == nil || base.Routes[0].Path != "/a" {
		t.Errorf("MergePatch changed its base: %s", base.Marshal())
	}
	if _, err := MergePatch(base, []byte(`"string"`)); err == nil {
		t.Error("a string patch was accepted")
	}
	// An empty patch is an empty object: nothing changes.
	same, err := MergePatch(base, []byte(`{}`))
	if err != nil || string(same.Marshal()) != string(base.Marshal()) {
		t.Errorf("empty patch: %v\n%s", err, same.Marshal())
	}
}

func TestAdminValidate(t *testing.T) {
	srv, _ := newServer(t, "", Options{})
	rec := doAdmin(srv, http.MethodPost, "/config/validate", `profile: {errors: "503"}`)
	if rec.Code != 200 {
		t.Fatalf("validate good: %d %s", rec.Code, rec.Body.String())
	}
	got := decodeJSON[map[string]any](t, rec)
	if got["valid"] != true || got["profile"] != "errors=503:1" {
		t.Errorf("validate answered %v", got)
	}
	rec = doAdmin(srv, http.MethodPost, "/config/validate", `routes: [{path: /a, method: get}]`)
	if e := decodeJSON[adminError](t, rec); rec.Code != 400 || len(e.Fields) != 1 || e.Fields[0].Field != "routes[0].method" {
		t.Errorf("validate bad: %d %+v", rec.Code, e)
	}
	if rec := doAdmin(srv, http.MethodPost, "/config/validate", `server: {readHeaderTimeout: 1s}`); rec.Code != 400 {
		t.Errorf("validate with a changed start setting: %d, want 400", rec.Code)
	}
	if srv.Generation() != 1 || mainStatus(srv, "/") != 200 {
		t.Errorf("validate applied something: generation %d", srv.Generation())
	}
}

func TestAdminToken(t *testing.T) {
	srv, _ := newServer(t, "", Options{AdminToken: "s3cret"})
	tests := []struct {
		method, target string
		auth           string
		want           int
	}{
		{"GET", "/config", "", 401},
		{"GET", "/config", "Bearer wrong", 401},
		{"GET", "/config", "s3cret", 401},
		{"GET", "/config", "Bearer s3cret", 200},
		{"GET", "/", "", 401},
		{"GET", "/", "Bearer s3cret", 200},
		{"GET", "/status", "Bearer s3cret", 200},
		{"PUT", "/config", "", 401},
		{"POST", "/readyz/disable", "", 401},
		{"DELETE", "/counts", "", 401},
		{"GET", "/no/such/endpoint", "", 401},
		{"GET", "/no/such/endpoint", "Bearer s3cret", 404},
		{"GET", "/metrics", "", 200},
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
	}
	for _, tc := range tests {
		var headers []string
		if tc.auth != "" {
			headers = []string{"Authorization", tc.auth}
		}
		body := ""
		if tc.method == "PUT" {
			body = `profile: {errors: "503"}`
		}
		rec := doAdmin(srv, tc.method, tc.target, body, headers...)
		if rec.Code != tc.want {
			t.Errorf("%s %s with %q: %d, want %d", tc.method, tc.target, tc.auth, rec.Code, tc.want)
		}
		if tc.want == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s %s: 401 without WWW-Authenticate: Bearer", tc.method, tc.target)
		}
	}
	if srv.Generation() != 1 || !srv.Ready() {
		t.Error("a request without the token changed the server")
	}
	rec := doAdmin(srv, http.MethodGet, "/", "", "Authorization", "Bearer s3cret")
	if !strings.Contains(rec.Body.String(), `"/config/validate"`) {
		t.Errorf("GET / does not list the endpoints: %s", rec.Body.String())
	}
}

func TestAdminOverride(t *testing.T) {
	srv, clock := newServer(t, "", Options{})
	rec := doAdmin(srv, http.MethodPost, "/override", `{"errors": "503", "for": "30s"}`)
	if rec.Code != 200 {
		t.Fatalf("POST /override: %d %s", rec.Code, rec.Body.String())
	}
	st := decodeJSON[OverrideStatus](t, rec)
	if !st.Active || st.Remaining != "30s" || st.Until == nil || !st.Until.Equal(clock.Now().Add(30*time.Second)) {
		t.Errorf("POST /override answered %+v", st)
	}
	if got := mainStatus(srv, "/"); got != 503 {
		t.Errorf("with the override: %d, want 503", got)
	}
	clock.Advance(10 * time.Second)
	if st := decodeJSON[OverrideStatus](t, doAdmin(srv, http.MethodGet, "/override", "")); !st.Active || st.Remaining != "20s" {
		t.Errorf("GET /override after 10s = %+v", st)
	}
	if s := decodeJSON[Status](t, doAdmin(srv, http.MethodGet, "/status", "")); !s.Override.Active {
		t.Errorf("GET /status does not show the override: %+v", s)
	}
	clock.Advance(21 * time.Second)
	if st := decodeJSON[OverrideStatus](t, doAdmin(srv, http.MethodGet, "/override", "")); st.Active {
		t.Errorf("GET /override after expiry = %+v", st)
	}
	if got := mainStatus(srv, "/"); got != 200 {
		t.Errorf("after expiry: %d, want 200", got)
	}

	// YAML body, then DELETE.
	if rec := doAdmin(srv, http.MethodPost, "/override", "errors: \"500\"\nfor: 1h\n"); rec.Code != 200 {
		t.Fatalf("POST /override YAML: %d %s", rec.Code, rec.Body.String())
	}
	if got := mainStatus(srv, "/"); got != 500 {
		t.Errorf("with the YAML override: %d, want 500", got)
	}
	if st := decodeJSON[OverrideStatus](t, doAdmin(srv, http.MethodDelete, "/override", "")); st.Active {
		t.Errorf("DELETE /override answered %+v", st)
	}
	if got := mainStatus(srv, "/"); got != 200 {
		t.Errorf("after DELETE: %d, want 200", got)
	}

	bad := []struct {
		name, body, field string
	}{
		{"no for", `{"errors": "503"}`, "for"},
		{"zero for", `{"errors": "503", "for": "0s"}`, "for"},
		{"for without unit", `{"errors": "503", "for": 30}`, "for"},
		{"nothing to lay over", `{"for": "30s"}`, ""},
		{"bad rate", `{"errors": {"rate": 3}, "for": "30s"}`, "errors.rate"},
		{"unknown field", `{"errs": "503", "for": "30s"}`, "errs"},
	}
	for _, tc := range bad {
		rec := doAdmin(srv, http.MethodPost, "/override", tc.body)
		if rec.Code != 400 {
			t.Errorf("%s: %d, want 400", tc.name, rec.Code)
			continue
		}
		e := decodeJSON[adminError](t, rec)
		if _, ok := e.fieldMessage(tc.field); !ok {
			t.Errorf("%s: fields %+v do not name %q", tc.name, e.Fields, tc.field)
		}
	}
	if srv.OverrideStatus().Active {
		t.Error("a refused override is in force")
	}
}

func TestAdminCounts(t *testing.T) {
	srv, clock := newServer(t, "", Options{})
	for _, target := range []string{"/", "/", "/?status=503", "/?delay=1ms"} {
		do(srv.Handler(), http.MethodGet, target, nil)
	}
	c := decodeJSON[Counts](t, doAdmin(srv, http.MethodGet, "/counts", ""))
	if c.Requests != 4 || c.Statuses["200"] != 3 || c.Statuses["503"] != 1 || c.InjectedErrors["503"] != 1 ||
		c.Delayed != 1 || c.RequestDriven != 2 || c.ErrorRatio != 0.25 || c.Faults["reset"] != 0 {
		t.Errorf("GET /counts = %+v", c)
	}
	if len(c.Faults) != 5 || len(c.Rejected) != 3 {
		t.Errorf("every fault kind and reject reason should be listed: %v %v", c.Faults, c.Rejected)
	}
	clock.Advance(time.Minute)
	old := decodeJSON[Counts](t, doAdmin(srv, http.MethodDelete, "/counts", ""))
	if old.Requests != 4 {
		t.Errorf("DELETE /counts answered %+v, want the counts before the reset", old)
	}
	after := decodeJSON[Counts](t, doAdmin(srv, http.MethodGet, "/counts", ""))
	if after.Requests != 0 || len(after.Statuses) != 0 || !after.Since.Equal(clock.Now()) {
		t.Errorf("after the reset: %+v", after)
	}
	// The metrics are not reset.
	if got := gather(t, srv).value("canarylab_mock_requests_total", nil); got != 4 {
		t.Errorf("requests_total = %v after a counts reset, want 4", got)
	}
}

func TestAdminReadyz(t *testing.T) {
	srv, _ := newServer(t, "", Options{})
	check := func(want int) {
		t.Helper()
		if rec := doAdmin(srv, http.MethodGet, "/readyz", ""); rec.Code != want {
			t.Errorf("admin /readyz = %d, want %d", rec.Code, want)
		}
		if got := mainStatus(srv, "/readyz"); got != want {
			t.Errorf("main /readyz = %d, want %d", got, want)
		}
		if got := mainStatus(srv, "/healthz"); got != 200 {
			t.Errorf("main /healthz = %d, want 200 whatever the readiness", got)
		}
		wantGauge := 0.0
		if want == 200 {
			wantGauge = 1
		}
		if got := gather(t, srv).value("canarylab_mock_ready", nil); got != wantGauge {
			t.Errorf("canarylab_mock_ready = %v, want %v", got, wantGauge)
		}
	}
	check(200)
	rec := doAdmin(srv, http.MethodPost, "/readyz/disable", "")
	if rec.Code != 200 || decodeJSON[map[string]bool](t, rec)["ready"] {
		t.Errorf("POST /readyz/disable = %d %s", rec.Code, rec.Body.String())
	}
	check(503)
	if s := decodeJSON[Status](t, doAdmin(srv, http.MethodGet, "/status", "")); s.Ready {
		t.Error("GET /status says ready")
	}
	if rec := doAdmin(srv, http.MethodPost, "/readyz/enable", ""); rec.Code != 200 {
		t.Errorf("POST /readyz/enable = %d", rec.Code)
	}
	check(200)
}

func TestAdminPhases(t *testing.T) {
	srv, clock := newServer(t, "", Options{})
	ps := decodeJSON[PhaseStatus](t, doAdmin(srv, http.MethodGet, "/phases", ""))
	if ps.Configured || ps.Index != -1 {
		t.Errorf("GET /phases without phases = %+v", ps)
	}
	if rec := doAdmin(srv, http.MethodPost, "/phases/start", ""); rec.Code != http.StatusConflict {
		t.Errorf("POST /phases/start without phases = %d, want 409", rec.Code)
	}
	if rec := doAdmin(srv, http.MethodPut, "/config", `
phases:
  start: onTrigger
  steps:
  - {name: warm, duration: 1m}
  - {name: broken, profile: {errors: "503"}}
`); rec.Code != 200 {
		t.Fatalf("PUT phases: %d %s", rec.Code, rec.Body.String())
	}
	ps = decodeJSON[PhaseStatus](t, doAdmin(srv, http.MethodGet, "/phases", ""))
	if !ps.Configured || ps.Started || len(ps.Steps) != 2 {
		t.Errorf("GET /phases before the trigger = %+v", ps)
	}
	rec := doAdmin(srv, http.MethodPost, "/phases/start", "")
	if rec.Code != 200 {
		t.Fatalf("POST /phases/start = %d %s", rec.Code, rec.Body.String())
	}
	if ps := decodeJSON[PhaseStatus](t, rec); !ps.Started || ps.Index != 0 || ps.Name != "warm" || ps.Remaining != "1m" {
		t.Errorf("POST /phases/start answered %+v", ps)
	}
	clock.Advance(time.Minute)
	if ps := decodeJSON[PhaseStatus](t, doAdmin(srv, http.MethodGet, "/phases", "")); ps.Index != 1 || ps.Name != "broken" || ps.Elapsed != "1m" {
		t.Errorf("GET /phases after 1m = %+v", ps)
	}
	if got := mainStatus(srv, "/"); got != 503 {
		t.Errorf("in the broken step: %d, want 503", got)
	}
}

func TestAdminReload(t *testing.T) {
	srv, _ := newServer(t, `profile: {errors: "503"}`, Options{})
	if rec := doAdmin(srv, http.MethodPost, "/reload", ""); rec.Code != 404 {
		t.Errorf("POST /reload without a reloader = %d, want 404", rec.Code)
	}
	var next atomic.Pointer[func() (Config, error)]
	srv.SetReloader(func() (Config, error) { return (*next.Load())() })

	good := func() (Config, error) { return ParseConfig([]byte(`profile: {errors: "500"}`)) }
	next.Store(&good)
	rec := doAdmin(srv, http.MethodPost, "/reload", "")
	if rec.Code != 200 || decodeJSON[map[string]uint64](t, rec)["generation"] != 2 {
		t.Fatalf("POST /reload good = %d %s", rec.Code, rec.Body.String())
	}
	if got := mainStatus(srv, "/"); got != 500 {
		t.Errorf("after a reload: %d, want 500", got)
	}

	failing := func() (Config, error) { return Config{}, errors.New("mock config /etc/x.yaml: read: no such file") }
	next.Store(&failing)
	rec = doAdmin(srv, http.MethodPost, "/reload", "")
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "no such file") {
		t.Errorf("POST /reload with a failing loader = %d %s, want 400 with the loader's error", rec.Code, rec.Body.String())
	}
	invalid := func() (Config, error) { return Config{Routes: []Route{{Path: "nope"}}}, nil }
	next.Store(&invalid)
	rec = doAdmin(srv, http.MethodPost, "/reload", "")
	if e := decodeJSON[adminError](t, rec); rec.Code != 400 || len(e.Fields) != 1 || e.Fields[0].Field != "routes[0].path" {
		t.Errorf("POST /reload with an invalid config = %d %+v", rec.Code, e)
	}
	if srv.Generation() != 2 || mainStatus(srv, "/") != 500 {
		t.Errorf("a failed reload changed the config: generation %d", srv.Generation())
	}
	if err := srv.Reload(SourceSignal); err == nil {
		t.Error("Reload with an invalid config: no error")
	}
	m := gather(t, srv)
	if got := m.value("canarylab_mock_config_updates_total", map[string]string{"source": "api", "result": "refused"}); got != 2 {
		t.Errorf("config_updates{api,refused} = %v, want 2", got)
	}
	if got := m.value("canarylab_mock_config_updates_total", map[string]string{"source": "signal", "result": "refused"}); got != 1 {
		t.Errorf("config_updates{signal,refused} = %v, want 1", got)
	}
}

func TestWatchFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mock.yaml")
	write := func(doc string) {
		t.Helper()
		tmp := filepath.Join(dir, ".mock.yaml.tmp")
		if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil { // as editors and ConfigMaps do
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, []byte(`profile: {errors: "503"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, Options{Clock: newFakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetReloader(func() (Config, error) { return LoadConfig(path) })

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var calls atomic.Int32
	if err := WatchFile(ctx, path, func() {
		calls.Add(1)
		_ = srv.Reload(SourceFile)
	}); err != nil {
		t.Fatal(err)
	}
	// Another file in the directory does not count.
	if err := os.WriteFile(filepath.Join(dir, "other.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(path, []byte(`profile: {errors: "500"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rewrite to be applied", 5*time.Second, func() bool { return mainStatus(srv, "/") == 500 })
	write(`profile: {errors: "502"}`)
	waitFor(t, "the replacement to be applied", 5*time.Second, func() bool { return mainStatus(srv, "/") == 502 })

	// A broken file is refused and the last good config keeps serving.
	gen := srv.Generation()
	write(`profile: {errors: {rate: 9}}`)
	waitFor(t, "the broken file to be refused", 5*time.Second, func() bool {
		return gather(t, srv).value("canarylab_mock_config_updates_total", map[string]string{"source": "file", "result": "refused"}) >= 1
	})
	if got := mainStatus(srv, "/"); got != 502 || srv.Generation() != gen {
		t.Errorf("after a broken file: %d, generation %d; want the last good 502, generation %d", got, srv.Generation(), gen)
	}
	if calls.Load() < 3 {
		t.Errorf("%d calls for three changes", calls.Load())
	}

	if err := WatchFile(ctx, filepath.Join(dir, "missing-dir", "x.yaml"), func() {}); err == nil {
		t.Error("WatchFile in a missing directory: no error")
	}
}

// TestConcurrentReconfigurationUnderLoad replaces and patches the config,
// with good and bad versions, while clients keep requesting through a real
// listener. No request may fail at the transport level or get an answer the
// configs cannot give.
func TestConcurrentReconfigurationUnderLoad(t *testing.T) {
	srv, _ := newServer(t, `profile: {errors: "503:0.1"}`, Options{})
	run := startServer(t, srv)

	updates := []struct {
		method, body string
		ok           bool
	}{
		{"PUT", `profile: {errors: "503:0.3", latency: "uniform(0ms,2ms)"}`, true},
		{"PUT", `profile: {errors: {rate: 2}}`, false},
		{"PATCH", `{"profile": {"errors": "500:0.2"}}`, true},
		{"PATCH", `{"routes": [{"path": "nope"}]}`, false},
		{"PUT", "rules: [{when: {path: \"/r*\"}, profile: {errors: \"500:0.5\"}}]\nroutes: [{path: \"/*\", template: '{\"v\": \"{{.Version}}\"}'}]", true},
		{"PATCH", `{"profile": {"latncy": "1ms"}}`, false},
		{"PUT", "seed: 3\nphases: {repeat: true, steps: [{duration: 1ms, profile: {errors: \"503:0.5\"}}, {duration: 1ms}]}", true},
		{"PUT", `server: {readHeaderTimeout: 1s}`, false},
		{"PATCH", `{"phases": null, "profile": {"errors": null}}`, true},
	}

	stop := make(chan struct{})
	var applies atomic.Int64
	var wg sync.WaitGroup
	var failures sync.Map
	fail := func(format string, args ...any) { failures.Store(fmt.Sprintf(format, args...), true) }

	wg.Go(func() {
		client := &http.Client{Timeout: 10 * time.Second}
		defer client.CloseIdleConnections()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			u := updates[i%len(updates)]
			req, _ := http.NewRequest(u.method, run.AdminURL()+"/config", strings.NewReader(u.body))
			resp, err := client.Do(req)
			if err != nil {
				fail("admin %s: %v", u.method, err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == 200 && u.ok:
				applies.Add(1)
			case resp.StatusCode == 400 && !u.ok:
			default:
				fail("admin %s %q: %d %s", u.method, u.body, resp.StatusCode, body)
			}
		}
	})

	var served atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			defer client.CloseIdleConnections()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(fmt.Sprintf("%s/r%d/%d", run.URL(), w, i))
				if err != nil {
					fail("request: %v", err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				served.Add(1)
				if err != nil {
					fail("read body: %v", err)
					continue
				}
				switch resp.StatusCode {
				case 200, 500, 503:
				default:
					fail("status %d: %s", resp.StatusCode, body)
				}
				if resp.Header.Get(HeaderVersion) != "v1" || !json.Valid(body) {
					fail("malformed answer %d %q (version %q)", resp.StatusCode, body, resp.Header.Get(HeaderVersion))
				}
			}
		})
	}
	time.Sleep(800 * time.Millisecond) // the duration of the load, not a wait for an event
	close(stop)
	wg.Wait()

	t.Logf("%d applies, %d requests", applies.Load(), served.Load())
	failures.Range(func(k, _ any) bool { t.Error(k); return true })
	if got, want := srv.Generation(), uint64(1+applies.Load()); got != want {
		t.Errorf("generation %d, want 1 + %d applies", got, applies.Load())
	}
	if applies.Load() < 2 || served.Load() < 20 {
		t.Errorf("too little happened: %d applies, %d requests", applies.Load(), served.Load())
	}
	if got := srv.Counts().Requests; got != uint64(served.Load()) {
		t.Errorf("Counts().Requests = %d, clients saw %d answers", got, served.Load())
	}
}

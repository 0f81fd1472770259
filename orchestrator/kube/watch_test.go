package kube

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/version"
	discoveryfake "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/rest"
	clienttesting "k8s.io/client-go/testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"

	"github.com/canarylab/canarylab/orchestrator/analysis"
	"github.com/canarylab/canarylab/orchestrator/report"
)

func obj(m map[string]any) *unstructured.Unstructured { return &unstructured.Unstructured{Object: m} }

func vs(http ...any) *unstructured.Unstructured {
	return obj(map[string]any{"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
		"metadata": map[string]any{"name": "podinfo", "namespace": "test"}, "spec": map[string]any{"http": http}})
}

func route(p, c int64, mirror bool) map[string]any {
	r := map[string]any{"route": []any{
		map[string]any{"destination": map[string]any{"host": "podinfo-primary"}, "weight": p},
		map[string]any{"destination": map[string]any{"host": "podinfo-canary"}, "weight": c},
	}}
	if mirror {
		r["mirror"] = map[string]any{"host": "podinfo-canary"}
	}
	return r
}

func TestVirtualServiceRoutes(t *testing.T) {
	for _, tc := range []struct {
		name string
		vs   *unstructured.Unstructured
		want analysis.Routes
	}{
		{"one route", vs(route(90, 10, false)), analysis.Routes{Primary: 90, Canary: 10}},
		{"mirrored", vs(route(100, 0, true)), analysis.Routes{Primary: 100, Mirrored: true}},
		{"A/B: the match route has the canary", vs(route(0, 100, false), map[string]any{"route": []any{
			map[string]any{"destination": map[string]any{"host": "podinfo-primary"}, "weight": int64(100)}}}), analysis.Routes{Canary: 100}},
		{"no canary route", vs(map[string]any{"route": []any{}}), analysis.Routes{}},
	} {
		if got := vsRoutes(tc.vs, "podinfo"); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// recorder collects ticks.
type recorder struct{ ticks []report.Tick }

func (r *recorder) Started(*report.Run)        {}
func (r *recorder) Revision(time.Time)         {}
func (r *recorder) Ticked(t report.Tick)       { r.ticks = append(r.ticks, t) }
func (r *recorder) Note(time.Duration, string) {}

var (
	canaryGVR = schema.GroupVersionResource{Group: "flagger.app", Version: "v1beta1", Resource: "canaries"}
	vsGVR     = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1beta1", Resource: "virtualservices"}
	eventGVR  = schema.GroupVersionResource{Version: "v1", Resource: "events"}
)

func fakeEngine(objs ...runtime.Object) (*Engine, *dynfake.FakeDynamicClient) {
	scheme := runtime.NewScheme()
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{
		canaryGVR: "CanaryList", vsGVR: "VirtualServiceList", eventGVR: "EventList",
	}, objs...)
	// Like discovery, the mapper knows each group's preferred version.
	m := meta.NewDefaultRESTMapper([]schema.GroupVersion{{Group: "flagger.app", Version: "v1beta1"},
		{Group: "networking.istio.io", Version: "v1beta1"}, {Version: "v1"}})
	m.Add(schema.GroupVersionKind{Group: "flagger.app", Version: "v1beta1", Kind: "Canary"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1beta1", Kind: "VirtualService"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Event"}, meta.RESTScopeNamespace)
	return &Engine{opts: Options{Poll: time.Millisecond, Logger: slog.New(slog.DiscardHandler)}, dyn: dyn, mapper: m}, dyn
}

func event(uid, msg, typ string, count int64, at time.Time) *unstructured.Unstructured {
	return obj(map[string]any{"apiVersion": "v1", "kind": "Event",
		"metadata":       map[string]any{"name": "podinfo." + uid, "namespace": "test", "uid": uid},
		"involvedObject": map[string]any{"kind": "Canary", "name": "podinfo", "namespace": "test"},
		"type":           typ, "message": msg, "count": count, "lastTimestamp": at.UTC().Format(time.RFC3339)})
}

func canaryObj(phase string, fc, weight int64) *unstructured.Unstructured {
	return obj(map[string]any{"apiVersion": "flagger.app/v1beta1", "kind": "Canary",
		"metadata": map[string]any{"name": "podinfo", "namespace": "test"},
		"status":   map[string]any{"phase": phase, "failedChecks": fc, "canaryWeight": weight}})
}

// The watcher turns status changes, weights and events into ticks; a
// repeated event (client-go counts repetitions) comes once per repetition;
// client-go's "combined" prefix is dropped so expectations match.
func TestWatcherTicks(t *testing.T) {
	t0 := time.Now().Add(-time.Minute)
	e, dyn := fakeEngine(canaryObj("Progressing", 0, 10), vs(route(90, 10, false)),
		event("a", "Advance podinfo.test canary weight 10", "Normal", 1, t0))
	ctx := context.Background()
	r := &Rendered{Namespace: "test", Name: "podinfo", App: []*unstructured.Unstructured{canaryObj("", 0, 0)}}
	rec := &recorder{}
	w := &watcher{e: e, r: r, obs: rec, revision: t0}
	if _, err := w.poll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.poll(ctx); err != nil { // nothing changed: no tick
		t.Fatal(err)
	}
	upd := canaryObj("Progressing", 1, 10)
	if _, err := dyn.Resource(canaryGVR).Namespace("test").Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(eventGVR).Namespace("test").Create(ctx, event("b", "(combined from similar events): Halt podinfo.test advancement success rate 80.00% < 99%", "Warning", 2, t0.Add(time.Second)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ph, err := w.poll(ctx)
	if err != nil || ph != analysis.PhaseProgressing {
		t.Fatalf("poll: %s %v", ph, err)
	}
	if len(rec.ticks) != 2 {
		t.Fatalf("%d ticks, want 2", len(rec.ticks))
	}
	first, second := rec.ticks[0], rec.ticks[1]
	if first.Routes != (analysis.Routes{Primary: 90, Canary: 10}) || first.Status.CanaryWeight != 10 || len(first.Events) != 1 {
		t.Errorf("first tick %+v", first)
	}
	if second.Status.FailedChecks != 1 || len(second.Events) != 2 || second.Events[0].Message != "Halt podinfo.test advancement success rate 80.00% < 99%" ||
		second.Events[0].Type != analysis.Warning {
		t.Errorf("second tick %+v", second)
	}
	if second.At < time.Minute {
		t.Errorf("tick at %s, want a minute after the revision", second.At)
	}
}

func TestStuckInitializingSaysWhy(t *testing.T) {
	w := &watcher{r: &Rendered{Namespace: "test", Name: "podinfo"}}
	if got := w.why(); got != "it has no status: Flagger is not running, or not watching this namespace (kubectl apply -k manifests/flagger)" {
		t.Errorf("why() = %q", got)
	}
	c := canaryObj("Initializing", 0, 0)
	_ = unstructured.SetNestedSlice(c.Object, []any{map[string]any{"type": "Promoted", "status": "Unknown", "message": "New Deployment detected, starting initialization."}}, "status", "conditions")
	w.conditions = conditionText(c)
	if got := w.why(); got != "Promoted=Unknown (New Deployment detected, starting initialization.) (see the events: kubectl -n test describe canary podinfo)" {
		t.Errorf("why() = %q", got)
	}
}

// The checks before anything is applied say what is missing.
func TestPreflight(t *testing.T) {
	bare, _ := fakeEngine()
	bare.mapper = meta.NewDefaultRESTMapper(nil) // a cluster with no CRDs
	for _, tc := range []struct {
		name string
		e    *Engine
		want string
	}{
		{"no Flagger CRDs", bare, "Flagger's CRDs are not installed (no canaries.flagger.app): install Flagger with kubectl apply -k manifests/flagger"},
		{"CRDs but no Istio", withoutIstio(), "Istio's CRDs are not installed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.e.disc = fakeDiscovery()
			tc.e.cfg = &rest.Config{Host: "https://127.0.0.1:6443"}
			err := tc.e.preflight(context.Background(), &recorder{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("preflight: %v, want %q", err, tc.want)
			}
		})
	}
}

func withoutIstio() *Engine {
	e, _ := fakeEngine()
	m := meta.NewDefaultRESTMapper([]schema.GroupVersion{{Group: "flagger.app", Version: "v1beta1"}})
	m.Add(schema.GroupVersionKind{Group: "flagger.app", Version: "v1beta1", Kind: "Canary"}, meta.RESTScopeNamespace)
	e.mapper = m
	return e
}

func fakeDiscovery() *discoveryfake.FakeDiscovery {
	return &discoveryfake.FakeDiscovery{Fake: &clienttesting.Fake{}, FakedServerVersion: &version.Info{GitVersion: "v1.37.2"}}
}

func TestExplainRBAC(t *testing.T) {
	err := explain(apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "", errors.New("no")), "list Deployments")
	if !strings.HasPrefix(err.Error(), "RBAC denied: list Deployments:") {
		t.Errorf("explain: %v", err)
	}
}

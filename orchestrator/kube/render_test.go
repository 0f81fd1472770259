package kube

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/canarylab/canarylab/loadgen/locust"
	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/mockserver"
	"github.com/canarylab/canarylab/orchestrator/scenario"
	"github.com/canarylab/canarylab/scenarios"
)

func ready(t *testing.T, name string) *scenario.Scenario {
	t.Helper()
	s, err := scenarios.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func typed[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	var v T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &v, true); err != nil {
		t.Fatalf("%s %s does not decode strictly: %v", u.GetKind(), u.GetName(), err)
	}
	return &v
}

func env(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

// Every ready scenario renders to objects that decode strictly into their
// types and follow the contract the manifests and the e2e harness share.
func TestRenderReadyScenarios(t *testing.T) {
	for _, name := range scenarios.Names() {
		t.Run(name, func(t *testing.T) {
			s := ready(t, name)
			r, err := Render(s, RenderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if r.Namespace != s.Namespace() || r.Name != s.Name() {
				t.Fatalf("rendered %s/%s", r.Namespace, r.Name)
			}
			cm := typed[corev1.ConfigMap](t, find(r.App, "ConfigMap", r.Name+"-mock"))
			for _, k := range []string{"stable.yaml", "canary.yaml"} {
				if _, err := mockserver.ParseConfig([]byte(cm.Data[k])); err != nil {
					t.Errorf("%s does not parse as a mock config: %v", k, err)
				}
			}
			stable := typed[appsv1.Deployment](t, find(r.App, "Deployment", r.Name))
			rev := typed[appsv1.Deployment](t, r.Revision)
			for version, d := range map[string]*appsv1.Deployment{"stable": stable, "canary": rev} {
				c := d.Spec.Template.Spec.Containers[0]
				e := env(c)
				if c.Image != DefaultImage || len(c.Args) != 1 || c.Args[0] != "mock" || e["CANARYLAB_MOCK_LISTEN"] != ":8080" ||
					e["CANARYLAB_MOCK_ADMIN_LISTEN"] != ":9090" || e["CANARYLAB_MOCK_VERSION_LABEL"] != version ||
					e["CANARYLAB_MOCK_CONFIG"] != "/etc/canarylab/mock/"+version+".yaml" ||
					d.Spec.Template.Labels["app"] != r.Name || d.Spec.Template.Annotations["prometheus.io/port"] != "9090" {
					t.Errorf("%s Deployment breaks the contract: %+v %v", version, c, e)
				}
			}
			canary := find(r.App, "Canary", r.Name)
			if canary == nil || r.App[len(r.App)-1] != canary {
				t.Fatal("the Canary is not the last object of the app")
			}
			if iv, _, _ := unstructured.NestedString(canary.Object, "spec", "analysis", "interval"); iv != s.Analysis.Interval {
				t.Errorf("Canary analysis interval %q", iv)
			}
			for _, mt := range s.MetricTemplates {
				if find(r.App, "MetricTemplate", mt.Metadata.Name) == nil {
					t.Errorf("MetricTemplate %s not rendered", mt.Metadata.Name)
				}
			}
			if s.Load.Rate == 0 && s.Load.Users == 0 {
				if len(r.Load) != 0 {
					t.Errorf("no load, yet %d load objects", len(r.Load))
				}
				return
			}
			lcm := typed[corev1.ConfigMap](t, find(r.Load, "ConfigMap", r.Name+"-locust"))
			p, err := plan.Parse([]byte(lcm.Data["plan.yaml"]))
			if err != nil {
				t.Fatalf("plan.yaml: %v", err)
			}
			if lcm.Data["locustfile.py"] != locust.Locustfile(p) {
				t.Error("the locustfile is not the plan's")
			}
			w := typed[appsv1.Deployment](t, find(r.Load, "Deployment", r.Name+"-locust-worker"))
			we := env(w.Spec.Template.Spec.Containers[0])
			if we["CANARYLAB_LOAD_HOST"] != "http://"+r.Name+"."+r.Namespace+".svc.cluster.local:80" ||
				!strings.HasPrefix(we["CANARYLAB_LOAD_MASTER"], r.Name+"-locust-master."+r.Namespace+".svc.cluster.local:5557") {
				t.Errorf("worker env %v", we)
			}
			typed[appsv1.Deployment](t, find(r.Load, "Deployment", r.Name+"-locust-master"))
			typed[corev1.Service](t, find(r.Load, "Service", r.Name+"-locust-master"))
		})
	}
}

func TestRenderRateBecomesThroughput(t *testing.T) {
	s := ready(t, "failure-errors") // 20 rps
	r, err := Render(s, RenderOptions{Namespace: "elsewhere", Image: "canarylab/canarylab:v1"})
	if err != nil {
		t.Fatal(err)
	}
	lcm := typed[corev1.ConfigMap](t, find(r.Load, "ConfigMap", "podinfo-locust"))
	p, _ := plan.Parse([]byte(lcm.Data["plan.yaml"]))
	// 20 rps over 4 users: 5 tasks a second each.
	if w := p.Users[0].Wait; w.Kind != plan.WaitConstantThroughput || w.Rate != 5 {
		t.Errorf("wait %+v, want constantThroughput(5)", w)
	}
	m := typed[appsv1.Deployment](t, find(r.Load, "Deployment", "podinfo-locust-master"))
	if args := strings.Join(m.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "-u 4 -r 4") || !strings.Contains(args, "--expect-workers 1") {
		t.Errorf("master args %q", args)
	}
	if r.Namespace != "elsewhere" || find(r.App, "Namespace", "elsewhere") == nil {
		t.Error("--namespace not applied")
	}
	out, err := YAML(r.All())
	if err != nil || !strings.Contains(string(out), "image: canarylab/canarylab:v1") || strings.Count(string(out), "\n---\n") != len(r.All())-1 {
		t.Errorf("YAML: %v\n%s", err, out)
	}
}

package manifests

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	flaggerv1beta1 "github.com/fluxcd/flagger/pkg/apis/flagger/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The kustomizations users and the kube engine name; the seed's layout.
var wantDirs = []string{
	"flagger",
	"flagger/canary-test-flexiblemockserver",
	"flagger/upstream",
	"istio-crds",
	"locust/sample",
	"locust/sample2",
	"prometheus",
}

func paths(t *testing.T) (manifests, repo string) {
	t.Helper()
	manifests, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	return manifests, filepath.Dir(manifests)
}

// renderAndCheck renders every kustomization under root and runs every
// check, joining what fails.
func renderAndCheck(ctx context.Context, fsys filesys.FileSystem, root, repo string) (*tree, error) {
	tr, err := renderTree(fsys, root)
	if err != nil {
		return tr, err
	}
	return tr, errors.Join(checkTree(tr, repo), checkTraffic(ctx, tr))
}

// TestManifests renders every kustomization under manifests/ with the
// kustomize API, decodes every object strictly into its Go type, and
// checks the whole.
func TestManifests(t *testing.T) {
	root, repo := paths(t)
	tr, err := renderAndCheck(t.Context(), filesys.MakeFsOnDisk(), root, repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range wantDirs {
		if len(tr.Objs[d]) == 0 {
			t.Errorf("kustomization %s: missing or empty", d)
		}
	}
	for _, d := range tr.Dirs {
		kinds := map[string]int{}
		for _, o := range tr.Objs[d] {
			kinds[o.GVK.Kind]++
		}
		t.Logf("%s: %v", d, kinds)
	}
}

// TestSeedNames pins what the seed's readers know: the names, the
// analysis and the custom metric's name in Flagger's events.
func TestSeedNames(t *testing.T) {
	root, _ := paths(t)
	tr, err := renderTree(filesys.MakeFsOnDisk(), root)
	if err != nil {
		t.Fatal(err)
	}
	const dir, ns, name = "flagger/canary-test-flexiblemockserver", "mockserver", "canary-test-flexiblemockserver"
	if _, _, ok := find[*corev1.Namespace](tr, dir, "", ns); !ok {
		t.Errorf("%s: no Namespace %s", dir, ns)
	}
	if _, _, ok := find[*appsv1.Deployment](tr, dir, ns, name); !ok {
		t.Errorf("%s: no Deployment %s/%s", dir, ns, name)
	}
	c, _, ok := find[*flaggerv1beta1.Canary](tr, dir, ns, name)
	if !ok {
		t.Fatalf("%s: no Canary %s/%s", dir, ns, name)
	}
	a := c.Spec.Analysis
	if a.Interval != "1m" || a.Threshold != 10 || a.MaxWeight != 50 || a.StepWeight != 10 {
		t.Errorf("analysis interval %s threshold %d maxWeight %d stepWeight %d, want the seed's 1m, 10, 50, 10",
			a.Interval, a.Threshold, a.MaxWeight, a.StepWeight)
	}
	var names []string
	for _, m := range a.Metrics {
		names = append(names, m.Name)
	}
	if strings.Join(names, ",") != "request-success-rate,request-duration,my metric" {
		t.Errorf("metrics %q, want request-success-rate, request-duration and the seed's \"my metric\"", names)
	}
	for _, d := range []string{"locust/sample", "locust/sample2"} {
		for _, o := range tr.Objs[d] {
			if o.Namespace != ns {
				t.Errorf("%s: the load runs in %s, beside the canary (its sidecars route by Flagger's weights)", o, o.Namespace)
			}
		}
	}
}

// TestGeneratedFilesCurrent fails when a generated file differs from what
// make manifests-vendor writes now: edited by hand, or a module bumped in
// go.mod without regenerating.
func TestGeneratedFilesCurrent(t *testing.T) {
	_, repo := paths(t)
	files, err := Generate(repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(repo, filepath.FromSlash(f.Path)))
		if err != nil {
			t.Errorf("%v: run make manifests-vendor", err)
			continue
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("%s is not what make manifests-vendor generates: run it", f.Path)
		}
	}
	if len(files) < 10 {
		t.Errorf("Generate returned %d files", len(files))
	}
}

// TestMistakesFail edits a copy of manifests/ the way people slip, and
// expects the checks to name the mistake; the unedited copy passes.
func TestMistakesFail(t *testing.T) {
	root, repo := paths(t)
	const (
		mock    = "flagger/canary-test-flexiblemockserver/"
		sample  = "locust/sample/"
		flagger = "flagger/upstream/"
	)
	type edit struct{ file, old, new string }
	virtualService := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: extra
spec:
  hosts: [extra]
  http:
  - route:
    - destination: {host: extra}
`
	cases := []struct {
		name    string
		edits   []edit
		add     map[string]string // new files
		wantErr string            // "" for none
	}{
		{name: "unedited"},
		{name: "Deployment field", edits: []edit{{mock + "deployment.yaml", "containerPort: 8080", "containerPrt: 8080"}},
			wantErr: `unknown field "spec.template.spec.containers[0].ports[0].containerPrt"`},
		{name: "Canary field", edits: []edit{{mock + "canary.yaml", "stepWeight: 10", "stepWeigth: 10"}},
			wantErr: `unknown field "spec.analysis.stepWeigth"`},
		{name: "MetricTemplate field", edits: []edit{{mock + "metric-template.yaml", "    address:", "    adress:"}},
			wantErr: `unknown field "spec.provider.adress"`},
		{name: "MetricTemplate value against the CRD", edits: []edit{{mock + "metric-template.yaml", "type: prometheus", "type: prometeus"}},
			wantErr: `spec.provider.type`},
		{name: "Flagger CRD field", edits: []edit{{flagger + "crd.yaml", "  group: flagger.app\n  names:\n    kind: Canary\n", "  group: flagger.app\n  nmes:\n    kind: Canary\n"}},
			wantErr: `unknown field "spec.nmes"`},
		{name: "Istio CRD field", edits: []edit{{"istio-crds/customresourcedefinitions.gen.yaml",
			"  name: virtualservices.networking.istio.io\nspec:\n  group: networking.istio.io\n  names:", "  name: virtualservices.networking.istio.io\nspec:\n  group: networking.istio.io\n  nmaes:"}},
			wantErr: `unknown field "spec.nmaes"`},
		{name: "Service field", edits: []edit{{sample + "master.yaml", "targetPort: workers", "targetPrt: workers"}},
			wantErr: `unknown field "spec.ports[0].targetPrt"`},
		{name: "kustomization field", edits: []edit{{mock + "kustomization.yaml", "configMapGenerator:", "configMapGenerater:"}},
			wantErr: `configMapGenerater`},
		{name: "Istio object", add: map[string]string{mock + "extra.yaml": virtualService}, edits: []edit{{mock + "kustomization.yaml", "- canary.yaml\n", "- canary.yaml\n- extra.yaml\n"}}},
		{name: "Istio object field", add: map[string]string{mock + "extra.yaml": strings.Replace(virtualService, "hosts:", "hostz:", 1)},
			edits: []edit{{mock + "kustomization.yaml", "- canary.yaml\n", "- canary.yaml\n- extra.yaml\n"}}, wantErr: `hostz`},
		{name: "Prometheus config", edits: []edit{{"prometheus/prometheus.yml", "metrics_path: /stats/prometheus", "metric_path: /stats/prometheus"}},
			wantErr: `metric_path`},
		{name: "mock config", edits: []edit{{mock + "mock-config.yaml", "  latency: lognormal", "  latncy: lognormal"}},
			wantErr: `did you mean latency`},
		{name: "mock route gone", edits: []edit{{mock + "mock-config.yaml", "path: /api/status", "path: /api/health"}},
			wantErr: `GET /api/status: the mock answers 404`},
		{name: "plan", edits: []edit{{sample + "plan.yaml", "  wait: between(100ms, 500ms)", "  wiat: between(100ms, 500ms)"}},
			wantErr: `wiat`},
		{name: "locustfile drifts from its plan", edits: []edit{{sample + "locustfile.py", "    weight = 3\n", "    weight = 2\n"}},
			wantErr: `locustfile.py is not the locustfile of its plan.yaml`},
		{name: "mock listens on loopback", edits: []edit{{mock + "deployment.yaml", `value: ":9090"`, `value: "127.0.0.1:9090"`}},
			wantErr: `CANARYLAB_MOCK_ADMIN_LISTEN="127.0.0.1:9090", want ":9090"`},
		{name: "misspelt variable", edits: []edit{{mock + "deployment.yaml", "name: CANARYLAB_MOCK_VERSION_LABEL", "name: CANARYLAB_MOCK_VERSION_LABLE"}},
			wantErr: `CANARYLAB_MOCK_VERSION_LABLE is not a variable canarylab reads`},
		{name: "worker given users", edits: []edit{{sample + "worker.yaml", "        - name: CANARYLAB_LOAD_PLAN\n", "        - name: CANARYLAB_LOAD_USERS\n          value: \"10\"\n        - name: CANARYLAB_LOAD_PLAN\n"}},
			wantErr: `CANARYLAB_LOAD_USERS is not a variable canarylab reads`},
		{name: "worker host port", edits: []edit{{sample + "worker.yaml", "mockserver.svc.cluster.local:80", "mockserver.svc.cluster.local:8080"}},
			wantErr: `has no port 8080`},
		{name: "worker host by its short name", edits: []edit{{sample + "worker.yaml", "value: http://canary-test-flexiblemockserver.mockserver.svc.cluster.local:80", "value: http://canary-test-flexiblemockserver.mockserver:80"}},
			wantErr: `canarylab load refuses it`},
		{name: "missing MetricTemplate", edits: []edit{{mock + "canary.yaml", "name: my-metric", "name: my-metrics"}},
			wantErr: `MetricTemplate mockserver/my-metrics is not in manifests/`},
		{name: "templateRef without interval", edits: []edit{{mock + "canary.yaml", "      thresholdRange:\n        max: 10\n      interval: 1m\n", "      thresholdRange:\n        max: 10\n"}},
			wantErr: `no interval`},
		{name: "query not PromQL", edits: []edit{{mock + "metric-template.yaml", ") by (le)", ") by (le"}},
			wantErr: `is not PromQL`},
		{name: "query reads the primary", edits: []edit{{mock + "metric-template.yaml", `(-[0-9a-zA-Z]+)"`, `(-[0-9a-zA-Z]+)*"`}},
			wantErr: `must match the canary's pods`},
		{name: "query metric misspelt", edits: []edit{{mock + "metric-template.yaml", "request_duration_seconds_bucket", "request_duration_second_bucket"}},
			wantErr: `canarylab_mock_request_duration_second_bucket, which canarylab mock does not expose`},
		{name: "apex service not Flagger's", edits: []edit{{mock + "service.yaml", "app: canary-test-flexiblemockserver-primary", "app: canary-test-flexiblemockserver"}},
			wantErr: `Flagger would rewrite it`},
		{name: "metrics server elsewhere", edits: []edit{{"flagger/patch.yaml", "http://prometheus.istio-system:9090", "http://prometheus:9090"}},
			wantErr: `does not name a service of the cluster`},
		{name: "master waits for more workers", edits: []edit{{sample + "master.yaml", "- --expect-workers\n        - \"2\"", "- --expect-workers\n        - \"3\""}},
			wantErr: `--expect-workers 3, but the kustomization runs 2 workers`},
		{name: "no namespace", edits: []edit{{"prometheus/kustomization.yaml", "namespace: istio-system\n", ""}},
			wantErr: `Deployment prometheus: has no namespace`},
	}
	// Render the tree once first: the cases share every render their edits
	// leave alone.
	if _, err := renderTree(filesys.MakeFsOnDisk(), root); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fsys, mroot, err := memFS(root)
			if err != nil {
				t.Fatal(err)
			}
			for name, data := range tc.add {
				if err := fsys.WriteFile(path.Join(mroot, name), []byte(data)); err != nil {
					t.Fatal(err)
				}
			}
			for _, e := range tc.edits {
				if err := replaceOnce(fsys, path.Join(mroot, e.file), e.old, e.new); err != nil {
					t.Fatal(err)
				}
			}
			_, err = renderAndCheck(t.Context(), fsys, mroot, repo)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected failure: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("passed; want a failure naming %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("failure does not name %q:\n%v", tc.wantErr, err)
			case err != nil:
				t.Logf("failed as it should:\n%v", err)
			}
		})
	}
}

package manifests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/canarylab/canarylab/loadgen/locust"
	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/mockserver"
	"github.com/canarylab/canarylab/mockserver/behavior"
	flaggerv1beta1 "github.com/fluxcd/flagger/pkg/apis/flagger/v1beta1"
	promconfig "github.com/prometheus/prometheus/config"
	// Registers kubernetes_sd_configs with the config loader, as the
	// Prometheus binary's discovery/install does.
	_ "github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/promql/parser"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjsonutil "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"
	"sigs.k8s.io/yaml"
)

// The contract the kube engine and the e2e harness rely on (see
// README.md): images, commands, variables, paths and ports.
const (
	canarylabImage = "canarylab/canarylab:dev"
	locustImage    = "locustio/locust:2.12.1"

	mockConfigDir  = "/etc/canarylab/mock"
	mockConfigPath = mockConfigDir + "/config.yaml"
	loadPlanDir    = "/etc/canarylab/load"
	loadPlanPath   = loadPlanDir + "/plan.yaml"
	locustfileDir  = "/mnt/locust"
	locustfilePath = locustfileDir + "/locustfile.py"

	mockPort, adminPort   = 8080, 9090
	masterPort, webPort   = 5557, 8089
	locustMasterService   = "locust-master"
	flaggerSelectorLabels = "app,name,app.kubernetes.io/name" // Flagger's -selector-labels default
)

// The flags of `canarylab mock` and `canarylab load` as variables: a
// variable that is not one of them is ignored by the command, so a typo in
// its name would go unnoticed in a cluster.
var (
	mockVars = []string{"LISTEN", "ADMIN_LISTEN", "CONFIG", "VERSION_LABEL", "SEED", "LATENCY", "LATENCY_CAP",
		"ERRORS", "FAULTS", "REQUEST_FAULTS", "MAX_IN_FLIGHT", "ADMIN_TOKEN", "WATCH", "ACCESS_LOG", "LOG_FORMAT", "LOG_LEVEL"}
	// A worker's users and duration come from the master: `canarylab load
	// --master` refuses --users, --spawn-rate's companions, --rate,
	// --stage and --duration, so they are not allowed here either.
	workerVars = []string{"MASTER", "PLAN", "HOST", "MAX_CONCURRENCY", "JSON", "CSV", "METRICS_LISTEN",
		"THRESHOLD", "SEED", "QUIET", "CONSOLE_INTERVAL", "LOG_FORMAT", "LOG_LEVEL"}
)

// regexpMockMetric finds the mock server's metrics in a query.
var regexpMockMetric = regexp.MustCompile(`canarylab_mock_[a-zA-Z0-9_]+`)

// clusterScoped are the kinds without a namespace; any other kind must
// name one, or `kubectl apply -k` would put it in the current namespace.
var clusterScoped = map[string]bool{
	"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true, "CustomResourceDefinition": true,
}

// problems collects what is wrong, each with the object it is about.
type problems struct{ errs []error }

func (p *problems) add(o object, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", o, fmt.Sprintf(format, args...)))
}

func (p *problems) err() error { return errors.Join(p.errs...) }

// checkTree checks what strict decoding cannot: references between the
// objects, the canarylab contract, Flagger's objects, the configs inside
// ConfigMaps, and the generated files against their sources in repo.
func checkTree(t *tree, repo string) error {
	var p problems
	for _, o := range t.all() {
		if !clusterScoped[o.GVK.Kind] && !crdScoped(t, o, apiextensionsv1.ClusterScoped) && o.Namespace == "" {
			p.add(o, "has no namespace: set the kustomization's namespace")
		}
	}
	for _, d := range t.Dirs {
		checkReferences(t, d, &p)
		checkWorkloads(t, d, repo, &p)
	}
	checkFlagger(t, &p)
	checkCustomResources(t, &p)
	checkPrometheus(t, &p)
	return p.err()
}

// crdScoped tells whether a CRD in the tree defines o's kind with scope.
func crdScoped(t *tree, o object, scope apiextensionsv1.ResourceScope) bool {
	crd := findCRD(t, o.GVK.Group, o.GVK.Kind)
	return crd != nil && crd.Spec.Scope == scope
}

func findCRD(t *tree, group, kind string) *apiextensionsv1.CustomResourceDefinition {
	for _, o := range t.all() {
		if crd, ok := o.Obj.(*apiextensionsv1.CustomResourceDefinition); ok && crd.Spec.Group == group && crd.Spec.Names.Kind == kind {
			return crd
		}
	}
	return nil
}

// find returns the object of a kind, namespace and name in a
// kustomization ("" for any kustomization).
func find[T any](t *tree, dir, namespace, name string) (T, object, bool) {
	var zero T
	dirs := t.Dirs
	if dir != "" {
		dirs = []string{dir}
	}
	for _, d := range dirs {
		for _, o := range t.Objs[d] {
			if v, ok := o.Obj.(T); ok && o.Name == name && o.Namespace == namespace {
				return v, o, true
			}
		}
	}
	return zero, object{}, false
}

// each calls f for every object of type T in a kustomization ("" for all).
func each[T any](t *tree, dir string, f func(T, object)) {
	dirs := t.Dirs
	if dir != "" {
		dirs = []string{dir}
	}
	for _, d := range dirs {
		for _, o := range t.Objs[d] {
			if v, ok := o.Obj.(T); ok {
				f(v, o)
			}
		}
	}
}

// podTemplate returns the pod template of a workload.
func podTemplate(o object) (*corev1.PodTemplateSpec, bool) {
	switch w := o.Obj.(type) {
	case *appsv1.Deployment:
		return &w.Spec.Template, true
	case *appsv1.StatefulSet:
		return &w.Spec.Template, true
	case *appsv1.DaemonSet:
		return &w.Spec.Template, true
	}
	return nil, false
}

// checkReferences checks that what a kustomization's objects name exists
// in it: ConfigMaps, ServiceAccounts, roles, pods behind services, ports.
func checkReferences(t *tree, dir string, p *problems) {
	for _, o := range t.Objs[dir] {
		if tpl, ok := podTemplate(o); ok {
			if d, ok := o.Obj.(*appsv1.Deployment); ok && d.Spec.Selector != nil {
				sel := labels.SelectorFromSet(d.Spec.Selector.MatchLabels)
				if !sel.Matches(labels.Set(tpl.Labels)) {
					p.add(o, "the selector %v does not match the pod template's labels %v", d.Spec.Selector.MatchLabels, tpl.Labels)
				}
			}
			if sa := tpl.Spec.ServiceAccountName; sa != "" && sa != "default" {
				if _, _, ok := find[*corev1.ServiceAccount](t, dir, o.Namespace, sa); !ok {
					p.add(o, "ServiceAccount %s is not in the kustomization", sa)
				}
			}
			for _, v := range tpl.Spec.Volumes {
				if v.ConfigMap == nil || (v.ConfigMap.Optional != nil && *v.ConfigMap.Optional) {
					continue
				}
				cm, _, ok := find[*corev1.ConfigMap](t, dir, o.Namespace, v.ConfigMap.Name)
				if !ok {
					p.add(o, "volume %s: ConfigMap %s is not in the kustomization", v.Name, v.ConfigMap.Name)
					continue
				}
				for _, it := range v.ConfigMap.Items {
					if _, ok := cm.Data[it.Key]; !ok {
						p.add(o, "volume %s: ConfigMap %s has no key %s", v.Name, v.ConfigMap.Name, it.Key)
					}
				}
			}
			for _, c := range tpl.Spec.Containers {
				for _, probe := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
					if probe != nil && probe.HTTPGet != nil {
						if _, err := containerPort(c, probe.HTTPGet.Port); err != nil {
							p.add(o, "container %s: probe %s: %v", c.Name, probe.HTTPGet.Path, err)
						}
					}
				}
				for _, m := range c.VolumeMounts {
					if !slices.ContainsFunc(tpl.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) {
						p.add(o, "container %s mounts %s, which is not a volume of the pod", c.Name, m.Name)
					}
				}
			}
		}
		switch r := o.Obj.(type) {
		case *rbacv1.ClusterRoleBinding:
			checkBinding(t, dir, o, r.RoleRef, r.Subjects, p)
		case *rbacv1.RoleBinding:
			checkBinding(t, dir, o, r.RoleRef, r.Subjects, p)
		case *corev1.Service:
			if len(r.Spec.Selector) == 0 || isCanaryApex(t, o) {
				continue // Flagger's selector, checked with the Canary
			}
			pods := selectedPods(t, dir, o.Namespace, r.Spec.Selector)
			if len(pods) == 0 {
				p.add(o, "the selector %v matches no pod template in the kustomization", r.Spec.Selector)
			}
			for _, sp := range r.Spec.Ports {
				for _, tpl := range pods {
					if _, err := podPort(tpl, sp.TargetPort, sp.Port); err != nil {
						p.add(o, "port %s: %v", sp.Name, err)
					}
				}
			}
		}
	}
}

func checkBinding(t *tree, dir string, o object, ref rbacv1.RoleRef, subjects []rbacv1.Subject, p *problems) {
	var ok bool
	switch ref.Kind {
	case "ClusterRole":
		_, _, ok = find[*rbacv1.ClusterRole](t, dir, "", ref.Name)
	case "Role":
		_, _, ok = find[*rbacv1.Role](t, dir, o.Namespace, ref.Name)
	}
	if !ok {
		p.add(o, "roleRef %s %s is not in the kustomization", ref.Kind, ref.Name)
	}
	for _, s := range subjects {
		if s.Kind != rbacv1.ServiceAccountKind {
			continue
		}
		if _, _, ok := find[*corev1.ServiceAccount](t, dir, s.Namespace, s.Name); !ok {
			p.add(o, "subject ServiceAccount %s/%s is not in the kustomization", s.Namespace, s.Name)
		}
	}
}

// selectedPods returns the pod templates of a kustomization a selector
// matches.
func selectedPods(t *tree, dir, namespace string, selector map[string]string) []*corev1.PodTemplateSpec {
	var out []*corev1.PodTemplateSpec
	sel := labels.SelectorFromSet(selector)
	for _, o := range t.Objs[dir] {
		if tpl, ok := podTemplate(o); ok && o.Namespace == namespace && sel.Matches(labels.Set(tpl.Labels)) {
			out = append(out, tpl)
		}
	}
	return out
}

// containerPort resolves a port (a number or a name) of a container.
func containerPort(c corev1.Container, port intstr.IntOrString) (int32, error) {
	if port.Type == intstr.Int {
		return port.IntVal, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("container %s has no port named %q", c.Name, port.StrVal)
}

// podPort resolves a service's target port in a pod (empty: the port).
func podPort(tpl *corev1.PodTemplateSpec, target intstr.IntOrString, port int32) (int32, error) {
	if target.Type == intstr.Int {
		if target.IntVal == 0 {
			return port, nil
		}
		return target.IntVal, nil
	}
	for _, c := range tpl.Spec.Containers {
		if n, err := containerPort(c, target); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("no container of the pods has a port named %q", target.StrVal)
}

// env returns a container's variables; one taken from elsewhere than a
// literal value is reported, since the test could not check it.
func env(c corev1.Container, o object, p *problems) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			p.add(o, "container %s: %s must have a literal value", c.Name, e.Name)
			continue
		}
		if _, dup := out[e.Name]; dup {
			p.add(o, "container %s: %s is set twice", c.Name, e.Name)
		}
		out[e.Name] = e.Value
	}
	return out
}

// mountedConfigMap returns the ConfigMap a container sees at dir, and the
// key that holds file (a name in dir).
func mountedConfigMap(t *tree, dir string, o object, tpl *corev1.PodTemplateSpec, c corev1.Container, mountDir, file string) (*corev1.ConfigMap, string, error) {
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) != mountDir || m.SubPath != "" {
			continue
		}
		for _, v := range tpl.Spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.ConfigMap == nil {
				return nil, "", fmt.Errorf("%s is not a ConfigMap volume", mountDir)
			}
			cm, _, ok := find[*corev1.ConfigMap](t, dir, o.Namespace, v.ConfigMap.Name)
			if !ok {
				return nil, "", fmt.Errorf("ConfigMap %s is not in the kustomization", v.ConfigMap.Name)
			}
			key := file
			if len(v.ConfigMap.Items) > 0 {
				key = ""
				for _, it := range v.ConfigMap.Items {
					if it.Path == file {
						key = it.Key
					}
				}
			}
			if _, ok := cm.Data[key]; key == "" || !ok {
				return nil, "", fmt.Errorf("the ConfigMap %s mounted at %s has no %s", cm.Name, mountDir, file)
			}
			return cm, key, nil
		}
	}
	return nil, "", fmt.Errorf("nothing is mounted at %s", mountDir)
}

// checkWorkloads checks every container of canarylab's image and every
// Locust master against the contract.
func checkWorkloads(t *tree, dir, repo string, p *problems) {
	for _, o := range t.Objs[dir] {
		tpl, ok := podTemplate(o)
		if !ok {
			continue
		}
		for _, c := range tpl.Spec.Containers {
			switch {
			case strings.HasPrefix(c.Image, "canarylab/canarylab:") || strings.Contains(c.Image, "/canarylab:") || c.Name == "mock" || c.Name == "worker":
				if c.Image != canarylabImage {
					p.add(o, "container %s: image %s, want %s (the e2e harness recognises canarylab's pods by it)", c.Name, c.Image, canarylabImage)
				}
				if len(c.Command) > 0 {
					p.add(o, "container %s: command %v replaces the image's entrypoint /canarylab", c.Name, c.Command)
				}
				switch {
				case reflect.DeepEqual(c.Args, []string{"mock"}):
					checkMock(t, dir, o, tpl, c, p)
				case reflect.DeepEqual(c.Args, []string{"load"}):
					checkWorker(t, dir, o, tpl, c, p)
				default:
					p.add(o, "container %s: args %q, want [mock] or [load] (configuration goes in the environment)", c.Name, c.Args)
				}
			case strings.Contains(c.Image, "locust"):
				checkLocustMaster(t, dir, repo, o, tpl, c, p)
			}
		}
	}
}

func checkMock(t *tree, dir string, o object, tpl *corev1.PodTemplateSpec, c corev1.Container, p *problems) {
	if c.Name != "mock" {
		p.add(o, "container %s runs canarylab mock: name it mock", c.Name)
	}
	vars := env(c, o, p)
	checkVarNames(o, c, vars, "CANARYLAB_MOCK_", mockVars, p)
	want := map[string]string{"CANARYLAB_MOCK_LISTEN": ":" + strconv.Itoa(mockPort), "CANARYLAB_MOCK_ADMIN_LISTEN": ":" + strconv.Itoa(adminPort)}
	for k, v := range want {
		if vars[k] != v {
			p.add(o, "container mock: %s=%q, want %q", k, vars[k], v)
		}
	}
	if vars["CANARYLAB_MOCK_VERSION_LABEL"] == "" {
		p.add(o, "container mock: CANARYLAB_MOCK_VERSION_LABEL is not set (the version of every metric)")
	}
	if _, err := mockConfig(t, dir, o, tpl, c, vars); err != nil {
		p.add(o, "container mock: %v", err)
	}
	for name, port := range map[string]int32{"http": mockPort, "admin": adminPort} {
		if n, err := containerPort(c, intstr.FromString(name)); err != nil || n != port {
			p.add(o, "container mock: port %s must be %d", name, port)
		}
	}
	if name := o.Name; tpl.Labels["app"] != name {
		p.add(o, "pod label app=%q, want %q", tpl.Labels["app"], name)
	}
	for k, v := range map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": strconv.Itoa(adminPort)} {
		if tpl.Annotations[k] != v {
			p.add(o, "pod annotation %s=%q, want %q (Prometheus scrapes the mock's metrics on its admin port)", k, tpl.Annotations[k], v)
		}
	}
	for _, pr := range []struct {
		kind  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			p.add(o, "container mock: no HTTP %s probe", pr.kind)
			continue
		}
		if n, err := containerPort(c, pr.probe.HTTPGet.Port); err != nil || n != adminPort || pr.probe.HTTPGet.Path != pr.path {
			p.add(o, "container mock: %s probe GET :%s%s, want GET :%d%s", pr.kind, pr.probe.HTTPGet.Port.String(), pr.probe.HTTPGet.Path, adminPort, pr.path)
		}
	}
}

// mockConfig returns the config a mock container runs with: its
// ConfigMap's config.yaml, with the profile variables laid over it, as
// `canarylab mock` does.
func mockConfig(t *tree, dir string, o object, tpl *corev1.PodTemplateSpec, c corev1.Container, vars map[string]string) (mockserver.Config, error) {
	var cfg mockserver.Config
	path, hasFile := vars["CANARYLAB_MOCK_CONFIG"]
	if hasFile {
		if path != mockConfigPath {
			return cfg, fmt.Errorf("CANARYLAB_MOCK_CONFIG=%q, want %s", path, mockConfigPath)
		}
		cm, key, err := mountedConfigMap(t, dir, o, tpl, c, mockConfigDir, "config.yaml")
		if err != nil {
			return cfg, err
		}
		if cfg, err = mockserver.ParseConfig([]byte(cm.Data[key])); err != nil {
			return cfg, fmt.Errorf("ConfigMap %s, %s: %w", cm.Name, key, err)
		}
	}
	profile := false
	if v, ok := vars["CANARYLAB_MOCK_LATENCY"]; ok && v != "none" {
		l, err := behavior.ParseLatency(v)
		if err != nil {
			return cfg, fmt.Errorf("CANARYLAB_MOCK_LATENCY: %w", err)
		}
		cfg.Profile.Latency, profile = &l, true
	}
	if v, ok := vars["CANARYLAB_MOCK_LATENCY_CAP"]; ok {
		if _, err := behavior.ParseDuration(v); err != nil {
			return cfg, fmt.Errorf("CANARYLAB_MOCK_LATENCY_CAP: %w", err)
		}
	}
	if v, ok := vars["CANARYLAB_MOCK_ERRORS"]; ok && v != "none" {
		e, err := behavior.ParseErrors(v)
		if err != nil {
			return cfg, fmt.Errorf("CANARYLAB_MOCK_ERRORS: %w", err)
		}
		cfg.Profile.Errors, profile = &e, true
	}
	if v, ok := vars["CANARYLAB_MOCK_FAULTS"]; ok && v != "none" {
		f, err := behavior.ParseFaults(v)
		if err != nil {
			return cfg, fmt.Errorf("CANARYLAB_MOCK_FAULTS: %w", err)
		}
		cfg.Profile.Faults, profile = &f, true
	}
	if !hasFile && !profile {
		return cfg, errors.New("no profile: set CANARYLAB_MOCK_CONFIG (a ConfigMap's config.yaml) or CANARYLAB_MOCK_LATENCY/_ERRORS/_FAULTS")
	}
	return cfg, cfg.Validate()
}

func checkVarNames(o object, c corev1.Container, vars map[string]string, prefix string, known []string, p *problems) {
	for name := range vars {
		flag, ok := strings.CutPrefix(name, prefix)
		if ok && !slices.Contains(known, flag) {
			p.add(o, "container %s: %s is not a variable canarylab reads here (a typo is silently ignored)", c.Name, name)
		}
	}
}

func checkWorker(t *tree, dir string, o object, tpl *corev1.PodTemplateSpec, c corev1.Container, p *problems) {
	if c.Name != "worker" {
		p.add(o, "container %s runs canarylab load: name it worker", c.Name)
	}
	vars := env(c, o, p)
	checkVarNames(o, c, vars, "CANARYLAB_LOAD_", workerVars, p)

	master := vars["CANARYLAB_LOAD_MASTER"]
	host, port, err := net.SplitHostPort(master)
	switch {
	case err != nil:
		p.add(o, "container worker: CANARYLAB_LOAD_MASTER=%q is not host:port", master)
	case port != strconv.Itoa(masterPort):
		p.add(o, "container worker: CANARYLAB_LOAD_MASTER=%q, want the master's port %d", master, masterPort)
	default:
		if svc, ns, ok := serviceHost(host); !ok || svc != locustMasterService || ns != o.Namespace {
			p.add(o, "container worker: CANARYLAB_LOAD_MASTER=%q, want %s.%s.svc.cluster.local:%d", master, locustMasterService, o.Namespace, masterPort)
		} else if _, _, ok := find[*corev1.Service](t, dir, ns, svc); !ok {
			p.add(o, "container worker: Service %s is not in the kustomization", svc)
		}
	}

	if vars["CANARYLAB_LOAD_PLAN"] != loadPlanPath {
		p.add(o, "container worker: CANARYLAB_LOAD_PLAN=%q, want %s", vars["CANARYLAB_LOAD_PLAN"], loadPlanPath)
	} else if cm, key, err := mountedConfigMap(t, dir, o, tpl, c, loadPlanDir, "plan.yaml"); err != nil {
		p.add(o, "container worker: %v", err)
	} else if _, err := plan.Parse([]byte(cm.Data[key])); err != nil {
		p.add(o, "ConfigMap %s, %s: %v", cm.Name, key, err)
	}

	host = vars["CANARYLAB_LOAD_HOST"]
	if _, _, err := resolveURL(t, host); err != nil {
		p.add(o, "container worker: CANARYLAB_LOAD_HOST: %v", err)
	} else if u, _ := url.Parse(host); !plan.IsClusterService(u.Hostname()) {
		// The rule `canarylab load` applies (plan.CheckHost) in a pod.
		p.add(o, "container worker: CANARYLAB_LOAD_HOST=%q: canarylab load refuses it; from a pod it loads only <service>.<namespace>.svc.cluster.local", host)
	}
}

// serviceHost splits a service's name inside the cluster: name.namespace,
// name.namespace.svc or name.namespace.svc.cluster.local.
func serviceHost(host string) (name, namespace string, ok bool) {
	h := strings.TrimSuffix(strings.TrimSuffix(host, ".cluster.local"), ".svc")
	name, namespace, ok = strings.Cut(h, ".")
	return name, namespace, ok && name != "" && namespace != "" && !strings.Contains(namespace, ".")
}

// resolveURL finds the Service, anywhere in the tree, that an http URL
// inside the cluster names, and checks it has the URL's port.
func resolveURL(t *tree, raw string) (*corev1.Service, object, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Port() == "" {
		return nil, object{}, fmt.Errorf("%q must be http://<service>.<namespace>.svc.cluster.local:<port>", raw)
	}
	name, ns, ok := serviceHost(u.Hostname())
	if !ok {
		return nil, object{}, fmt.Errorf("%q does not name a service of the cluster", raw)
	}
	svc, so, ok := find[*corev1.Service](t, "", ns, name)
	if !ok {
		return nil, object{}, fmt.Errorf("%q: no Service %s/%s in manifests/", raw, ns, name)
	}
	port, _ := strconv.Atoi(u.Port())
	if !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool { return int(sp.Port) == port }) {
		return nil, object{}, fmt.Errorf("%q: Service %s/%s has no port %d", raw, ns, name, port)
	}
	return svc, so, nil
}

// flagValue returns the value of a command-line flag (--f v, --f=v, -f v).
func flagValue(args []string, names ...string) (string, bool) {
	for i, a := range args {
		for _, n := range names {
			if a == n && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, n+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

func checkLocustMaster(t *tree, dir, repo string, o object, tpl *corev1.PodTemplateSpec, c corev1.Container, p *problems) {
	if c.Image != locustImage {
		p.add(o, "container %s: image %s, want %s (the master the workers speak Locust 2's protocol with)", c.Name, c.Image, locustImage)
	}
	if !slices.Contains(c.Args, "--master") {
		p.add(o, "container %s: not started with --master", c.Name)
	}
	if f, _ := flagValue(c.Args, "-f", "--locustfile"); f != locustfilePath {
		p.add(o, "container %s: locustfile %q, want -f %s", c.Name, f, locustfilePath)
	}
	cm, key, err := mountedConfigMap(t, dir, o, tpl, c, locustfileDir, "locustfile.py")
	if err != nil {
		p.add(o, "container %s: %v", c.Name, err)
		return
	}
	// The locustfile and the plan share one ConfigMap, which the workers
	// mount: the classes the master hands out are the plan's.
	pl, err := plan.Parse([]byte(cm.Data["plan.yaml"]))
	if err != nil {
		p.add(o, "ConfigMap %s, plan.yaml: %v", cm.Name, err)
		return
	}
	if got, want := cm.Data[key], locust.Locustfile(pl); got != want {
		p.add(o, "ConfigMap %s: %s is not the locustfile of its plan.yaml: run make manifests-vendor", cm.Name, key)
	}
	if src, ok := Plans["manifests/"+dir]; ok {
		data, err := os.ReadFile(filepath.Join(repo, filepath.FromSlash(src)))
		if err != nil {
			p.add(o, "%v", err)
		} else if want, err := plan.Parse(data); err != nil {
			p.add(o, "%s: %v", src, err)
		} else if !reflect.DeepEqual(pl, want) {
			p.add(o, "ConfigMap %s: plan.yaml is not %s: run make manifests-vendor", cm.Name, src)
		}
	}

	// The workers beside the master: as many as it expects, on its plan.
	workers := int32(0)
	each(t, dir, func(d *appsv1.Deployment, wo object) {
		for _, wc := range d.Spec.Template.Spec.Containers {
			if !reflect.DeepEqual(wc.Args, []string{"load"}) {
				continue
			}
			if d.Spec.Replicas != nil {
				workers += *d.Spec.Replicas
			} else {
				workers++
			}
			if wcm, _, err := mountedConfigMap(t, dir, wo, &d.Spec.Template, wc, loadPlanDir, "plan.yaml"); err == nil && wcm.Name != cm.Name {
				p.add(wo, "the workers' plan is in ConfigMap %s, the master's locustfile in %s: they must be one", wcm.Name, cm.Name)
			}
		}
	})
	if v, ok := flagValue(c.Args, "--expect-workers"); ok {
		if n, err := strconv.Atoi(v); err != nil || int32(n) > workers {
			p.add(o, "container %s: --expect-workers %s, but the kustomization runs %d workers: the test would never start", c.Name, v, workers)
		}
	}
	svc, so, ok := find[*corev1.Service](t, dir, o.Namespace, locustMasterService)
	if !ok {
		p.add(o, "no Service %s in the kustomization", locustMasterService)
		return
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(tpl.Labels)) {
		p.add(so, "does not select the master's pods")
	}
	for _, port := range []int32{masterPort, webPort} {
		i := slices.IndexFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Port == port })
		if i < 0 {
			p.add(so, "has no port %d", port)
			continue
		}
		if n, err := podPort(tpl, svc.Spec.Ports[i].TargetPort, port); err != nil || n != port {
			p.add(so, "port %d does not reach the master's port %d", port, port)
		}
	}
}

// isCanaryApex tells whether a Service is the apex service of a Canary.
func isCanaryApex(t *tree, svc object) bool {
	apex := false
	each(t, "", func(c *flaggerv1beta1.Canary, co object) {
		name, _, _ := c.GetServiceNames()
		apex = apex || (co.Namespace == svc.Namespace && name == svc.Name)
	})
	return apex
}

// checkFlagger checks the Canaries, the MetricTemplates and Flagger's
// metrics server against each other and against what Flagger v1.36.1 does.
func checkFlagger(t *tree, p *problems) {
	each(t, "", func(c *flaggerv1beta1.Canary, o object) { checkCanary(t, c, o, p) })
	each(t, "", func(mt *flaggerv1beta1.MetricTemplate, o object) {
		if mt.Spec.Provider.Type == "prometheus" {
			if _, _, err := resolveURL(t, mt.Spec.Provider.Address); err != nil {
				p.add(o, "provider address: %v", err)
			}
		}
	})
	each(t, "", func(d *appsv1.Deployment, o object) {
		if vendoredDir(o.Dir) {
			return // Flagger's own base, with Flagger's defaults
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.Name != "flagger" {
				continue
			}
			if v, ok := flagValue(c.Args, "-metrics-server"); !ok {
				p.add(o, "flagger has no -metrics-server")
			} else if _, _, err := resolveURL(t, v); err != nil {
				p.add(o, "-metrics-server: %v", err)
			}
			if v, _ := flagValue(c.Args, "-mesh-provider"); v != "istio" {
				p.add(o, "flagger: -mesh-provider=%q, want istio", v)
			}
		}
	})
}

// vendoredDir tells a kustomization copied whole from a module (its
// kustomization file is generated): what it holds is upstream's choice.
func vendoredDir(dir string) bool {
	for _, c := range copies {
		if isKustomization(path.Base(c.dst)) && path.Dir(c.dst) == "manifests/"+dir {
			return true
		}
	}
	return false
}

func checkCanary(t *tree, c *flaggerv1beta1.Canary, o object, p *problems) {
	ref := c.Spec.TargetRef
	if ref.Kind != "Deployment" {
		p.add(o, "targetRef kind %s: only Deployments here", ref.Kind)
		return
	}
	d, do, ok := find[*appsv1.Deployment](t, o.Dir, o.Namespace, ref.Name)
	if !ok {
		p.add(o, "targetRef: Deployment %s/%s is not in the kustomization", o.Namespace, ref.Name)
		return
	}
	// Flagger's selector label is the first of -selector-labels that the
	// target selects on; the primary's pods get <value>-primary.
	var key string
	for _, l := range strings.Split(flaggerSelectorLabels, ",") {
		if _, ok := d.Spec.Selector.MatchLabels[l]; ok {
			key = l
			break
		}
	}
	if key == "" {
		p.add(do, "selects on none of %s: Flagger cannot make its primary", flaggerSelectorLabels)
		return
	}
	if c.Spec.Service.TargetPort.Type == intstr.String {
		if _, err := podPort(&d.Spec.Template, c.Spec.Service.TargetPort, c.Spec.Service.Port); err != nil {
			p.add(o, "service.targetPort: %v", err)
		}
	}
	// An apex Service in the manifests must be the one Flagger writes, or
	// Flagger rewrites it after every apply.
	apex, _, _ := c.GetServiceNames()
	if svc, so, ok := find[*corev1.Service](t, o.Dir, o.Namespace, apex); ok {
		portName := c.Spec.Service.PortName
		if portName == "" {
			portName = "http"
		}
		target := intstr.FromInt32(c.Spec.Service.Port)
		if c.Spec.Service.TargetPort.String() != "0" {
			target = c.Spec.Service.TargetPort
		}
		wantPorts := []corev1.ServicePort{{Name: portName, Protocol: corev1.ProtocolTCP, Port: c.Spec.Service.Port, TargetPort: target}}
		wantSelector := map[string]string{key: d.Spec.Selector.MatchLabels[key] + "-primary"}
		if !reflect.DeepEqual(svc.Spec.Ports, wantPorts) || !reflect.DeepEqual(svc.Spec.Selector, wantSelector) ||
			(svc.Spec.Type != "" && svc.Spec.Type != corev1.ServiceTypeClusterIP) {
			p.add(so, "is the Canary's apex service but not as Flagger writes it (selector %v, ports %+v): Flagger would rewrite it", wantSelector, wantPorts)
		}
	}

	a := c.GetAnalysis()
	if a == nil {
		p.add(o, "no analysis")
		return
	}
	if iv, err := time.ParseDuration(a.Interval); err != nil || iv < 10*time.Second {
		p.add(o, "analysis.interval %q: Flagger reads at least 10s", a.Interval)
	}
	for _, m := range a.Metrics {
		switch {
		case m.Name == "request-success-rate" || m.Name == "request-duration":
		case m.TemplateRef != nil:
			ns := m.TemplateRef.Namespace
			if ns == "" {
				ns = o.Namespace
			}
			mt, mo, ok := find[*flaggerv1beta1.MetricTemplate](t, "", ns, m.TemplateRef.Name)
			if !ok {
				p.add(o, "metric %q: MetricTemplate %s/%s is not in manifests/", m.Name, ns, m.TemplateRef.Name)
				break
			}
			// Flagger gives a templateRef metric no default interval.
			if m.Interval == "" {
				p.add(o, "metric %q: no interval: {{ interval }} would render empty", m.Name)
			}
			checkQuery(t, mt, mo, c, o, m, p)
		default:
			// Flagger v1.36.1 fails every inline query not named like a
			// builtin check (reference/flagger-1.36-differences.md).
			p.add(o, "metric %q: neither a builtin check nor a templateRef", m.Name)
		}
		if m.ThresholdRange == nil || (m.ThresholdRange.Min == nil && m.ThresholdRange.Max == nil) {
			p.add(o, "metric %q: no thresholdRange (the deprecated threshold 0 fails any value above 0)", m.Name)
		}
	}
}

// checkQuery renders a MetricTemplate's query as Flagger does for a
// Canary's metric and parses it as PromQL; a pod matcher must select the
// canary's pods and not the primary's.
func checkQuery(t *tree, mt *flaggerv1beta1.MetricTemplate, mo object, c *flaggerv1beta1.Canary, co object, m flaggerv1beta1.CanaryMetric, p *problems) {
	service := c.Spec.TargetRef.Name
	if c.Spec.Service.Name != "" {
		service = c.Spec.Service.Name
	}
	model := flaggerv1beta1.MetricTemplateModel{
		Name: c.Name, Namespace: c.Namespace, Target: c.Spec.TargetRef.Name, Service: service,
		Ingress: c.Spec.TargetRef.Name, Route: c.Spec.TargetRef.Name, Interval: m.Interval, Variables: m.TemplateVariables,
	}
	tpl, err := template.New("query").Option("missingkey=error").Funcs(model.TemplateFunctions()).Parse(mt.Spec.Query)
	if err != nil {
		p.add(mo, "query: %v", err)
		return
	}
	var q bytes.Buffer
	if err := tpl.Execute(&q, nil); err != nil {
		p.add(mo, "query for %s: %v", co, err)
		return
	}
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q.String())
	if err != nil {
		p.add(mo, "query for %s is not PromQL: %v", co, err)
		return
	}
	canaryPod := c.Spec.TargetRef.Name + "-5d9c7b6f4-x7k2p"
	primaryPod := c.Spec.TargetRef.Name + "-primary-5d9c7b6f4-x7k2p"
	for _, sel := range parser.ExtractSelectors(expr) {
		for _, lm := range sel {
			if lm.Name == "pod" && (!lm.Matches(canaryPod) || lm.Matches(primaryPod)) {
				p.add(mo, "query: %s must match the canary's pods (%s) and not the primary's (%s)", lm, canaryPod, primaryPod)
			}
			if lm.Name == "namespace" && !lm.Matches(c.Namespace) {
				p.add(mo, "query: %s does not match the Canary's namespace", lm)
			}
		}
	}
}

// checkCustomResources validates every custom object against the
// openAPIV3Schema of its CRD in the tree, as the API server would.
func checkCustomResources(t *tree, p *problems) {
	for _, o := range t.all() {
		if o.GVK.Group == "" || !strings.Contains(o.GVK.Group, ".") || strings.HasSuffix(o.GVK.Group, ".k8s.io") {
			continue // built-in groups
		}
		crd := findCRD(t, o.GVK.Group, o.GVK.Kind)
		if crd == nil {
			p.add(o, "no CRD in manifests/ defines %s", o.GVK.GroupKind())
			continue
		}
		i := slices.IndexFunc(crd.Spec.Versions, func(v apiextensionsv1.CustomResourceDefinitionVersion) bool {
			return v.Name == o.GVK.Version && v.Served
		})
		if i < 0 {
			p.add(o, "the CRD %s does not serve %s", crd.Name, o.GVK.Version)
			continue
		}
		v := crd.Spec.Versions[i]
		if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
			continue
		}
		js, err := json.Marshal(v.Schema.OpenAPIV3Schema)
		if err != nil {
			p.add(o, "%v", err)
			continue
		}
		var s spec.Schema
		if err := json.Unmarshal(js, &s); err != nil {
			p.add(o, "the CRD's schema: %v", err)
			continue
		}
		doc, err := yaml.YAMLToJSON(o.Raw)
		if err != nil {
			p.add(o, "%v", err)
			continue
		}
		var data any
		if err := kjsonutil.Unmarshal(doc, &data); err != nil {
			p.add(o, "%v", err)
			continue
		}
		res := validate.NewSchemaValidator(&s, nil, "", strfmt.Default).Validate(data)
		for _, e := range res.Errors {
			p.add(o, "against CRD %s: %v", crd.Name, e)
		}
	}
}

// checkPrometheus loads every Prometheus config with the Prometheus module
// go.mod pins (the image's release), and checks it scrapes what the
// analysis queries: Envoy's telemetry and the annotated pods, labelled by
// namespace and pod.
func checkPrometheus(t *tree, p *problems) {
	each(t, "", func(cm *corev1.ConfigMap, o object) {
		text, ok := cm.Data["prometheus.yml"]
		if !ok {
			return
		}
		cfg, err := promconfig.Load(text, nil)
		if err != nil {
			p.add(o, "prometheus.yml: %v", err)
			return
		}
		var envoy, pods bool
		for _, sc := range cfg.ScrapeConfigs {
			if sc.MetricsPath == "/stats/prometheus" {
				envoy = true
			}
			var keep bool
			targets := map[string]string{}
			for _, rc := range sc.RelabelConfigs {
				src := fmt.Sprint(rc.SourceLabels)
				if string(rc.Action) == "keep" && strings.Contains(src, "__meta_kubernetes_pod_annotation_prometheus_io_scrape") {
					keep = true
				}
				if rc.TargetLabel != "" {
					targets[rc.TargetLabel] = src
				}
			}
			if keep {
				pods = true
				if !strings.Contains(targets["namespace"], "__meta_kubernetes_namespace") || !strings.Contains(targets["pod"], "__meta_kubernetes_pod_name") {
					p.add(o, "job %s: the namespace and pod labels must come from the pod's metadata (the MetricTemplates select on them)", sc.JobName)
				}
			}
		}
		if !envoy {
			p.add(o, "prometheus.yml: no job scrapes Envoy's /stats/prometheus (Flagger's builtin checks)")
		}
		if !pods {
			p.add(o, "prometheus.yml: no job keeps the pods annotated prometheus.io/scrape")
		}
	})
}

// mockAnswers starts a mock server with cfg on loopback, sends it every
// request of every plan (without its query, which only shapes faults), and
// returns the names of the metrics it then exposes.
func mockAnswers(ctx context.Context, cfg mockserver.Config, plans map[string]plan.Plan) (map[string]bool, error) {
	srv, err := mockserver.New(cfg, mockserver.Options{VersionLabel: "v1"})
	if err != nil {
		return nil, err
	}
	run, err := mockserver.Start(srv, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer func() { _ = run.Shutdown(ctx) }()
	client := &http.Client{Timeout: 10 * time.Second}
	var errs []error
	// One request whatever the plans, so the per-request metrics exist.
	if resp, err := client.Get(run.URL() + "/"); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for name, pl := range plans {
		for _, u := range pl.Users {
			for _, task := range u.Tasks {
				r := task.Request
				p, _, _ := strings.Cut(r.Path, "?")
				req, err := http.NewRequestWithContext(ctx, r.HTTPMethod(), run.URL()+p, strings.NewReader(r.Body))
				if err != nil {
					return nil, err
				}
				for k, v := range r.Headers {
					req.Header.Set(k, v)
				}
				resp, err := client.Do(req)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %s %s: %w", name, r.HTTPMethod(), p, err))
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if !r.Succeeded(resp.StatusCode) {
					errs = append(errs, fmt.Errorf("%s: %s %s: the mock answers %d, which the plan counts as a failure", name, r.HTTPMethod(), p, resp.StatusCode))
				}
			}
		}
	}
	resp, err := client.Get(run.AdminURL() + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names, errors.Join(errs...)
}

// checkTraffic follows each worker's host to the mock server behind it (a
// Canary's apex service leads to the Canary's target) and runs that mock's
// config: every request of the plan must be answered as the plan expects
// when nothing is injected, and every canarylab_mock_* metric a
// MetricTemplate reads must be one the mock exposes.
func checkTraffic(ctx context.Context, t *tree) error {
	var p problems
	type target struct {
		o   object
		cfg mockserver.Config
		ok  bool // the config is valid (else checkTree reports it)
	}
	mocks := map[string]*target{}
	plans := map[string]map[string]plan.Plan{}
	mockOf := func(d *appsv1.Deployment, o object) {
		for _, c := range d.Spec.Template.Spec.Containers {
			if reflect.DeepEqual(c.Args, []string{"mock"}) {
				var discard problems
				cfg, err := mockConfig(t, o.Dir, o, &d.Spec.Template, c, env(c, o, &discard))
				mocks[o.String()] = &target{o, cfg, err == nil}
			}
		}
	}
	each(t, "", mockOf)
	each(t, "", func(d *appsv1.Deployment, o object) {
		for _, c := range d.Spec.Template.Spec.Containers {
			if !reflect.DeepEqual(c.Args, []string{"load"}) {
				continue
			}
			var discard problems
			vars := env(c, o, &discard)
			svc, so, err := resolveURL(t, vars["CANARYLAB_LOAD_HOST"])
			if err != nil {
				continue // reported by checkTree
			}
			cm, key, err := mountedConfigMap(t, o.Dir, o, &d.Spec.Template, c, loadPlanDir, "plan.yaml")
			if err != nil {
				continue
			}
			pl, err := plan.Parse([]byte(cm.Data[key]))
			if err != nil {
				continue
			}
			selector := svc.Spec.Selector
			each(t, so.Dir, func(cn *flaggerv1beta1.Canary, co object) {
				if name, _, _ := cn.GetServiceNames(); name == svc.Name && co.Namespace == so.Namespace {
					if td, _, ok := find[*appsv1.Deployment](t, co.Dir, co.Namespace, cn.Spec.TargetRef.Name); ok {
						selector = td.Spec.Selector.MatchLabels
					}
				}
			})
			found := false
			each(t, so.Dir, func(md *appsv1.Deployment, mo object) {
				if mo.Namespace == so.Namespace && labels.SelectorFromSet(selector).Matches(labels.Set(md.Spec.Template.Labels)) {
					if _, ok := mocks[mo.String()]; ok {
						found = true
						if plans[mo.String()] == nil {
							plans[mo.String()] = map[string]plan.Plan{}
						}
						plans[mo.String()][o.Dir] = pl
					}
				}
			})
			if !found {
				p.add(o, "CANARYLAB_LOAD_HOST: no canarylab mock server behind Service %s", so)
			}
		}
	})
	// The canarylab_mock_* metrics the MetricTemplates read.
	wanted := map[string][]object{}
	each(t, "", func(mt *flaggerv1beta1.MetricTemplate, o object) {
		for _, name := range regexpMockMetric.FindAllString(mt.Spec.Query, -1) {
			wanted[name] = append(wanted[name], o)
		}
	})
	exposed := map[string]bool{}
	for _, key := range sortedKeys(mocks) {
		m := mocks[key]
		if !m.ok {
			continue
		}
		names, err := mockAnswers(ctx, m.cfg, plans[key])
		if err != nil {
			p.add(m.o, "%v", err)
		}
		for n := range names {
			exposed[n] = true
		}
	}
	if len(exposed) > 0 {
		for _, name := range sortedKeys(wanted) {
			if !exposed[name] {
				for _, o := range wanted[name] {
					p.add(o, "query reads %s, which canarylab mock does not expose", name)
				}
			}
		}
	}
	return p.err()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

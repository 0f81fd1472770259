// Package kube is the engine that runs a scenario on a real Kubernetes
// cluster with the real Flagger: it renders the scenario into manifests,
// applies them with server-side apply, deploys the canary's new revision,
// runs the load in the cluster (a Locust master and canarylab workers),
// watches the Canary, its events and the VirtualService, and removes what
// it created when the run ends. Flagger decides; canarylab only observes.
package kube

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/canarylab/canarylab/loadgen/locust"
	"github.com/canarylab/canarylab/loadgen/plan"
	"github.com/canarylab/canarylab/mockserver"
	"github.com/canarylab/canarylab/orchestrator/scenario"
)

// Images and ports of the rendered workloads (the contract manifests/ and
// the e2e harness follow).
const (
	DefaultImage       = "canarylab/canarylab:dev"
	DefaultLocustImage = "locustio/locust:2.12.1"
	MockPort           = 8080
	AdminPort          = 9090
	ServicePort        = 80
	MasterPort         = 5557
	MasterWebPort      = 8089
	// FieldManager owns what canarylab applies (server-side apply).
	FieldManager = "canarylab"
	// ManagedBy labels every object canarylab creates, for cleanup.
	ManagedBy = "app.kubernetes.io/managed-by"
)

// RenderOptions configure Render.
type RenderOptions struct {
	// Image is the canarylab image (DefaultImage); LocustImage the Locust
	// master's (DefaultLocustImage).
	Image       string
	LocustImage string
	// Namespace overrides the scenario's.
	Namespace string
	// MetricsServer is the Prometheus the MetricTemplates point at
	// (default http://prometheus.istio-system:9090, Istio's addon).
	MetricsServer string
	// Users is the Locust users the load runs with, for a rate scenario
	// (default: one per 5 requests a second, at least 2).
	Users int
}

func (o *RenderOptions) defaults() {
	if o.Image == "" {
		o.Image = DefaultImage
	}
	if o.LocustImage == "" {
		o.LocustImage = DefaultLocustImage
	}
	if o.MetricsServer == "" {
		o.MetricsServer = "http://prometheus.istio-system:9090"
	}
}

// Rendered is a scenario as Kubernetes objects, in apply order.
type Rendered struct {
	Namespace string
	Name      string
	// App is what runs before the new revision: namespace, the mock
	// config, the Deployment (stable), the MetricTemplates, the Canary.
	App []*unstructured.Unstructured
	// Revision is the Deployment with the canary's pod template.
	Revision *unstructured.Unstructured
	// Load is the Locust master and workers (empty: no load).
	Load []*unstructured.Unstructured
}

// All returns every object, the revision last.
func (r *Rendered) All() []*unstructured.Unstructured {
	out := append(append([]*unstructured.Unstructured{}, r.App...), r.Load...)
	return append(out, r.Revision)
}

// YAML writes objects as a multi-document YAML stream.
func YAML(objs []*unstructured.Unstructured) ([]byte, error) {
	var b bytes.Buffer
	for i, o := range objs {
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", o.GetKind(), o.GetName(), err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(data)
	}
	return b.Bytes(), nil
}

// Render turns a scenario into the objects a cluster runs it with.
func Render(s *scenario.Scenario, opts RenderOptions) (*Rendered, error) {
	opts.defaults()
	ns, name := s.Namespace(), s.Name()
	if opts.Namespace != "" {
		ns = opts.Namespace
	}
	r := &Rendered{Namespace: ns, Name: name}
	labels := map[string]string{ManagedBy: FieldManager, "canarylab.dev/scenario": s.Metadata.Name}
	meta := func(n string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: n, Namespace: ns, Labels: labels}
	}
	add := func(dst *[]*unstructured.Unstructured, obj runtime.Object, apiVersion, kind string) error {
		u, err := toUnstructured(obj, apiVersion, kind)
		if err != nil {
			return err
		}
		*dst = append(*dst, u)
		return nil
	}

	// The mock server's two configs: the stable and the canary profile.
	stable, err := yaml.Marshal(mockserver.Config{Profile: s.Stable})
	if err != nil {
		return nil, fmt.Errorf("render the stable profile: %w", err)
	}
	canary, err := yaml.Marshal(mockserver.Config{Profile: s.Canary})
	if err != nil {
		return nil, fmt.Errorf("render the canary profile: %w", err)
	}
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{ManagedBy: FieldManager, "istio-injection": "enabled"}}}
	if err := add(&r.App, nsObj, "v1", "Namespace"); err != nil {
		return nil, err
	}
	cm := &corev1.ConfigMap{ObjectMeta: meta(name + "-mock"), Data: map[string]string{"stable.yaml": string(stable), "canary.yaml": string(canary)}}
	if err := add(&r.App, cm, "v1", "ConfigMap"); err != nil {
		return nil, err
	}
	if err := add(&r.App, mockDeployment(meta(name), name, opts.Image, "stable"), "apps/v1", "Deployment"); err != nil {
		return nil, err
	}
	for _, t := range s.MetricTemplates {
		t := t
		t.APIVersion, t.Kind = "flagger.app/v1beta1", "MetricTemplate"
		if t.Metadata.Namespace == "" {
			t.Metadata.Namespace = ns
		}
		t.Metadata.Labels = mergeLabels(t.Metadata.Labels, labels)
		if t.Spec.Provider.Address == "" {
			t.Spec.Provider.Address = opts.MetricsServer
		}
		u, err := jsonToUnstructured(t)
		if err != nil {
			return nil, fmt.Errorf("render MetricTemplate %s: %w", t.Metadata.Name, err)
		}
		r.App = append(r.App, u)
	}
	canaryObj, err := jsonToUnstructured(map[string]any{
		"apiVersion": "flagger.app/v1beta1", "kind": "Canary",
		"metadata": map[string]any{"name": name, "namespace": ns, "labels": labels},
		"spec": map[string]any{
			"provider":                "istio",
			"targetRef":               map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
			"progressDeadlineSeconds": 600,
			"service":                 map[string]any{"port": ServicePort, "targetPort": MockPort, "portName": "http"},
			"analysis":                s.Analysis,
			"skipAnalysis":            s.SkipAnalysis,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("render the Canary: %w", err)
	}
	r.App = append(r.App, canaryObj)

	rev, err := toUnstructured(mockDeployment(meta(name), name, opts.Image, "canary"), "apps/v1", "Deployment")
	if err != nil {
		return nil, err
	}
	r.Revision = rev

	if s.Load.Rate > 0 || s.Load.Users > 0 {
		if err := renderLoad(r, s, opts, meta, labels, add); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// mockDeployment is the Deployment of the mock server playing version
// (stable or canary): the profile is the ConfigMap's <version>.yaml.
//
// It sets no replicas (one by default): Flagger scales the target to zero
// and back, and applying the revision must not scale it up behind Flagger.
// The annotations are manifests/'s, for Istio: the mock server's own
// metrics are scraped on the admin port, which the sidecar leaves alone.
func mockDeployment(meta metav1.ObjectMeta, name, image, version string) *appsv1.Deployment {
	podLabels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: podLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: map[string]string{
					"prometheus.io/scrape": "true", "prometheus.io/port": strconv.Itoa(AdminPort),
					"prometheus.istio.io/merge-metrics":            "false",
					"traffic.sidecar.istio.io/excludeInboundPorts": strconv.Itoa(AdminPort),
				}},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:  "mock",
						Image: image,
						Args:  []string{"mock"},
						Env: []corev1.EnvVar{
							{Name: "CANARYLAB_MOCK_LISTEN", Value: ":" + strconv.Itoa(MockPort)},
							{Name: "CANARYLAB_MOCK_ADMIN_LISTEN", Value: ":" + strconv.Itoa(AdminPort)},
							{Name: "CANARYLAB_MOCK_VERSION_LABEL", Value: version},
							{Name: "CANARYLAB_MOCK_CONFIG", Value: "/etc/canarylab/mock/" + version + ".yaml"},
						},
						Ports: []corev1.ContainerPort{
							{Name: "http", ContainerPort: MockPort},
							{Name: "admin", ContainerPort: AdminPort},
						},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(AdminPort)}}},
						LivenessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(AdminPort)}}},
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi"),
						}},
						VolumeMounts: []corev1.VolumeMount{{Name: "mock", MountPath: "/etc/canarylab/mock"}},
					}},
					Volumes: []corev1.Volume{{Name: "mock", VolumeSource: corev1.VolumeSource{
						ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name + "-mock"}},
					}}},
				},
			},
		},
	}
}

// renderLoad adds the Locust master and the canarylab workers that send
// the scenario's load to the canary's apex service.
func renderLoad(r *Rendered, s *scenario.Scenario, opts RenderOptions, meta func(string) metav1.ObjectMeta,
	labels map[string]string, add func(*[]*unstructured.Unstructured, runtime.Object, string, string) error) error {
	p := plan.Default()
	if s.Load.Plan != nil {
		p = *s.Load.Plan
	}
	p.Host = ""
	users := s.Load.Users
	if s.Load.Rate > 0 {
		// An open-model rate becomes users that each keep a constant
		// throughput: Locust masters count users, not arrivals.
		users = opts.Users
		if users <= 0 {
			users = max(2, int(math.Ceil(s.Load.Rate/5)))
		}
		for i := range p.Users {
			p.Users[i].Wait = plan.Wait{Kind: plan.WaitConstantThroughput, Rate: s.Load.Rate / float64(users)}
		}
	}
	planYAML, err := yaml.Marshal(p)
	if err != nil {
		return fmt.Errorf("render the load plan: %w", err)
	}
	master, worker := r.Name+"-locust-master", r.Name+"-locust-worker"
	cm := &corev1.ConfigMap{ObjectMeta: meta(r.Name + "-locust"), Data: map[string]string{
		"locustfile.py": locust.Locustfile(p), "plan.yaml": string(planYAML),
	}}
	if err := add(&r.Load, cm, "v1", "ConfigMap"); err != nil {
		return err
	}
	one := int32(1)
	workers := int32(max(1, (users+49)/50))
	vol := func(mount string) ([]corev1.Volume, []corev1.VolumeMount) {
		return []corev1.Volume{{Name: "locust", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: r.Name + "-locust"}}}}},
			[]corev1.VolumeMount{{Name: "locust", MountPath: mount}}
	}
	mv, mm := vol("/mnt/locust")
	masterLabels := map[string]string{"app": master}
	md := &appsv1.Deployment{ObjectMeta: meta(master), Spec: appsv1.DeploymentSpec{
		Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: masterLabels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: masterLabels}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "master", Image: opts.LocustImage,
				Args: []string{"-f", "/mnt/locust/locustfile.py", "--master", "--headless",
					"--expect-workers", strconv.Itoa(int(workers)), "-u", strconv.Itoa(users), "-r", strconv.Itoa(max(1, users)),
					"--host", ServiceURL(r.Name, r.Namespace)},
				Ports:        []corev1.ContainerPort{{Name: "master", ContainerPort: MasterPort}, {Name: "web", ContainerPort: MasterWebPort}},
				VolumeMounts: mm}},
			Volumes: mv}}}}
	if err := add(&r.Load, md, "apps/v1", "Deployment"); err != nil {
		return err
	}
	svc := &corev1.Service{ObjectMeta: meta(master), Spec: corev1.ServiceSpec{Selector: masterLabels, Ports: []corev1.ServicePort{
		{Name: "master", Port: MasterPort, TargetPort: intstr.FromInt32(MasterPort)},
		{Name: "web", Port: MasterWebPort, TargetPort: intstr.FromInt32(MasterWebPort)},
	}}}
	if err := add(&r.Load, svc, "v1", "Service"); err != nil {
		return err
	}
	wv, wm := vol("/etc/canarylab/load")
	workerLabels := map[string]string{"app": worker}
	wd := &appsv1.Deployment{ObjectMeta: meta(worker), Spec: appsv1.DeploymentSpec{
		Replicas: &workers, Selector: &metav1.LabelSelector{MatchLabels: workerLabels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: workerLabels}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "worker", Image: opts.Image, Args: []string{"load"},
				Env: []corev1.EnvVar{
					{Name: "CANARYLAB_LOAD_MASTER", Value: fmt.Sprintf("%s.%s.svc.cluster.local:%d", master, r.Namespace, MasterPort)},
					{Name: "CANARYLAB_LOAD_PLAN", Value: "/etc/canarylab/load/plan.yaml"},
					{Name: "CANARYLAB_LOAD_HOST", Value: ServiceURL(r.Name, r.Namespace)},
				},
				VolumeMounts: wm}},
			Volumes: wv}}}}
	return add(&r.Load, wd, "apps/v1", "Deployment")
}

// ServiceURL is the URL of the canary's apex service inside the cluster,
// by its full internal name: the only kind of remote host canarylab's
// workers load (plan.CheckHost).
func ServiceURL(name, namespace string) string {
	return fmt.Sprintf("http://%s.%s.svc.cluster.local:%d", name, namespace, ServicePort)
}

func mergeLabels(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// toUnstructured converts a typed object, setting its type meta.
func toUnstructured(obj runtime.Object, apiVersion, kind string) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("convert %s: %w", kind, err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "creationTimestamp")
	// Empty structs of the typed objects say nothing: leave them out.
	for _, f := range [][]string{{"spec"}, {"spec", "strategy"}} {
		if m, ok, _ := unstructured.NestedMap(u.Object, f...); ok && len(m) == 0 {
			unstructured.RemoveNestedField(u.Object, f...)
		}
	}
	return u, nil
}

// jsonToUnstructured converts through JSON (for the CRD types canarylab
// keeps its own mirror of: the Canary's analysis, MetricTemplates).
func jsonToUnstructured(v any) (*unstructured.Unstructured, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	return &unstructured.Unstructured{Object: m}, nil
}

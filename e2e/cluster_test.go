package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/canarylab/canarylab/e2e/cluster"
	"github.com/canarylab/canarylab/e2e/tools"
)

var (
	canaryGVR = schema.GroupVersionResource{Group: "flagger.app", Version: "v1beta1", Resource: "canaries"}
	// Flagger v1.36 reads and writes VirtualServices as v1alpha3.
	virtualServiceGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "virtualservices"}
)

// TestCanarySucceeds is the smoke test of the stack: a Canary without
// metrics goes Initialized, then, on a new revision, through a 50/50 step to
// Succeeded, decided by the real Flagger against the real API server.
func TestCanarySucceeds(t *testing.T) {
	began := time.Now()
	c := cluster.Start(t, cluster.Options{})
	up := time.Since(began)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	kube, dyn := c.Kube(), c.Dynamic()

	const ns = "test"
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	if _, err := kube.AppsV1().Deployments(ns).Create(ctx, podinfo(ns, "1"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	if _, err := dyn.Resource(canaryGVR).Namespace(ns).Create(ctx, canary(ns), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create canary: %v", err)
	}

	obs := observe(ctx, dyn, ns, "podinfo")
	defer obs.stop()

	applied := time.Now()
	if err := obs.waitPhase(ctx, 3*time.Minute, "Initialized"); err != nil {
		t.Fatalf("canary not Initialized: %v (phases %v)", err, obs.phaseList())
	}
	initialized := time.Since(applied)

	// A new revision: only the pod template changes.
	patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"podinfo","env":[{"name":"REVISION","value":"2"}]}]}}}}`)
	changed := time.Now()
	if _, err := kube.AppsV1().Deployments(ns).Patch(ctx, "podinfo", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch deployment: %v", err)
	}
	// A change that lands while the phase still reads Initialized is picked
	// up on the next tick: wait for Progressing before a terminal phase.
	if err := obs.waitPhase(ctx, 2*time.Minute, "Progressing"); err != nil {
		t.Fatalf("canary not Progressing: %v (phases %v)", err, obs.phaseList())
	}
	if err := obs.waitPhase(ctx, 3*time.Minute, "Succeeded", "Failed"); err != nil {
		t.Fatalf("canary did not finish: %v (phases %v)", err, obs.phaseList())
	}
	run := time.Since(changed)

	phases, weights := obs.phaseList(), obs.weightList()
	t.Logf("phases: %v", phases)
	t.Logf("VirtualService weights (primary/canary): %v", weights)
	if last := phases[len(phases)-1]; last != "Succeeded" {
		t.Fatalf("canary ended %s, want Succeeded", last)
	}
	if !inOrder(phases, "Initialized", "Progressing", "Succeeded") ||
		!(slices.Contains(phases, "Promoting") || slices.Contains(phases, "Finalising")) {
		t.Errorf("phases %v: want Initialized, Progressing, Promoting or Finalising, Succeeded in order", phases)
	}
	if !slices.Contains(weights, "50/50") {
		t.Errorf("VirtualService weights %v never showed 50/50", weights)
	}
	if last := weights[len(weights)-1]; last != "100/0" {
		t.Errorf("VirtualService ended at %s, want all traffic on the primary (100/0)", last)
	}
	primary, err := kube.AppsV1().Deployments(ns).Get(ctx, "podinfo-primary", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get primary: %v", err)
	}
	if got := envValue(primary.Spec.Template.Spec.Containers[0].Env, "REVISION"); got != "2" {
		t.Errorf("primary's REVISION = %q after promotion, want 2", got)
	}
	t.Logf("timings: stack up %s, apply → Initialized %s, new revision → Succeeded %s, total %s",
		up.Round(time.Millisecond), initialized.Round(time.Millisecond), run.Round(time.Millisecond),
		time.Since(began).Round(time.Millisecond))
}

// TestStopLeavesNothing checks that Stop ends every process of the stack
// and frees its ports and directory, and (as the stack is there) that
// Prometheus scrapes what SetScrapeTargets names.
func TestStopLeavesNothing(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	promAddr := strings.TrimPrefix(c.PrometheusURL, "http://")
	if err := c.SetScrapeTargets("self", []cluster.Target{{Addr: promAddr, Labels: map[string]string{"role": "harness-check"}}}); err != nil {
		t.Fatalf("set scrape targets: %v", err)
	}
	if err := waitFor(ctx, time.Minute, func() error {
		v, err := promQuery(ctx, c.PrometheusURL, `up{job="self",role="harness-check"}`)
		if err != nil {
			return err
		}
		if v != "1" {
			return fmt.Errorf("up = %q", v)
		}
		return nil
	}); err != nil {
		t.Fatalf("Prometheus did not scrape the file_sd target: %v", err)
	}

	comps := c.Components()
	if len(comps) != 7 {
		t.Fatalf("components %v, want 7", comps)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	assertGone(t, comps, c.Dir)
}

// TestInterruptStopsStack sends SIGINT, as Ctrl-C does, to a test process
// that runs a stack, and checks that it stops the stack before exiting.
func TestInterruptStopsStack(t *testing.T) {
	if _, err := tools.LoadFromEnv(); err != nil {
		// Same rule as Start: without the stack's namespace, skip or fail.
		cluster.Start(t, cluster.Options{})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestInterruptHelperProcess$", "-test.timeout=3m")
	cmd.Env = append(os.Environ(), "CANARYLAB_E2E_INTERRUPT_HELPER=1")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	defer cmd.Process.Kill() // no-op once it has exited

	var ready struct {
		Dir        string
		Components []cluster.Component
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "READY ")
		if !ok {
			t.Logf("helper: %s", sc.Text())
			continue
		}
		if err := json.Unmarshal([]byte(line), &ready); err != nil {
			t.Fatalf("helper's READY line: %v", err)
		}
		break
	}
	if ready.Dir == "" {
		cmd.Wait()
		t.Fatalf("the helper never reported its stack up")
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("SIGINT: %v", err)
	}
	go func() { // drain, so the helper never blocks on a full pipe
		for sc.Scan() {
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 130 {
		t.Errorf("helper exit: %v, want exit status 130 from the interrupt handler", err)
	}
	assertGone(t, ready.Components, ready.Dir)
}

// TestInterruptHelperProcess is not a test on its own: TestInterruptStopsStack
// runs the test binary with only this test and CANARYLAB_E2E_INTERRUPT_HELPER
// set (the pattern of os/exec's TestHelperProcess). It starts a stack,
// reports it, and waits for the signal.
func TestInterruptHelperProcess(t *testing.T) {
	if os.Getenv("CANARYLAB_E2E_INTERRUPT_HELPER") != "1" {
		return
	}
	c := cluster.Start(t, cluster.Options{})
	b, err := json.Marshal(map[string]any{"Dir": c.Dir, "Components": c.Components()})
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	fmt.Printf("READY %s\n", b)
	time.Sleep(2 * time.Minute) // the signal handler exits first
	t.Fatalf("no signal came within 2 minutes")
}

// assertGone checks that no process of comps is left in this network
// namespace (by binary path, so a PID reused by something else does not
// count), that their ports are free, and that dir is gone.
func assertGone(t *testing.T, comps []cluster.Component, dir string) {
	t.Helper()
	netns, err := cluster.Netns()
	if err != nil {
		t.Fatal(err)
	}
	var paths, ports []string
	for _, c := range comps {
		paths = append(paths, c.Path)
		for _, p := range c.Ports {
			ports = append(ports, strconv.Itoa(p))
		}
	}
	if len(paths) == 0 {
		t.Fatal("no components to check")
	}
	// SIGKILLed processes are reaped by Stop; give the kernel a moment to
	// release their /proc entries and sockets.
	err = waitFor(context.Background(), 5*time.Second, func() error {
		left := leftovers(netns, paths)
		if len(left) > 0 {
			return fmt.Errorf("processes left: %s", strings.Join(left, "; "))
		}
		for _, p := range ports {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", p))
			if err != nil {
				return fmt.Errorf("port %s still taken: %w", p, err)
			}
			l.Close()
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work dir %s still there (stat: %v)", dir, err)
	}
}

// leftovers lists the processes in netns whose binary is one of paths.
func leftovers(netns string, paths []string) []string {
	entries, _ := os.ReadDir("/proc")
	var left []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil || ns != netns {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue
		}
		if slices.Contains(paths, strings.TrimSuffix(exe, " (deleted)")) {
			left = append(left, fmt.Sprintf("pid %d %s", pid, exe))
		}
	}
	return left
}

func podinfo(ns, revision string) *appsv1.Deployment {
	labels := map[string]string{"app": "podinfo"}
	one := int32(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "podinfo", Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "podinfo",
					// Never pulled: kwok marks the pod Running.
					Image: "podinfo:e2e",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 9898}},
					Env:   []corev1.EnvVar{{Name: "REVISION", Value: revision}},
				}}},
			},
		},
	}
}

// canary has no metrics: with nothing to check, Flagger promotes after the
// one 50 % step. interval 10s is Flagger's floor.
func canary(ns string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "flagger.app/v1beta1",
		"kind":       "Canary",
		"metadata":   map[string]any{"name": "podinfo", "namespace": ns},
		"spec": map[string]any{
			"provider":                "istio",
			"targetRef":               map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
			"progressDeadlineSeconds": int64(120),
			"service":                 map[string]any{"port": int64(9898)},
			"analysis": map[string]any{
				"interval":    "10s",
				"threshold":   int64(1),
				"stepWeights": []any{int64(50)},
			},
		},
	}}
}

// observer polls the Canary's phase and the VirtualService's weights and
// keeps each change, in order. Every Flagger step lasts a 10 s tick, so a
// 250 ms poll sees them all.
type observer struct {
	mu      sync.Mutex
	phases  []string
	weights []string
	cancel  context.CancelFunc
	done    chan struct{}
}

func observe(ctx context.Context, dyn dynamic.Interface, ns, name string) *observer {
	ctx, cancel := context.WithCancel(ctx)
	o := &observer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(o.done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if cn, err := dyn.Resource(canaryGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
				if phase, _, _ := unstructured.NestedString(cn.Object, "status", "phase"); phase != "" {
					o.add(&o.phases, phase)
				}
			}
			if vs, err := dyn.Resource(virtualServiceGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
				if w := routeWeights(vs, name); w != "" {
					o.add(&o.weights, w)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return o
}

func (o *observer) add(list *[]string, v string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if n := len(*list); n == 0 || (*list)[n-1] != v {
		*list = append(*list, v)
	}
}

func (o *observer) phaseList() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.phases)
}

func (o *observer) weightList() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.weights)
}

func (o *observer) stop() { o.cancel(); <-o.done }

// waitPhase waits until the latest phase is one of want.
func (o *observer) waitPhase(ctx context.Context, timeout time.Duration, want ...string) error {
	return waitFor(ctx, timeout, func() error {
		p := o.phaseList()
		if len(p) > 0 && slices.Contains(want, p[len(p)-1]) {
			return nil
		}
		return fmt.Errorf("phase is not %v", want)
	})
}

// routeWeights reads "primary/canary" from the VirtualService's first HTTP
// route.
func routeWeights(vs *unstructured.Unstructured, name string) string {
	http, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	if len(http) == 0 {
		return ""
	}
	routes, _, _ := unstructured.NestedSlice(http[0].(map[string]any), "route")
	var primary, canary int64 = -1, -1
	for _, r := range routes {
		m, _ := r.(map[string]any)
		host, _, _ := unstructured.NestedString(m, "destination", "host")
		w, _, _ := unstructured.NestedInt64(m, "weight")
		switch host {
		case name + "-primary":
			primary = w
		case name + "-canary":
			canary = w
		}
	}
	if primary < 0 || canary < 0 {
		return ""
	}
	return fmt.Sprintf("%d/%d", primary, canary)
}

func envValue(env []corev1.EnvVar, name string) string {
	for _, e := range env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// inOrder reports whether want appears in list as a subsequence.
func inOrder(list []string, want ...string) bool {
	i := 0
	for _, v := range list {
		if i < len(want) && v == want[i] {
			i++
		}
	}
	return i == len(want)
}

func waitFor(ctx context.Context, timeout time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", timeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// promQuery returns the value of an instant query's single sample.
func promQuery(ctx context.Context, base, query string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("query prometheus: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string
		Data   struct {
			Result []struct {
				Value []any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("decode prometheus answer: %w", err)
	}
	if body.Status != "success" || len(body.Data.Result) != 1 || len(body.Data.Result[0].Value) != 2 {
		return "", fmt.Errorf("query %s: %+v", query, body)
	}
	v, _ := body.Data.Result[0].Value[1].(string)
	return v, nil
}

package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/canarylab/canarylab/orchestrator/analysis"
	"github.com/canarylab/canarylab/orchestrator/report"
	"github.com/canarylab/canarylab/orchestrator/scenario"
)

// Name is the engine's name on the command line.
const Name = "kube"

// Options configure the engine.
type Options struct {
	// Kubeconfig and Context select the cluster (default: KUBECONFIG,
	// ~/.kube/config, or the pod's service account).
	Kubeconfig string
	Context    string
	// RestConfig, if set, is used instead of a kubeconfig.
	RestConfig *rest.Config
	// Render configures the objects (images, namespace).
	Render RenderOptions
	// Timeout bounds the run (default: the scenario's timeout or its
	// default, plus InitTimeout).
	Timeout time.Duration
	// InitTimeout bounds the wait for the Canary to be Initialized
	// (default 5m).
	InitTimeout time.Duration
	// Poll is how often the Canary, its events and the VirtualService are
	// read (default 1s).
	Poll time.Duration
	// Keep leaves the canary's objects in the cluster after the run (the
	// load is always removed).
	Keep bool
	// Logger receives the engine's log (default: discard).
	Logger *slog.Logger
}

// Engine runs scenarios on a cluster.
type Engine struct {
	opts   Options
	cfg    *rest.Config
	dyn    dynamic.Interface
	disc   discovery.DiscoveryInterface
	mapper meta.RESTMapper
}

// New connects the engine's clients (nothing is sent until Run).
func New(opts Options) (*Engine, error) {
	if opts.InitTimeout <= 0 {
		opts.InitTimeout = 5 * time.Minute
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Render.defaults()
	cfg := opts.RestConfig
	if cfg == nil {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		if opts.Kubeconfig != "" {
			rules.ExplicitPath = opts.Kubeconfig
		}
		var err error
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: opts.Context}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("no cluster to run on: %w (give --kubeconfig, set KUBECONFIG, or run in a pod)", err)
		}
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "canarylab"
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))
	return &Engine{opts: opts, cfg: cfg, dyn: dyn, disc: disc, mapper: mapper}, nil
}

var (
	canaryGK = schema.GroupKind{Group: "flagger.app", Kind: "Canary"}
	vsGK     = schema.GroupKind{Group: "networking.istio.io", Kind: "VirtualService"}
)

// preflight turns the errors a user meets first into clear messages: no
// cluster, no Flagger CRDs, no Istio CRDs. A Flagger that runs outside the
// cluster (a developer's, the e2e harness's) has no Deployment, so finding
// none is a note, not an error: with no Flagger at all, the Canary never
// gets a status, and the wait for Initialized says so.
func (e *Engine) preflight(ctx context.Context, obs report.Observer) error {
	v, err := e.disc.ServerVersion()
	if err != nil {
		return fmt.Errorf("cannot reach the cluster at %s: %w", e.cfg.Host, err)
	}
	e.opts.Logger.Info("cluster", "server", e.cfg.Host, "version", v.GitVersion)
	if _, err := e.mapper.RESTMapping(canaryGK); err != nil {
		return fmt.Errorf("Flagger's CRDs are not installed (no canaries.flagger.app): install Flagger with kubectl apply -k manifests/flagger: %w", err)
	}
	if _, err := e.mapper.RESTMapping(vsGK); err != nil {
		return fmt.Errorf("Istio's CRDs are not installed (no virtualservices.networking.istio.io): Flagger's istio provider needs them: %w", err)
	}
	deps, err := e.dyn.Resource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}).
		List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=flagger"})
	if err != nil {
		return explain(err, "list Deployments to find Flagger")
	}
	for _, d := range deps.Items {
		if n, _, _ := unstructured.NestedInt64(d.Object, "status", "readyReplicas"); n > 0 {
			return nil
		}
	}
	obs.Note(0, "no ready Deployment named flagger in the cluster: if Flagger runs elsewhere, fine; if not, install it (kubectl apply -k manifests/flagger)")
	return nil
}

// explain wraps an API error, saying plainly what RBAC denied.
func explain(err error, what string) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("RBAC denied: %s: %w (bind canarylab's user to a role that allows it; see docs/kubernetes.md)", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// resource finds an object's API resource.
func (e *Engine) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("the cluster does not serve %s: %w", gvk, err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return e.dyn.Resource(m.Resource).Namespace(u.GetNamespace()), nil
	}
	return e.dyn.Resource(m.Resource), nil
}

// apply server-side applies objects in order, as field manager canarylab.
func (e *Engine) apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		ri, err := e.resource(o)
		if err != nil {
			return err
		}
		if _, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			return explain(err, fmt.Sprintf("apply %s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName()))
		}
	}
	return nil
}

// remove deletes objects in reverse order; missing ones are fine.
func (e *Engine) remove(ctx context.Context, objs []*unstructured.Unstructured) error {
	var errs []error
	policy := metav1.DeletePropagationForeground
	for _, o := range slices.Backward(objs) {
		ri, err := e.resource(o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := ri.Delete(ctx, o.GetName(), metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, explain(err, fmt.Sprintf("delete %s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())))
		}
	}
	return errors.Join(errs...)
}

// gone waits until an object no longer exists.
func (e *Engine) gone(ctx context.Context, ri dynamic.ResourceInterface, name string) error {
	t := time.NewTicker(e.opts.Poll)
	defer t.Stop()
	for {
		if _, err := ri.Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is still being deleted: %w", name, ctx.Err())
		case <-t.C:
		}
	}
}

// Run runs s on the cluster: apply, wait for Initialized, start the load,
// deploy the new revision, watch until the verdict or the timeout; the
// load (and, unless Keep, the canary's objects) is deleted whatever
// happens, Ctrl-C included.
func (e *Engine) Run(ctx context.Context, s *scenario.Scenario, obs report.Observer) (err error) {
	if err := e.preflight(ctx, obs); err != nil {
		return err
	}
	r, err := Render(s, e.opts.Render)
	if err != nil {
		return err
	}
	interval := s.Analysis.IntervalDuration()
	timeout := e.opts.Timeout
	if timeout <= 0 {
		timeout = s.DefaultTimeout(interval)
		if s.Timeout != nil {
			timeout = s.Timeout.D()
		}
		timeout += e.opts.InitTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	// A namespace that exists is the user's: leave it as it is, and
	// remove only what canarylab creates in it.
	app := r.App
	nsri, err := e.resource(app[0])
	if err != nil {
		return err
	}
	_, err = nsri.Get(ctx, r.Namespace, metav1.GetOptions{})
	ownNamespace := apierrors.IsNotFound(err)
	if err != nil && !ownNamespace {
		return explain(err, "read namespace "+r.Namespace)
	}
	if !ownNamespace {
		app = app[1:]
	}

	// Whatever happens from here, the load goes, and the app unless kept:
	// on a context of its own, since ctx may be what ended.
	defer func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer ccancel()
		cleanup := e.remove(cctx, r.Load)
		if !e.opts.Keep {
			// In a namespace of its own, removing the namespace removes
			// what Flagger generated in it too (the primary, services,
			// VirtualService); elsewhere the Canary owns those.
			del := app
			if ownNamespace {
				del = r.App[:1]
			}
			cleanup = errors.Join(cleanup, e.remove(cctx, del))
			if ownNamespace && cleanup == nil {
				// A namespace takes a while to go; a run right after this one
				// could not create it again until it has.
				cleanup = e.gone(cctx, nsri, r.Namespace)
			}
		}
		if cleanup != nil {
			obs.Note(0, "cleanup: "+cleanup.Error())
			if err == nil {
				err = cleanup
			}
		}
	}()

	start := time.Now()
	obs.Started(&report.Run{Started: start, Interval: interval})
	if err := e.apply(ctx, app); err != nil {
		return err
	}
	w := &watcher{e: e, r: r, obs: obs}
	if err := w.until(ctx, func(ph analysis.Phase) bool { return ph != "" && ph != analysis.PhaseInitializing }, e.opts.InitTimeout); err != nil {
		if errors.Is(err, errWaitTimeout) {
			return fmt.Errorf("the Canary is stuck Initializing after %s: %s", e.opts.InitTimeout, w.why())
		}
		return err
	}
	if err := e.apply(ctx, r.Load); err != nil {
		return err
	}
	if len(r.Load) > 0 {
		obs.Note(0, fmt.Sprintf("load: a Locust master and canarylab workers (%s) send to %s", e.opts.Render.Image, ServiceURL(r.Name, r.Namespace)))
	}
	if err := e.apply(ctx, []*unstructured.Unstructured{r.Revision}); err != nil {
		return err
	}
	w.revision = time.Now()
	obs.Revision(w.revision)
	err = w.until(ctx, func(ph analysis.Phase) bool { return ph.Final() && w.progressed }, 0)
	if errors.Is(err, context.DeadlineExceeded) {
		obs.Note(w.at(time.Now()), fmt.Sprintf("timed out after %s with no verdict", timeout))
		return nil
	}
	return err
}

var errWaitTimeout = errors.New("wait timed out")

// watcher polls the Canary, its events and the VirtualService, and turns
// what changed into report ticks.
type watcher struct {
	e           *Engine
	r           *Rendered
	obs         report.Observer
	revision    time.Time
	progressed  bool // a phase after the revision was Progressing or later
	last        analysis.Status
	lastRoutes  analysis.Routes
	seen        map[string]int32 // event UID → count seen
	conditions  string
	saidMetrics bool
}

func (w *watcher) at(t time.Time) time.Duration {
	if w.revision.IsZero() {
		return 0
	}
	return t.Sub(w.revision)
}

// until polls until done(phase) or the timeout (0: ctx's).
func (w *watcher) until(ctx context.Context, done func(analysis.Phase) bool, timeout time.Duration) error {
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(w.e.opts.Poll)
	defer tick.Stop()
	for {
		ph, err := w.poll(ctx)
		if err != nil {
			return err
		}
		if done(ph) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return errWaitTimeout
		case <-tick.C:
		}
	}
}

func (w *watcher) poll(ctx context.Context) (analysis.Phase, error) {
	now := time.Now()
	cri, err := w.e.resource(w.r.App[len(w.r.App)-1])
	if err != nil {
		return "", err
	}
	c, err := cri.Get(ctx, w.r.Name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil
		}
		return "", explain(err, "read the Canary")
	}
	st := canaryStatus(c)
	w.conditions = conditionText(c)
	if !w.revision.IsZero() && st.Phase != analysis.PhaseInitialized && st.Phase != "" {
		w.progressed = true
	}
	routes, _ := w.routes(ctx)
	events, err := w.events(ctx, st.Phase)
	if err != nil {
		return "", err
	}
	for _, ev := range events {
		// Flagger's own words for a missing Prometheus, said once, with
		// what to do.
		if strings.HasPrefix(ev.Message, "Error checking metric providers") && !w.saidMetrics {
			w.saidMetrics = true
			w.obs.Note(w.at(now), "Flagger cannot query its metrics server: install or point it at a Prometheus (kubectl apply -k manifests/prometheus; Flagger's -metrics-server): "+ev.Message)
		}
	}
	if !sameStatus(st, w.last) || routes != w.lastRoutes || len(events) > 0 {
		w.last, w.lastRoutes = st, routes
		w.obs.Ticked(report.Tick{Tick: analysis.Tick{Time: now, Status: st, Routes: routes, Events: events}, At: w.at(now)})
	}
	return st.Phase, nil
}

func sameStatus(a, b analysis.Status) bool {
	return a.Phase == b.Phase && a.FailedChecks == b.FailedChecks && a.CanaryWeight == b.CanaryWeight && a.Iterations == b.Iterations
}

// canaryStatus reads the Canary's status fields.
func canaryStatus(c *unstructured.Unstructured) analysis.Status {
	var st analysis.Status
	ph, _, _ := unstructured.NestedString(c.Object, "status", "phase")
	st.Phase = analysis.Phase(ph)
	fc, _, _ := unstructured.NestedInt64(c.Object, "status", "failedChecks")
	w, _, _ := unstructured.NestedInt64(c.Object, "status", "canaryWeight")
	it, _, _ := unstructured.NestedInt64(c.Object, "status", "iterations")
	st.FailedChecks, st.CanaryWeight, st.Iterations = int(fc), int(w), int(it)
	return st
}

func conditionText(c *unstructured.Unstructured) string {
	conds, _, _ := unstructured.NestedSlice(c.Object, "status", "conditions")
	var parts []string
	for _, x := range conds {
		if m, ok := x.(map[string]any); ok {
			parts = append(parts, fmt.Sprintf("%v=%v (%v)", m["type"], m["status"], m["message"]))
		}
	}
	return strings.Join(parts, "; ")
}

// routes reads the VirtualService's weights: the route that has the
// canary's destination, as Flagger's GetRoutes does.
func (w *watcher) routes(ctx context.Context) (analysis.Routes, error) {
	m, err := w.e.mapper.RESTMapping(vsGK)
	if err != nil {
		return analysis.Routes{}, err
	}
	vs, err := w.e.dyn.Resource(m.Resource).Namespace(w.r.Namespace).Get(ctx, w.r.Name, metav1.GetOptions{})
	if err != nil {
		return analysis.Routes{}, err
	}
	return vsRoutes(vs, w.r.Name), nil
}

// vsRoutes finds the weights of <apex>-primary and <apex>-canary in the
// last HTTP route that has the canary (as Flagger 1.36's GetRoutes).
func vsRoutes(vs *unstructured.Unstructured, apex string) analysis.Routes {
	var out analysis.Routes
	http, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	for _, h := range http {
		hm, ok := h.(map[string]any)
		if !ok {
			continue
		}
		routes, _, _ := unstructured.NestedSlice(hm, "route")
		var p, c int64
		found := false
		for _, r := range routes {
			rm, ok := r.(map[string]any)
			if !ok {
				continue
			}
			host, _, _ := unstructured.NestedString(rm, "destination", "host")
			weight, _, _ := unstructured.NestedInt64(rm, "weight")
			switch host {
			case apex + "-primary":
				p = weight
			case apex + "-canary":
				c, found = weight, true
			}
		}
		if found {
			mirror, _, _ := unstructured.NestedString(hm, "mirror", "host")
			out = analysis.Routes{Primary: int(p), Canary: int(c), Mirrored: mirror != ""}
		}
	}
	return out
}

// events returns the Canary's events not seen before; a repeated event
// (client-go counts them) comes back once per repetition.
func (w *watcher) events(ctx context.Context, phase analysis.Phase) ([]analysis.Event, error) {
	list, err := w.e.dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "events"}).Namespace(w.r.Namespace).
		List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Canary,involvedObject.name=" + w.r.Name})
	if err != nil {
		return nil, explain(err, "list the Canary's events")
	}
	if w.seen == nil {
		w.seen = map[string]int32{}
	}
	items := list.Items
	slices.SortStableFunc(items, func(a, b unstructured.Unstructured) int { return eventTime(a).Compare(eventTime(b)) })
	var out []analysis.Event
	for _, it := range items {
		count, _, _ := unstructured.NestedInt64(it.Object, "count")
		n := int32(max(1, count))
		uid := string(it.GetUID())
		for w.seen[uid] < n {
			w.seen[uid]++
			out = append(out, eventOf(it, phase))
		}
	}
	return out, nil
}

func eventTime(u unstructured.Unstructured) time.Time {
	for _, f := range [][]string{{"lastTimestamp"}, {"eventTime"}, {"firstTimestamp"}, {"metadata", "creationTimestamp"}} {
		if s, ok, _ := unstructured.NestedString(u.Object, f...); ok && s != "" {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				return t
			}
		}
	}
	return time.Time{}
}

// combined is client-go's prefix for events it merged.
const combined = "(combined from similar events): "

func eventOf(u unstructured.Unstructured, phase analysis.Phase) analysis.Event {
	typ, _, _ := unstructured.NestedString(u.Object, "type")
	msg, _, _ := unstructured.NestedString(u.Object, "message")
	return analysis.Event{Time: eventTime(u), Type: analysis.EventType(typ), Message: strings.TrimPrefix(msg, combined), Phase: phase}
}

// why says what a Canary stuck Initializing shows.
func (w *watcher) why() string {
	if w.conditions == "" {
		return "it has no status: Flagger is not running, or not watching this namespace (kubectl apply -k manifests/flagger)"
	}
	return w.conditions + " (see the events: kubectl -n " + w.r.Namespace + " describe canary " + w.r.Name + ")"
}

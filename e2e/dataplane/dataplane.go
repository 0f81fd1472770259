// Package dataplane plays a cluster's data plane on this machine, for a
// control plane whose pods never run (kwok marks them Running): it runs the
// processes of the pods canarylab deploys, a kube-proxy for their Services,
// and Istio's mesh for their VirtualServices. Everything above it — the API
// server, the controllers, Flagger's decisions, Prometheus, the kube
// engine — is real and unchanged.
//
//   - A pod whose image is canarylab's runs the canarylab binary with the
//     pod's args and env; a Locust pod runs Debian's Locust. ConfigMap
//     volumes become directories; listen addresses in the env become free
//     loopback ports; service names (<svc>.<ns>.svc.cluster.local:<port>)
//     in the env and args become the loopback address that plays that
//     Service.
//   - Every Service gets a loopback port that forwards connections to a
//     ready pod of its selector (round robin), as kube-proxy does.
//   - A VirtualService (Flagger's, for a Canary) gets a mesh.Router, the
//     embedded engine's, in front of its destinations' Services, with the
//     weights Flagger writes; the VirtualService's host then resolves to
//     the router, as a sidecar would intercept it. The router reports
//     Istio's telemetry, and the mock servers' admin ports, to Prometheus
//     as scrape targets.
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/canarylab/canarylab/orchestrator/mesh"
)

// Target is a Prometheus scrape target.
type Target struct {
	Addr   string
	Labels map[string]string
}

// Config configures a data plane.
type Config struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Namespaces the data plane serves (pods elsewhere are left alone).
	Namespaces []string
	// Canarylab is the canarylab binary; Locust Debian's (/usr/bin/locust).
	Canarylab string
	Locust    string
	// Images: a pod whose image's repository is one of these runs the
	// binary (default canarylab/canarylab and locustio/locust).
	CanarylabImage, LocustImage string
	// Dir holds the pods' volumes and logs.
	Dir string
	// Scrape receives the scrape targets of a job whenever they change.
	Scrape func(job string, targets []Target)
	Logger *slog.Logger
}

// DataPlane is a running data plane; Stop ends it.
type DataPlane struct {
	cfg    Config
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	pods     map[string]*proc    // ns/name → process
	services map[string]*service // ns/name → proxy
	routers  map[string]*router  // ns/name of the VirtualService
	podIx    cache.Indexer
	svcIx    cache.Indexer
	cmIx     cache.Indexer
}

var vsGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "virtualservices"}

// Start starts the data plane and returns when its caches are synced.
func Start(ctx context.Context, cfg Config) (*DataPlane, error) {
	if cfg.CanarylabImage == "" {
		cfg.CanarylabImage = "canarylab/canarylab"
	}
	if cfg.LocustImage == "" {
		cfg.LocustImage = "locustio/locust"
	}
	if cfg.Locust == "" {
		cfg.Locust = "/usr/bin/locust"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Scrape == nil {
		cfg.Scrape = func(string, []Target) {}
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &DataPlane{cfg: cfg, log: cfg.Logger, cancel: cancel, pods: map[string]*proc{}, services: map[string]*service{}, routers: map[string]*router{}}
	f := informers.NewSharedInformerFactory(cfg.Client, 0)
	pods, svcs, cms := f.Core().V1().Pods().Informer(), f.Core().V1().Services().Informer(), f.Core().V1().ConfigMaps().Informer()
	d.podIx, d.svcIx, d.cmIx = pods.GetIndexer(), svcs.GetIndexer(), cms.GetIndexer()
	df := dynamicinformer.NewDynamicSharedInformerFactory(cfg.Dynamic, 0)
	vss := df.ForResource(vsGVR).Informer()
	// One goroutine reconciles everything on any change: the world is
	// small, and it keeps the order of start-ups simple.
	kick := make(chan struct{}, 1)
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify(kick) },
		UpdateFunc: func(any, any) { notify(kick) },
		DeleteFunc: func(any) { notify(kick) },
	}
	for _, inf := range []cache.SharedIndexInformer{pods, svcs, cms, vss} {
		if _, err := inf.AddEventHandler(h); err != nil {
			cancel()
			return nil, fmt.Errorf("dataplane: watch: %w", err)
		}
	}
	f.Start(ctx.Done())
	df.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), pods.HasSynced, svcs.HasSynced, cms.HasSynced, vss.HasSynced) {
		cancel()
		return nil, errors.New("dataplane: caches did not sync")
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(time.Second) // and a periodic pass, for processes that exit
		defer t.Stop()
		for {
			d.reconcile(ctx, vss.GetIndexer())
			select {
			case <-ctx.Done():
				return
			case <-kick:
			case <-t.C:
			}
		}
	}()
	return d, nil
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Stop stops every process, proxy and router, and waits for them.
func (d *DataPlane) Stop() {
	d.cancel()
	d.wg.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, p := range d.pods {
		p.stop()
		delete(d.pods, k)
	}
	for k, s := range d.services {
		s.close()
		delete(d.services, k)
	}
	for k, r := range d.routers {
		r.close()
		delete(d.routers, k)
	}
}

// Processes returns the pods that run as processes (ns/name → pid).
func (d *DataPlane) Processes() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for k, p := range d.pods {
		if p.cmd != nil && p.cmd.Process != nil {
			out[k] = p.cmd.Process.Pid
		}
	}
	return out
}

func (d *DataPlane) served(ns string) bool { return slices.Contains(d.cfg.Namespaces, ns) }

func (d *DataPlane) reconcile(ctx context.Context, vsIx cache.Indexer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Services first: their addresses are what pods' env and args need.
	want := map[string]*corev1.Service{}
	for _, o := range d.svcIx.List() {
		s := o.(*corev1.Service)
		if d.served(s.Namespace) && len(s.Spec.Selector) > 0 {
			want[s.Namespace+"/"+s.Name] = s
		}
	}
	for k, s := range d.services {
		if want[k] == nil {
			s.close()
			delete(d.services, k)
		}
	}
	for k, s := range want {
		if d.services[k] == nil {
			sv, err := newService(s)
			if err != nil {
				d.log.Error("service proxy", "service", k, "err", err)
				continue
			}
			d.services[k] = sv
		}
		d.services[k].update(s, d.endpoints(s))
	}
	// Routers for VirtualServices.
	wantVS := map[string]*unstructured.Unstructured{}
	for _, o := range vsIx.List() {
		u := o.(*unstructured.Unstructured)
		if d.served(u.GetNamespace()) {
			wantVS[u.GetNamespace()+"/"+u.GetName()] = u
		}
	}
	for k, r := range d.routers {
		if wantVS[k] == nil {
			r.close()
			delete(d.routers, k)
		}
	}
	for k, u := range wantVS {
		if err := d.route(k, u); err != nil {
			d.log.Error("virtual service", "vs", k, "err", err)
		}
	}
	// Pods: run the ones that should run, stop the others.
	wantPods := map[string]*corev1.Pod{}
	for _, o := range d.podIx.List() {
		p := o.(*corev1.Pod)
		if d.served(p.Namespace) && p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed && d.runs(p) != "" {
			wantPods[p.Namespace+"/"+p.Name] = p
		}
	}
	for k, p := range d.pods {
		if wantPods[k] == nil {
			p.stop()
			delete(d.pods, k)
		}
	}
	for k, p := range wantPods {
		if d.pods[k] == nil {
			pr, err := d.start(ctx, p)
			if err != nil {
				d.log.Error("pod", "pod", k, "err", err)
				continue
			}
			d.pods[k] = pr
		}
	}
	d.publishTargets()
}

// runs says which binary a pod runs ("" for none).
func (d *DataPlane) runs(p *corev1.Pod) string {
	if len(p.Spec.Containers) == 0 {
		return ""
	}
	repo, _, _ := strings.Cut(p.Spec.Containers[0].Image, ":")
	switch repo {
	case d.cfg.CanarylabImage:
		return d.cfg.Canarylab
	case d.cfg.LocustImage:
		return d.cfg.Locust
	}
	return ""
}

// endpoints are the local addresses of the ready pods a Service selects,
// by service port.
func (d *DataPlane) endpoints(s *corev1.Service) map[int32][]string {
	sel := labels.SelectorFromSet(s.Spec.Selector)
	out := map[int32][]string{}
	for _, o := range d.podIx.List() {
		p := o.(*corev1.Pod)
		if p.Namespace != s.Namespace || !sel.Matches(labels.Set(p.Labels)) || p.DeletionTimestamp != nil {
			continue
		}
		pr := d.pods[p.Namespace+"/"+p.Name]
		if pr == nil {
			continue
		}
		for _, sp := range s.Spec.Ports {
			if addr := pr.portAddr(p, sp.TargetPort.String(), sp.TargetPort.IntValue()); addr != "" {
				out[sp.Port] = append(out[sp.Port], addr)
			}
		}
	}
	return out
}

// resolve maps a cluster address (<svc>.<ns>[.svc[.cluster.local]]:<port>
// or a URL holding one) to the local address that plays it.
func (d *DataPlane) resolve(s string) string {
	for k, sv := range d.services {
		ns, name, _ := strings.Cut(k, "/")
		for port, addr := range sv.addrs() {
			for _, host := range []string{name + "." + ns + ".svc.cluster.local", name + "." + ns + ".svc", name + "." + ns} {
				from := host + ":" + strconv.Itoa(int(port))
				to := addr
				if r := d.routers[k]; r != nil && port == r.port {
					to = r.addr // the mesh intercepts the VirtualService's host
				}
				if strings.Contains(s, from) {
					return strings.ReplaceAll(s, from, to)
				}
			}
		}
	}
	return s
}

// publishTargets tells Prometheus what to scrape: the routers' telemetry
// and the mock servers' admin ports, labelled as Kubernetes pods are.
func (d *DataPlane) publishTargets() {
	var routers, pods []Target
	for k, r := range d.routers {
		ns, _, _ := strings.Cut(k, "/")
		routers = append(routers, Target{Addr: r.metricsAddr, Labels: map[string]string{"namespace": ns}})
	}
	for k, p := range d.pods {
		if p.admin == "" {
			continue
		}
		ns, name, _ := strings.Cut(k, "/")
		pods = append(pods, Target{Addr: p.admin, Labels: map[string]string{"namespace": ns, "pod": name, "app": p.app}})
	}
	slices.SortFunc(routers, func(a, b Target) int { return strings.Compare(a.Addr, b.Addr) })
	slices.SortFunc(pods, func(a, b Target) int { return strings.Compare(a.Addr, b.Addr) })
	d.cfg.Scrape("istio-mesh", routers)
	d.cfg.Scrape("kubernetes-pods", pods)
}

// freePort returns a free loopback address.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// proc is a pod played by a local process.
type proc struct {
	cmd   *exec.Cmd
	done  chan struct{}
	ports map[int32]string // container port → local address
	named map[string]int32 // port name → container port
	admin string           // a mock server's admin address (metrics)
	app   string
	log   *os.File
}

func (p *proc) portAddr(_ *corev1.Pod, name string, num int) string {
	if n, ok := p.named[name]; ok {
		return p.ports[n]
	}
	return p.ports[int32(num)]
}

func (p *proc) stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	if p.log != nil {
		_ = p.log.Close()
	}
}

// listenEnv are the env variables that hold a canarylab listen address,
// by the container port they serve.
var listenEnv = map[string]bool{"CANARYLAB_MOCK_LISTEN": true, "CANARYLAB_MOCK_ADMIN_LISTEN": true, "CANARYLAB_LOAD_METRICS_LISTEN": true}

// start runs a pod's first container as a process.
func (d *DataPlane) start(ctx context.Context, p *corev1.Pod) (*proc, error) {
	c := p.Spec.Containers[0]
	bin := d.runs(p)
	dir := filepath.Join(d.cfg.Dir, p.Namespace, p.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	pr := &proc{done: make(chan struct{}), ports: map[int32]string{}, named: map[string]int32{}, app: p.Labels["app"]}
	// Volumes: ConfigMaps become directories; mount paths are rewritten.
	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		for _, v := range p.Spec.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			o, ok, _ := d.cmIx.GetByKey(p.Namespace + "/" + v.ConfigMap.Name)
			if !ok {
				return nil, fmt.Errorf("configmap %s not found (yet)", v.ConfigMap.Name)
			}
			vd := filepath.Join(dir, "volumes", v.Name)
			if err := os.MkdirAll(vd, 0o755); err != nil {
				return nil, err
			}
			for k, val := range o.(*corev1.ConfigMap).Data {
				if err := os.WriteFile(filepath.Join(vd, k), []byte(val), 0o644); err != nil {
					return nil, err
				}
			}
			mounts[vm.MountPath] = vd
		}
	}
	rewrite := func(s string) string {
		for from, to := range mounts {
			s = strings.ReplaceAll(s, from, to)
		}
		return d.resolve(s)
	}
	for _, cp := range c.Ports {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		pr.ports[cp.ContainerPort] = addr
		if cp.Name != "" {
			pr.named[cp.Name] = cp.ContainerPort
		}
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "PYTHONUNBUFFERED=1"}
	for _, e := range c.Env {
		v := rewrite(e.Value)
		if listenEnv[e.Name] {
			// ":8080" → the pod's local address for container port 8080.
			_, port, _ := net.SplitHostPort(e.Value)
			n, _ := strconv.Atoi(port)
			if addr := pr.ports[int32(n)]; addr != "" {
				v = addr
			}
			if e.Name == "CANARYLAB_MOCK_ADMIN_LISTEN" {
				pr.admin = v
			}
		}
		env = append(env, e.Name+"="+v)
	}
	var args []string
	for _, a := range c.Args {
		args = append(args, rewrite(a))
	}
	if bin == d.cfg.Locust {
		// The master binds where the workers' Service forwards: its
		// container ports' local addresses.
		if a := pr.ports[5557]; a != "" {
			host, port, _ := net.SplitHostPort(a)
			args = append(args, "--master-bind-host", host, "--master-bind-port", port)
		}
		if a := pr.ports[8089]; a != "" {
			host, port, _ := net.SplitHostPort(a)
			args = append(args, "--web-host", host, "--web-port", port)
		}
	}
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return nil, err
	}
	pr.log = logf
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	pr.cmd = cmd
	d.log.Info("pod started", "pod", p.Namespace+"/"+p.Name, "bin", filepath.Base(bin), "args", strings.Join(args, " "), "ports", fmt.Sprint(pr.ports))
	go func() {
		_ = cmd.Wait()
		close(pr.done)
	}()
	_ = ctx
	return pr, nil
}

// service is a kube-proxy for one Service: a loopback listener per
// service port, forwarding to the ready pods round robin.
type service struct {
	mu    sync.Mutex
	lns   map[int32]net.Listener
	eps   map[int32][]string
	next  int
	wg    sync.WaitGroup
	conns map[net.Conn]struct{}
}

func newService(s *corev1.Service) (*service, error) {
	sv := &service{lns: map[int32]net.Listener{}, eps: map[int32][]string{}, conns: map[net.Conn]struct{}{}}
	for _, sp := range s.Spec.Ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			sv.close()
			return nil, err
		}
		sv.lns[sp.Port] = ln
		sv.wg.Add(1)
		go sv.serve(sp.Port, ln)
	}
	return sv, nil
}

func (sv *service) addrs() map[int32]string {
	out := map[int32]string{}
	for p, ln := range sv.lns {
		out[p] = ln.Addr().String()
	}
	return out
}

func (sv *service) update(_ *corev1.Service, eps map[int32][]string) {
	sv.mu.Lock()
	sv.eps = eps
	sv.mu.Unlock()
}

func (sv *service) serve(port int32, ln net.Listener) {
	defer sv.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		sv.mu.Lock()
		eps := sv.eps[port]
		var to string
		if len(eps) > 0 {
			to = eps[sv.next%len(eps)]
			sv.next++
		}
		sv.conns[c] = struct{}{}
		sv.mu.Unlock()
		if to == "" {
			_ = c.Close() // no ready endpoint: refused, as kube-proxy's REJECT
			continue
		}
		sv.wg.Add(1)
		go func() {
			defer sv.wg.Done()
			defer func() {
				sv.mu.Lock()
				delete(sv.conns, c)
				sv.mu.Unlock()
				_ = c.Close()
			}()
			up, err := net.Dial("tcp", to)
			if err != nil {
				return
			}
			defer up.Close()
			sv.mu.Lock()
			sv.conns[up] = struct{}{}
			sv.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); _ = up.(*net.TCPConn).CloseWrite() }()
			_, _ = io.Copy(c, up)
		}()
	}
}

func (sv *service) close() {
	sv.mu.Lock()
	for _, ln := range sv.lns {
		_ = ln.Close()
	}
	for c := range sv.conns {
		_ = c.Close()
	}
	sv.mu.Unlock()
	sv.wg.Wait()
}

// router is a VirtualService's mesh.Router, served on loopback.
type router struct {
	rt          *mesh.Router
	srv, msrv   *http.Server
	addr        string
	metricsAddr string
	port        int32 // the service port it intercepts
	backends    string
}

func (r *router) close() {
	_ = r.srv.Close()
	_ = r.msrv.Close()
	_ = r.rt.Close()
}

// route creates or updates the router of a VirtualService: backends are
// the local addresses of its destination Services, weights its own.
func (d *DataPlane) route(key string, vs *unstructured.Unstructured) error {
	ns, name, _ := strings.Cut(key, "/")
	http0, primary, canary, pw, cw, mirrored := parseVS(vs)
	if http0 == nil {
		return nil
	}
	ps, cs := d.services[ns+"/"+primary], d.services[ns+"/"+canary]
	if ps == nil || cs == nil {
		return fmt.Errorf("destinations %s and %s have no Service yet", primary, canary)
	}
	apex := d.services[ns+"/"+name]
	if apex == nil {
		return fmt.Errorf("the apex Service %s does not exist yet", name)
	}
	var port int32
	for p := range apex.addrs() {
		port = p
	}
	pAddr, cAddr := ps.addrs()[port], cs.addrs()[port]
	backends := pAddr + "|" + cAddr
	r := d.routers[key]
	if r == nil || r.backends != backends {
		if r != nil {
			r.close()
		}
		rt, err := mesh.New(mesh.Config{Namespace: ns, Service: name, Logger: d.log,
			Primary: mesh.Backend{Workload: primary, URL: "http://" + pAddr},
			Canary:  mesh.Backend{Workload: name, URL: "http://" + cAddr}})
		if err != nil {
			return err
		}
		r = &router{rt: rt, port: port, backends: backends}
		for _, s := range []struct {
			h    http.Handler
			addr *string
			srv  **http.Server
		}{{rt, &r.addr, &r.srv}, {rt.MetricsHandler(), &r.metricsAddr, &r.msrv}} {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			*s.addr = ln.Addr().String()
			*s.srv = &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second}
			go func(srv *http.Server) { _ = srv.Serve(ln) }(*s.srv)
		}
		d.routers[key] = r
	}
	return r.rt.SetRoutes(int(pw), int(cw), mirrored)
}

// parseVS reads the route with the canary destination: its primary and
// canary hosts and weights, and whether it mirrors.
func parseVS(vs *unstructured.Unstructured) (route map[string]any, primary, canary string, pw, cw int64, mirrored bool) {
	https, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	for _, h := range https {
		hm, ok := h.(map[string]any)
		if !ok {
			continue
		}
		routes, _, _ := unstructured.NestedSlice(hm, "route")
		for _, r := range routes {
			rm, _ := r.(map[string]any)
			host, _, _ := unstructured.NestedString(rm, "destination", "host")
			w, _, _ := unstructured.NestedInt64(rm, "weight")
			switch {
			case strings.HasSuffix(host, "-primary"):
				primary, pw = host, w
			case strings.HasSuffix(host, "-canary"):
				canary, cw, route = host, w, hm
			}
		}
		if route != nil {
			m, _, _ := unstructured.NestedString(hm, "mirror", "host")
			mirrored = m != ""
		}
	}
	return route, primary, canary, pw, cw, mirrored
}

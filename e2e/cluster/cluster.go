// Package cluster starts, for one test, a real Kubernetes control plane and
// the real Flagger on loopback, with no container runtime: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, kwok (one fake
// node whose pods it marks Running), Debian's Prometheus and Flagger, with
// Flagger's and Istio's CRDs applied. It follows
// shared/reference/local-control-plane.md.
//
// Everything runs inside the test's private network namespace (see Main),
// binds 127.0.0.1 (Flagger binds all interfaces of that namespace, which has
// only lo), and is stopped when the test ends: on success, failure, timeout
// (Pdeathsig and Main's sweep) and Ctrl-C (a signal handler stops every live
// stack before exiting).
package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/canarylab/canarylab/e2e/tools"
)

// Options tune Start; the zero value starts the stack the recipe proved.
type Options struct {
	// Tools are the binaries and data files. Default: the set Main built.
	Tools *tools.Set
	// StartTimeout bounds the start, from nothing to Flagger healthy.
	// Default 3 minutes (the recipe measured 8-10 s on 2 cores).
	StartTimeout time.Duration
	// ScrapeInterval is Prometheus' global scrape and evaluation interval.
	// Default 2 s.
	ScrapeInterval time.Duration
	// FlaggerArgs are appended to Flagger's command line.
	FlaggerArgs []string
	// KeepDir keeps the work directory (logs, configs, data) after Stop,
	// for debugging; also set by CANARYLAB_E2E_KEEP=1.
	KeepDir bool
}

// Target is one scrape target of Prometheus.
type Target struct {
	// Addr is host:port, on loopback.
	Addr string
	// Labels are attached to every series scraped from it.
	Labels map[string]string
}

// Component names, also the names of their logs.
const (
	Etcd                  = "etcd"
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
	Kwok                  = "kwok"
	Prometheus            = "prometheus"
	Flagger               = "flagger"
)

// NodeName is the fake node kwok manages; every pod is scheduled to it.
const NodeName = "kwok-node-0"

// Cluster is a running stack. Its fields are valid until Stop.
type Cluster struct {
	// Dir is the work directory: pki/, config/, data, logs/.
	Dir string
	// Kubeconfig is a kubeconfig file for the admin (system:masters).
	Kubeconfig string
	// Config is the same identity as a client-go config.
	Config *rest.Config
	// PrometheusURL is Prometheus' base URL, http://127.0.0.1:<port>, the
	// address Flagger queries (-metrics-server) and MetricTemplates use.
	PrometheusURL string
	// FlaggerURL is Flagger's HTTP server (/healthz, /metrics).
	FlaggerURL string
	// ScrapeDir holds Prometheus' file_sd target files; SetScrapeTargets
	// writes them.
	ScrapeDir string

	t     testing.TB
	tools *tools.Set
	opts  Options
	ports map[string]int
	pki   *pki

	mu       sync.Mutex
	procs    []*process // in start order
	stopped  bool
	stopDone chan struct{} // closed when the first Stop has finished
	stopErr  error
}

// Start starts a stack and registers its Stop with t.Cleanup. It fails the
// test (t.Fatal) if the stack does not come up; it skips it where no private
// network namespace can be had, unless CI=true, where it fails.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if msg := os.Getenv(envFailure); msg != "" {
		t.Fatalf("cluster: %s", msg)
	}
	if msg := os.Getenv(envNoStack); msg != "" {
		unavailable(t, msg)
	}
	if !inPrivateNetns() {
		unavailable(t, "the test process is not in a private network namespace: call cluster.Main(m) from TestMain")
	}
	if opts.Tools == nil {
		set, err := tools.LoadFromEnv()
		if err != nil {
			t.Fatalf("cluster: %v (cluster.Main builds the tools before the tests)", err)
		}
		opts.Tools = set
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 3 * time.Minute
	}
	if opts.ScrapeInterval == 0 {
		opts.ScrapeInterval = 2 * time.Second
	}
	if os.Getenv("CANARYLAB_E2E_KEEP") == "1" {
		opts.KeepDir = true
	}
	dir, err := os.MkdirTemp(workRoot(), "stack-")
	if err != nil {
		t.Fatalf("cluster: create work dir: %v", err)
	}
	c := &Cluster{Dir: dir, t: t, tools: opts.Tools, opts: opts, ports: map[string]int{}, stopDone: make(chan struct{})}
	register(c)
	t.Cleanup(c.cleanup)

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), opts.StartTimeout)
	defer cancel()
	if err := c.start(ctx); err != nil {
		t.Fatalf("cluster: start after %s: %v", time.Since(start).Round(time.Millisecond), err)
	}
	t.Logf("cluster: up in %s (apiserver %s, prometheus %s, flagger %s, dir %s)",
		time.Since(start).Round(time.Millisecond), c.Config.Host, c.PrometheusURL, c.FlaggerURL, c.Dir)
	return c
}

// unavailable skips, or fails when CI=true: CI must not pass by skipping
// the tests that need the real peers.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("cluster: no control plane can start here, and CI=true: %s", why)
	}
	t.Skipf("cluster: no control plane can start here: %s", why)
}

// start brings the components up in dependency order; independent waits
// overlap (Prometheus starts with etcd, the controllers with the node and
// the CRDs).
func (c *Cluster) start(ctx context.Context) error {
	// etcd creates its data dir itself, with the 0700 it insists on.
	for _, sub := range []string{"pki", "config", "logs", "prometheus", "targets"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, sub), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", sub, err)
		}
	}
	c.ScrapeDir = filepath.Join(c.Dir, "targets")
	if err := c.pickPorts(); err != nil {
		return err
	}
	p, err := newPKI(filepath.Join(c.Dir, "pki"))
	if err != nil {
		return err
	}
	c.pki = p
	if err := c.writeKubeconfig(); err != nil {
		return err
	}

	if err := c.startPrometheus(); err != nil {
		return err
	}
	if err := c.startEtcd(ctx); err != nil {
		return err
	}
	if err := c.startAPIServer(ctx); err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	// The CRDs' schemas carry formats the API server does not know ("url",
	// "string"); it warns on each apply, harmlessly, so the warnings are
	// dropped rather than logged into every test's output.
	quiet := rest.CopyConfig(c.Config)
	quiet.WarningHandler = rest.NoWarnings{}
	dyn, err := dynamic.NewForConfig(quiet)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	if err := c.startControllers(); err != nil {
		return err
	}
	if err := createNode(ctx, kube); err != nil {
		return err
	}
	if err := applyCRDs(ctx, dyn, c.tools.FlaggerCRDs, c.tools.IstioCRDs); err != nil {
		return err
	}
	if err := c.wait(ctx, "node "+NodeName+" Ready", func(ctx context.Context) error {
		return nodeReady(ctx, kube)
	}); err != nil {
		return err
	}
	for _, name := range []string{KubeControllerManager, KubeScheduler} {
		url := fmt.Sprintf("https://127.0.0.1:%d/healthz", c.ports[name])
		if err := c.wait(ctx, name+" healthy", func(ctx context.Context) error { return httpOK(ctx, url) }); err != nil {
			return err
		}
	}
	if err := c.wait(ctx, "prometheus ready", func(ctx context.Context) error {
		return httpOK(ctx, c.PrometheusURL+"/-/ready")
	}); err != nil {
		return err
	}
	return c.startFlagger(ctx)
}

// pickPorts prefers the well-known ports, which the recipe and the docs
// name, and falls back to free ones if another stack of this process holds
// them; so two stacks can run side by side in one namespace.
func (c *Cluster) pickPorts() error {
	preferred := []struct {
		name string
		port int
	}{
		{"etcd-client", 2379}, {"etcd-peer", 2380}, {"etcd-metrics", 2381},
		{KubeAPIServer, 6443}, {KubeControllerManager, 10257}, {KubeScheduler, 10259},
		{Prometheus, 9090}, {Flagger, 8080},
	}
	portsMu.Lock()
	defer portsMu.Unlock()
	for _, p := range preferred {
		port, err := freePort(p.port)
		if err != nil {
			return fmt.Errorf("port for %s: %w", p.name, err)
		}
		c.ports[p.name] = port
		reserved[port] = true
	}
	return nil
}

var (
	portsMu  sync.Mutex
	reserved = map[int]bool{} // ports handed to stacks of this process
)

// freePort returns preferred if nobody listens there and no stack of this
// process was given it, else a port the kernel picks.
func freePort(preferred int) (int, error) {
	if !reserved[preferred] {
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(preferred))); err == nil {
			l.Close()
			return preferred, nil
		}
	}
	for range 10 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("listen on a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !reserved[port] {
			return port, nil
		}
	}
	return 0, errors.New("no free port after 10 tries")
}

func (c *Cluster) writeKubeconfig() error {
	server := fmt.Sprintf("https://127.0.0.1:%d", c.ports[KubeAPIServer])
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["canarylab-e2e"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: c.pki.caPEM}
	cfg.AuthInfos[adminUser] = &clientcmdapi.AuthInfo{ClientCertificateData: c.pki.adminCertPEM, ClientKeyData: c.pki.adminKeyPEM}
	cfg.Contexts["canarylab-e2e"] = &clientcmdapi.Context{Cluster: "canarylab-e2e", AuthInfo: adminUser}
	cfg.CurrentContext = "canarylab-e2e"
	c.Kubeconfig = filepath.Join(c.Dir, "config", "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, c.Kubeconfig); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	c.Config = &rest.Config{
		Host: server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: c.pki.caPEM, CertData: c.pki.adminCertPEM, KeyData: c.pki.adminKeyPEM,
		},
		QPS:   50,
		Burst: 100,
	}
	return nil
}

// launch starts one component and records it for Stop.
func (c *Cluster) launch(name, path string, ports []int, args ...string) error {
	p := &process{name: name, path: path, args: args, ports: ports,
		logPath: filepath.Join(c.Dir, "logs", name+".log")}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("stopped while starting")
	}
	if err := p.start(); err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	return nil
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	client := fmt.Sprintf("http://127.0.0.1:%d", c.ports["etcd-client"])
	peer := fmt.Sprintf("http://127.0.0.1:%d", c.ports["etcd-peer"])
	metrics := fmt.Sprintf("http://127.0.0.1:%d", c.ports["etcd-metrics"])
	err := c.launch(Etcd, c.tools.Etcd, []int{c.ports["etcd-client"], c.ports["etcd-peer"], c.ports["etcd-metrics"]},
		"--name=local", "--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=local="+peer, "--listen-metrics-urls="+metrics,
		// The data is thrown away with the test; fsync only slows it.
		"--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return err
	}
	return c.wait(ctx, "etcd healthy", func(ctx context.Context) error {
		return httpOK(ctx, metrics+"/health")
	})
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	port := c.ports[KubeAPIServer]
	err := c.launch(KubeAPIServer, c.tools.KubeAPIServer, []int{port},
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", c.ports["etcd-client"]),
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
		"--advertise-address=127.0.0.1",
		// No endpoint for the kubernetes Service: it would publish a
		// loopback address as the API server's.
		"--endpoint-reconciler-type=none",
		"--tls-cert-file="+c.pki.ServingCert, "--tls-private-key-file="+c.pki.ServingKey,
		"--client-ca-file="+c.pki.CACert,
		"--service-account-key-file="+c.pki.SAPub,
		"--service-account-signing-key-file="+c.pki.SAKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/16")
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return c.wait(ctx, "kube-apiserver ready", func(ctx context.Context) error {
		_, err := kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
}

// startControllers starts kube-controller-manager, kube-scheduler and kwok;
// Start waits for them further on, overlapping with the CRDs.
func (c *Cluster) startControllers() error {
	k := c.Kubeconfig
	common := []string{"--kubeconfig=" + k, "--authentication-kubeconfig=" + k, "--authorization-kubeconfig=" + k,
		// Silences "missing content for CA bundle requestheader-client-ca-file".
		"--authentication-skip-lookup=true", "--bind-address=127.0.0.1", "--leader-elect=false"}
	err := c.launch(KubeControllerManager, c.tools.KubeControllerManager, []int{c.ports[KubeControllerManager]},
		append(common, fmt.Sprintf("--secure-port=%d", c.ports[KubeControllerManager]),
			"--service-account-private-key-file="+c.pki.SAKey,
			"--root-ca-file="+c.pki.CACert,
			"--use-service-account-credentials=true",
			"--cluster-cidr=10.244.0.0/16", "--service-cluster-ip-range=10.96.0.0/16")...)
	if err != nil {
		return err
	}
	err = c.launch(KubeScheduler, c.tools.KubeScheduler, []int{c.ports[KubeScheduler]},
		append(common, fmt.Sprintf("--secure-port=%d", c.ports[KubeScheduler]))...)
	if err != nil {
		return err
	}
	// kwok starts no server without --node-port/--server-address.
	return c.launch(Kwok, c.tools.Kwok, nil,
		"--kubeconfig="+k, "--config="+c.tools.KwokStages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+kwokAnnotation+"=fake",
		// The heartbeat stage renews the node lease at this period.
		"--node-lease-duration-seconds=40",
		"--cidr=10.244.0.0/24", "--node-ip=127.0.0.1")
}

func (c *Cluster) startPrometheus() error {
	port := c.ports[Prometheus]
	c.PrometheusURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	cfg := filepath.Join(c.Dir, "config", "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(prometheusConfig(c.opts.ScrapeInterval, c.ScrapeDir)), 0o644); err != nil {
		return fmt.Errorf("write prometheus config: %w", err)
	}
	return c.launch(Prometheus, c.tools.Prometheus, []int{port},
		"--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(c.Dir, "prometheus"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn")
}

// prometheusConfig scrapes nothing until SetScrapeTargets writes a target
// file: one file_sd job whose groups carry their own job label, so a test
// can add any job without a reload.
func prometheusConfig(interval time.Duration, targets string) string {
	return fmt.Sprintf(`# Written by the canarylab e2e harness.
global:
  scrape_interval: %[1]s
  evaluation_interval: %[1]s
scrape_configs:
  - job_name: file_sd
    file_sd_configs:
      - files: [%[2]q]
        refresh_interval: %[1]s
`, model(interval), filepath.Join(targets, "*.json"))
}

// model formats a duration the way Prometheus' config accepts (no "m0s").
func model(d time.Duration) string {
	if ms := d.Milliseconds(); ms%1000 != 0 {
		return fmt.Sprintf("%dms", ms)
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

func (c *Cluster) startFlagger(ctx context.Context) error {
	port := c.ports[Flagger]
	c.FlaggerURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	args := append([]string{"-kubeconfig=" + c.Kubeconfig, "-mesh-provider=istio",
		"-metrics-server=" + c.PrometheusURL, "-enable-leader-election=false",
		// Flagger binds ":"+port, all interfaces: only lo exists here.
		fmt.Sprintf("-port=%d", port), "-log-level=info", "-zap-encoding=console"}, c.opts.FlaggerArgs...)
	if err := c.launch(Flagger, c.tools.Flagger, []int{port}, args...); err != nil {
		return err
	}
	return c.wait(ctx, "flagger healthy", func(ctx context.Context) error {
		return httpOK(ctx, c.FlaggerURL+"/healthz")
	})
}

// wait polls check until it succeeds, the context ends, or a component
// exits (then it fails at once with that component's log tail).
func (c *Cluster) wait(ctx context.Context, what string, check func(context.Context) error) error {
	var last error
	for {
		c.mu.Lock()
		for _, p := range c.procs {
			if err := p.exited(); err != nil {
				c.mu.Unlock()
				return fmt.Errorf("waiting for %s: %w", what, err)
			}
		}
		c.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// probe is for health endpoints on loopback. The controllers' self-signed
// serving certificates are not worth verifying here: the check is that
// they answer.
var probe = &http.Client{Transport: &http.Transport{
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	Proxy:           nil,
}}

func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := probe.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// SetScrapeTargets makes Prometheus scrape targets under the given job
// label (replacing that job's previous targets; none removes the job).
// Prometheus watches the file_sd directory and picks the change up within
// a scrape interval or two.
func (c *Cluster) SetScrapeTargets(job string, targets []Target) error {
	if job == "" || strings.ContainsAny(job, "/\x00") {
		return fmt.Errorf("cluster: bad job name %q", job)
	}
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	groups := []group{}
	for _, t := range targets {
		host, _, err := net.SplitHostPort(t.Addr)
		if err != nil {
			return fmt.Errorf("cluster: scrape target %q: %w", t.Addr, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("cluster: scrape target %q is not on loopback", t.Addr)
		}
		labels := map[string]string{"job": job}
		for k, v := range t.Labels {
			labels[k] = v
		}
		groups = append(groups, group{Targets: []string{t.Addr}, Labels: labels})
	}
	b, err := json.MarshalIndent(groups, "", "  ")
	if err != nil {
		return fmt.Errorf("cluster: encode scrape targets: %w", err)
	}
	// Written aside and renamed, so Prometheus never reads half a file.
	final := filepath.Join(c.ScrapeDir, job+".json")
	tmp := filepath.Join(c.ScrapeDir, "."+job+".json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("cluster: write scrape targets: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("cluster: write scrape targets: %w", err)
	}
	return nil
}

// Component describes one running process of the stack.
type Component struct {
	Name  string
	Path  string // the binary
	PID   int
	Ports []int // loopback TCP ports it listens on
	Log   string
}

// Components lists the stack's processes in start order.
func (c *Cluster) Components() []Component {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Component
	for _, p := range c.procs {
		out = append(out, Component{Name: p.name, Path: p.path, PID: p.cmd.Process.Pid, Ports: p.ports, Log: p.logPath})
	}
	return out
}

// Log returns a component's whole log so far.
func (c *Cluster) Log(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(c.Dir, "logs", name+".log"))
	if err != nil {
		return "", fmt.Errorf("cluster: log of %s: %w", name, err)
	}
	return string(b), nil
}

// Kube returns a typed client for the stack.
func (c *Cluster) Kube() kubernetes.Interface { return kubernetes.NewForConfigOrDie(c.Config) }

// Dynamic returns a dynamic client for the stack (CRDs such as Canary and
// VirtualService).
func (c *Cluster) Dynamic() dynamic.Interface { return dynamic.NewForConfigOrDie(c.Config) }

// Stop stops every process (Flagger first, etcd last; SIGTERM to each
// process group, SIGKILL after 5 s) and removes the work directory. It can
// be called more than once, also concurrently (the signal handler and
// t.Cleanup may race): every call returns once the stack is down.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		<-c.stopDone
		return c.stopErr
	}
	c.stopped = true
	procs := c.procs
	c.mu.Unlock()
	defer close(c.stopDone)

	var errs []error
	// Flagger and the controllers first, so none logs a storm of
	// connection errors while the API server goes; then the rest at once.
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		if p.name == Etcd || p.name == KubeAPIServer {
			continue
		}
		if err := p.stop(5 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(procs) - 1; i >= 0; i-- {
		if p := procs[i]; p.name == Etcd || p.name == KubeAPIServer {
			if err := p.stop(5 * time.Second); err != nil {
				errs = append(errs, err)
			}
		}
	}
	portsMu.Lock()
	for _, port := range c.ports {
		delete(reserved, port)
	}
	portsMu.Unlock()
	unregister(c)
	if !c.opts.KeepDir {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", c.Dir, err))
		}
	}
	c.stopErr = errors.Join(errs...)
	return c.stopErr
}

// cleanup is Stop for t.Cleanup: on a failed test it logs each
// component's log tail first, since the logs go with the directory.
func (c *Cluster) cleanup() {
	if c.t.Failed() {
		c.mu.Lock()
		procs := c.procs
		c.mu.Unlock()
		for _, p := range procs {
			c.t.Logf("--- %s log, last 40 lines (%s) ---\n%s", p.name, p.logPath, p.tail(40))
		}
	}
	if err := c.Stop(); err != nil {
		c.t.Errorf("cluster: stop: %v", err)
	}
	if c.opts.KeepDir {
		c.t.Logf("cluster: kept %s", c.Dir)
	}
}

// Live stacks, for the signal handler.
var (
	liveMu   sync.Mutex
	live     = map[*Cluster]bool{}
	sigOnce  sync.Once
	exitFunc = os.Exit
)

// register adds c to the live stacks and, once per process, installs the
// handler that stops them on SIGINT/SIGTERM: Go's default would exit at
// once, without t.Cleanup, leaving the stack running.
func register(c *Cluster) {
	liveMu.Lock()
	live[c] = true
	liveMu.Unlock()
	sigOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		go func() {
			s := <-ch
			liveMu.Lock()
			var cs []*Cluster
			for c := range live {
				cs = append(cs, c)
			}
			liveMu.Unlock()
			sort.Slice(cs, func(i, j int) bool { return cs[i].Dir < cs[j].Dir })
			for _, c := range cs {
				if err := c.Stop(); err != nil {
					fmt.Fprintf(os.Stderr, "cluster: stop %s on %v: %v\n", c.Dir, s, err)
				}
			}
			fmt.Fprintf(os.Stderr, "cluster: %v: stopped %d stack(s)\n", s, len(cs))
			code := 130
			if s == syscall.SIGTERM {
				code = 143
			}
			exitFunc(code)
		}()
	})
}

func unregister(c *Cluster) {
	liveMu.Lock()
	delete(live, c)
	liveMu.Unlock()
}

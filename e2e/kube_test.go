package e2e_test

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/canarylab/canarylab/e2e/cluster"
	"github.com/canarylab/canarylab/e2e/dataplane"
	"github.com/canarylab/canarylab/internal/browsertest"
	"github.com/canarylab/canarylab/orchestrator/kube"
	"github.com/canarylab/canarylab/orchestrator/local"
	"github.com/canarylab/canarylab/orchestrator/report"
	"github.com/canarylab/canarylab/orchestrator/scenario"
)

// buildCanarylab builds the binary the data plane runs for canarylab's
// pods (the Go build cache makes it quick after the first time).
func buildCanarylab(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "canarylab")
	// Built in the main module, with its own go.sum.
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/canarylab")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build canarylab: %v\n%s", err, out)
	}
	return bin
}

// logWriter sends lines to t.Log, so a failing run shows its live view.
type logWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// stack is a cluster with the real Flagger and the data plane that plays
// its pods.
type stack struct {
	c  *cluster.Cluster
	dp *dataplane.DataPlane
}

func startStack(t *testing.T) *stack {
	t.Helper()
	c := cluster.Start(t, cluster.Options{})
	bin := buildCanarylab(t)
	dp, err := dataplane.Start(context.Background(), dataplane.Config{
		Client: c.Kube(), Dynamic: c.Dynamic(), Namespaces: []string{"test", "mockserver"},
		Canarylab: bin, Dir: t.TempDir(),
		Scrape: func(job string, ts []dataplane.Target) {
			var ct []cluster.Target
			for _, x := range ts {
				ct = append(ct, cluster.Target{Addr: x.Addr, Labels: x.Labels})
			}
			if err := c.SetScrapeTargets(job, ct); err != nil {
				t.Logf("scrape targets: %v", err)
			}
		},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dp.Stop)
	return &stack{c: c, dp: dp}
}

func load(t *testing.T, name string) *scenario.Scenario {
	t.Helper()
	s, err := scenario.LoadFile(filepath.Join("testdata", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runKube runs a scenario with the kube engine against the stack.
func (st *stack) runKube(t *testing.T, s *scenario.Scenario) report.Run {
	t.Helper()
	e, err := kube.New(kube.Options{RestConfig: st.c.Config, InitTimeout: 2 * time.Minute,
		Render: kube.RenderOptions{MetricsServer: st.c.PrometheusURL}})
	if err != nil {
		t.Fatal(err)
	}
	var live logWriter
	rec := report.NewRecorder(s, "", kube.Name, 1, report.NewLive(&live, max(1, s.Analysis.Threshold), 0))
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	err = e.Run(ctx, s, rec)
	run := rec.Finish(s, time.Since(start), err)
	var sum strings.Builder
	report.Summary(&sum, run)
	t.Logf("kube engine, %s:\n%s\n%s", s.Metadata.Name, live.String(), sum.String())
	return run
}

// runLocal runs the same scenario on the embedded engine, as Flagger 1.36.
func runLocal(t *testing.T, s *scenario.Scenario) report.Run {
	t.Helper()
	// Scrapes every 2 s of scenario time, as the harness's Prometheus does:
	// the first check after a weight step then has the samples Flagger's
	// has.
	e, err := local.New(local.Options{Speed: 5, ScrapeInterval: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var live logWriter
	rec := report.NewRecorder(s, "", local.Name, 5, report.NewLive(&live, max(1, s.Analysis.Threshold), 0))
	start := time.Now()
	err = e.Run(context.Background(), s, rec)
	run := rec.Finish(s, time.Since(start), err)
	if !run.Passed {
		var sum strings.Builder
		report.Summary(&sum, run)
		t.Logf("embedded engine, %s:\n%s\n%s", s.Metadata.Name, live.String(), sum.String())
	}
	return run
}

var digits = regexp.MustCompile(`[0-9]+(\.[0-9]+)?`)

// trace is what the differential test compares: the phases the Canary
// went through after the new revision, and its event texts with numbers
// masked (metric values differ from run to run), repeats collapsed (the
// real Flagger's events are counted, the embedded engine's listed).
func trace(run report.Run) (phases, events []string) {
	for _, tk := range run.Ticks {
		if tk.At <= 0 {
			continue
		}
		// Initialized is what a poll of the real Canary may still see right
		// after the revision; the embedded engine's first tick after it is
		// already Flagger's detection.
		if p := string(tk.Status.Phase); p != "Initialized" && (len(phases) == 0 || phases[len(phases)-1] != p) {
			phases = append(phases, p)
		}
	}
	for _, e := range run.Events {
		if e.At <= 0 {
			continue
		}
		m := digits.ReplaceAllString(e.Message, "N")
		if len(events) == 0 || events[len(events)-1] != m {
			events = append(events, m)
		}
	}
	return phases, events
}

// The kube engine runs the success, failure-errors and custom-metric
// scenarios against the real Flagger v1.36.1 on a real control plane, and
// each ends as it expects; the same scenarios on the embedded engine (as
// Flagger 1.36) go through the same phases, with the same failed checks at
// rollback and the same event texts. Afterwards nothing of the load is
// left: no pod, no process.
func TestKubeEngineAgainstTheRealFlagger(t *testing.T) {
	st := startStack(t)
	for _, name := range []string{"success", "failure-errors", "custom-metric"} {
		t.Run(name, func(t *testing.T) {
			s := load(t, name)
			kr := st.runKube(t, s)
			if !kr.Passed {
				t.Errorf("kube engine: %s, expectations not met", kr.Outcome)
			}
			lr := runLocal(t, s)
			if !lr.Passed {
				t.Errorf("embedded engine: %s, expectations not met", lr.Outcome)
			}
			kp, ke := trace(kr)
			lp, le := trace(lr)
			if !slices.Equal(kp, lp) {
				t.Errorf("phases differ:\n real Flagger %v\n embedded     %v", kp, lp)
			}
			if kr.FailedChecks != lr.FailedChecks {
				t.Errorf("failed checks at rollback: real Flagger %d, embedded %d", kr.FailedChecks, lr.FailedChecks)
			}
			if !slices.Equal(ke, le) {
				t.Errorf("events differ:\n real Flagger %q\n embedded     %q", ke, le)
			}
			checkHTMLReport(t, name, kr, lr)
			st.checkNoLoadLeft(t, s)
		})
	}
}

// checkHTMLReport: canarylab run --report draws a kube engine's run (the
// real Canary's weights, failed checks and events, seen by the watcher)
// next to the embedded engine's, and the page renders in Chromium.
func checkHTMLReport(t *testing.T, name string, kube, local report.Run) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kube-"+name+".html")
	if err := report.WriteHTMLFile(path, []report.Run{kube, local}); err != nil {
		t.Fatal(err)
	}
	p := browsertest.Open(t, path)
	p.CheckCharts(t, 4) // weight and failed checks for each run, and the embedded run's metrics
	for _, want := range []string{"kube", "local", "Canary weight", "Failed checks", "Events"} {
		if !strings.Contains(p.Text, want) {
			t.Errorf("the report of %s does not show %q", name, want)
		}
	}
}

// checkNoLoadLeft: after a run, the load's pods and processes are gone,
// and so is the namespace canarylab created.
func (st *stack) checkNoLoadLeft(t *testing.T, s *scenario.Scenario) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	for {
		var left []string
		pods, err := st.c.Kube().CoreV1().Pods(s.Namespace()).List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, p := range pods.Items {
				left = append(left, "pod "+p.Name)
			}
		}
		for k := range st.dp.Processes() {
			if strings.HasPrefix(k, s.Namespace()+"/") {
				left = append(left, "process "+k)
			}
		}
		if _, err := st.c.Kube().CoreV1().Namespaces().Get(ctx, s.Namespace(), metav1.GetOptions{}); err == nil {
			left = append(left, "namespace "+s.Namespace())
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("a minute after the run: %s", strings.Join(left, ", "))
			return
		}
		time.Sleep(time.Second)
	}
}

// An interrupted run (Ctrl-C: its context ends) removes the load too.
func TestKubeEngineInterruptedCleansUp(t *testing.T) {
	st := startStack(t)
	s := load(t, "success")
	e, err := kube.New(kube.Options{RestConfig: st.c.Config, InitTimeout: 2 * time.Minute,
		Render: kube.RenderOptions{MetricsServer: st.c.PrometheusURL}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rec := report.NewRecorder(s, "", kube.Name, 1, &revisionCancel{cancel: cancel})
	err = e.Run(ctx, s, rec)
	if err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("Run after Ctrl-C: %v", err)
	}
	st.checkNoLoadLeft(t, s)
}

// revisionCancel cancels the run when the new revision is deployed, as a
// user pressing Ctrl-C in the middle of the analysis.
type revisionCancel struct {
	cancel context.CancelFunc
}

func (r *revisionCancel) Started(*report.Run)        {}
func (r *revisionCancel) Ticked(report.Tick)         {}
func (r *revisionCancel) Note(time.Duration, string) {}
func (r *revisionCancel) Revision(time.Time) {
	time.AfterFunc(3*time.Second, r.cancel)
}

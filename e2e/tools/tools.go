// Package tools builds, once, the real binaries the e2e control plane runs:
// kube-apiserver, kube-controller-manager and kube-scheduler, etcd, kwok and
// Flagger, each from a pinned Go module, and gathers the pinned data files
// (Flagger's and Istio's CRDs, kwok's stages) next to them.
//
// The binaries go to a cache directory outside the repository, named after a
// key that covers every input of the build (versions, the Go toolchain, the
// build modules' go.mod and go.sum), with a stamp written last. A run whose
// stamp is present builds nothing, and the Go build cache makes even a
// changed key cheap when only a link flag moved.
//
// The build modules live in the sub-directories kube, etcd, kwok and flagger,
// one per tool, because their dependency graphs conflict (Flagger v1.36.1 is
// built against client-go v0.27, kwok against v0.36, Kubernetes against
// v0.37) and a shared build list would upgrade the older ones.
package tools

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Pinned versions. Changing one changes the cache key, so the next run
// rebuilds; the build modules' go.mod files must say the same.
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.6.16"
	KwokVersion       = "v0.8.0"
	FlaggerVersion    = "v1.36.1"
	IstioAPIVersion   = "v1.32.0"

	// PrometheusPath is Debian's prometheus (2.42), installed by
	// `make test-deps`; it is not built because Debian already ships it.
	PrometheusPath = "/usr/bin/prometheus"

	// ModulePath is the e2e module, used to find the build modules from the
	// working directory of a test or of `go run`.
	ModulePath = "github.com/canarylab/canarylab/e2e"
)

// Set is one complete, current set of tools: absolute paths, ready to run.
type Set struct {
	// Dir is the cache directory of this key; the binaries are in Dir/bin,
	// the data files in Dir/share.
	Dir string

	KubeAPIServer         string
	KubeControllerManager string
	KubeScheduler         string
	Etcd                  string
	Kwok                  string
	Flagger               string
	Prometheus            string

	// FlaggerCRDs is Flagger's artifacts/flagger/crd.yaml.
	FlaggerCRDs string
	// IstioCRDs is istio.io/api's kubernetes/customresourcedefinitions.gen.yaml.
	IstioCRDs string
	// KwokStages is kwok's node-initialize, node-heartbeat-with-lease and
	// the fast pod stages concatenated: kwok has no built-in stages and stops
	// with "no stages found" without them.
	KwokStages string
}

// Binaries lists the built binaries and Prometheus, for checks that every
// process of a stack has gone.
func (s *Set) Binaries() []string {
	return []string{s.KubeAPIServer, s.KubeControllerManager, s.KubeScheduler, s.Etcd, s.Kwok, s.Flagger, s.Prometheus}
}

// Options tune Ensure; the zero value is what `make e2e-tools` and the tests use.
type Options struct {
	// CacheRoot holds one directory per key. Default: $CANARYLAB_E2E_CACHE, else
	// ${XDG_CACHE_HOME:-$HOME/.cache}/canarylab-e2e.
	CacheRoot string
	// SourceDir is the e2e module's directory. Default: found by walking up
	// from the working directory.
	SourceDir string
	// Go is the go command. Default: `go` on PATH.
	Go string
	// Logf reports progress and build times. Default: discard.
	Logf func(format string, args ...any)
}

// A build is one `go build` in one build module.
type build struct {
	name    string // binary name, also used in logs
	module  string // sub-directory of tools/ holding the build module
	pkg     string // package to build
	ldflags string
}

// kubeLDFlags stamp the version: an unversioned build reports
// v0.0.0-master+$Format:%H$, and Flagger exits when it cannot parse the API
// server's version as semver. buildDate is fixed so the link is reproducible.
var kubeLDFlags = func() string {
	v := "k8s.io/component-base/version"
	return strings.Join([]string{
		"-s -w",
		"-X " + v + ".gitVersion=" + KubernetesVersion,
		"-X " + v + ".gitMajor=1",
		"-X " + v + ".gitMinor=37",
		"-X " + v + ".gitTreeState=clean",
		"-X " + v + ".buildDate=2026-01-01T00:00:00Z",
	}, " ")
}()

var builds = []build{
	{"kube-apiserver", "kube", "k8s.io/kubernetes/cmd/kube-apiserver", kubeLDFlags},
	{"kube-controller-manager", "kube", "k8s.io/kubernetes/cmd/kube-controller-manager", kubeLDFlags},
	{"kube-scheduler", "kube", "k8s.io/kubernetes/cmd/kube-scheduler", kubeLDFlags},
	{"etcd", "etcd", "go.etcd.io/etcd/server/v3", "-s -w"},
	{"kwok", "kwok", "sigs.k8s.io/kwok/cmd/kwok", "-s -w"},
	{"flagger", "flagger", "github.com/fluxcd/flagger/cmd/flagger", "-s -w"},
}

// buildModules are the sub-directories whose go.mod and go.sum enter the key.
var buildModules = []string{"kube", "etcd", "kwok", "flagger"}

// kwokStageFiles are read from kwok's module (pitfall 4 of the recipe): fast
// node readiness, lease heartbeats, and pods that become Ready at once.
var kwokStageFiles = []string{
	"kustomize/stage/node/fast/node-initialize.yaml",
	"kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
	"kustomize/stage/pod/fast/pod-ready.yaml",
	"kustomize/stage/pod/fast/pod-complete.yaml",
	"kustomize/stage/pod/fast/pod-delete.yaml",
}

// stamp is written last into a key's directory: its presence means the set
// is complete.
type stamp struct {
	Key       string            `json:"key"`
	GoVersion string            `json:"goVersion"`
	Built     time.Time         `json:"built"`
	Durations map[string]string `json:"durations"`
}

const stampName = "stamp.json"

// Ensure returns a current Set, building what is missing. It holds a shared
// lock on the key for the life of the process, so that a concurrent build of
// another key does not prune this one while it is in use.
func Ensure(ctx context.Context, opts Options) (*Set, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Go == "" {
		g, err := exec.LookPath("go")
		if err != nil {
			return nil, fmt.Errorf("tools: the go command is needed to build the e2e tools: %w", err)
		}
		opts.Go = g
	}
	if opts.SourceDir == "" {
		d, err := FindSourceDir()
		if err != nil {
			return nil, err
		}
		opts.SourceDir = d
	}
	if opts.CacheRoot == "" {
		r, err := DefaultCacheRoot()
		if err != nil {
			return nil, err
		}
		opts.CacheRoot = r
	}
	if _, err := os.Stat(PrometheusPath); err != nil {
		return nil, fmt.Errorf("tools: Debian's prometheus is missing (run `make test-deps`): %w", err)
	}
	goVersion, err := goEnv(ctx, opts.Go, "GOVERSION")
	if err != nil {
		return nil, err
	}
	key, err := cacheKey(ctx, opts, goVersion)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(opts.CacheRoot, key)
	if err := os.MkdirAll(opts.CacheRoot, 0o755); err != nil {
		return nil, fmt.Errorf("tools: create cache root: %w", err)
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("tools: open lock: %w", err)
	}
	// Exclusive while checking and building, so two test processes starting
	// together build once; shared afterwards, kept until the process exits.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		return nil, fmt.Errorf("tools: lock %s: %w", lock.Name(), err)
	}
	set := layout(dir)
	if _, err := Load(dir); err != nil {
		opts.Logf("e2e tools: building into %s (key %s, %s)", dir, key, goVersion)
		if err := buildAll(ctx, opts, dir, key, goVersion); err != nil {
			lock.Close()
			return nil, err
		}
		prune(opts, key)
	} else {
		opts.Logf("e2e tools: current in %s (key %s), nothing to build", dir, key)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_SH); err != nil {
		lock.Close()
		return nil, fmt.Errorf("tools: downgrade lock %s: %w", lock.Name(), err)
	}
	heldLocks = append(heldLocks, lock) // released when the process exits
	return set, nil
}

// heldLocks keeps the shared locks' files reachable so they are not closed
// (and unlocked) by a finalizer.
var heldLocks []*os.File

// Load returns the set in dir if its stamp and every file are present. It
// runs no go command, so a test inside a network namespace without the
// module proxy can use it.
func Load(dir string) (*Set, error) {
	if _, err := os.Stat(filepath.Join(dir, stampName)); err != nil {
		return nil, fmt.Errorf("tools: no complete set in %s: %w", dir, err)
	}
	set := layout(dir)
	for _, p := range append(set.Binaries(), set.FlaggerCRDs, set.IstioCRDs, set.KwokStages) {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("tools: set in %s is incomplete: %w", dir, err)
		}
	}
	return set, nil
}

func layout(dir string) *Set {
	bin := filepath.Join(dir, "bin")
	share := filepath.Join(dir, "share")
	return &Set{
		Dir:                   dir,
		KubeAPIServer:         filepath.Join(bin, "kube-apiserver"),
		KubeControllerManager: filepath.Join(bin, "kube-controller-manager"),
		KubeScheduler:         filepath.Join(bin, "kube-scheduler"),
		Etcd:                  filepath.Join(bin, "etcd"),
		Kwok:                  filepath.Join(bin, "kwok"),
		Flagger:               filepath.Join(bin, "flagger"),
		Prometheus:            PrometheusPath,
		FlaggerCRDs:           filepath.Join(share, "flagger-crd.yaml"),
		IstioCRDs:             filepath.Join(share, "istio-crds.yaml"),
		KwokStages:            filepath.Join(share, "kwok-stages.yaml"),
	}
}

// DefaultCacheRoot is $CANARYLAB_E2E_CACHE or the user cache directory's
// canarylab-e2e: outside the repository, because the binaries weigh about
// 550 MB and must survive a fresh clone of the work tree.
func DefaultCacheRoot() (string, error) {
	if d := os.Getenv("CANARYLAB_E2E_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("tools: no cache directory (set CANARYLAB_E2E_CACHE): %w", err)
	}
	return filepath.Join(d, "canarylab-e2e"), nil
}

// FindSourceDir walks up from the working directory to the e2e module's root,
// where the build modules are; tests run in their package's directory and
// `make e2e-tools` in e2e/, so both find it.
func FindSourceDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("tools: working directory: %w", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && string(bytes.TrimSpace(firstModuleLine(b))) == "module "+ModulePath {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("tools: no go.mod of %s above %s", ModulePath, wd)
		}
	}
}

func firstModuleLine(gomod []byte) []byte {
	for _, l := range bytes.Split(gomod, []byte("\n")) {
		if bytes.HasPrefix(bytes.TrimSpace(l), []byte("module ")) {
			return l
		}
	}
	return nil
}

// cacheKey hashes every input that changes what a build produces.
func cacheKey(ctx context.Context, opts Options, goVersion string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "k8s=%s etcd=%s kwok=%s flagger=%s istio=%s go=%s %s/%s\n",
		KubernetesVersion, EtcdVersion, KwokVersion, FlaggerVersion, IstioAPIVersion, goVersion, runtime.GOOS, runtime.GOARCH)
	cgo, err := goEnv(ctx, opts.Go, "CGO_ENABLED")
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "cgo=%s\n", cgo)
	for _, b := range builds {
		fmt.Fprintf(h, "build %s %s %s %q\n", b.name, b.module, b.pkg, b.ldflags)
	}
	fmt.Fprintf(h, "stages %q\n", kwokStageFiles)
	for _, m := range buildModules {
		for _, f := range []string{"go.mod", "go.sum"} {
			b, err := os.ReadFile(filepath.Join(opts.SourceDir, "tools", m, f))
			if err != nil {
				return "", fmt.Errorf("tools: read build module file: %w", err)
			}
			fmt.Fprintf(h, "%s/%s %d\n", m, f, len(b))
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// buildAll builds into a fresh directory next to dir and renames it into
// place, so an interrupted build never leaves a half set that looks current.
func buildAll(ctx context.Context, opts Options, dir, key, goVersion string) error {
	tmp, err := os.MkdirTemp(opts.CacheRoot, key+".building-")
	if err != nil {
		return fmt.Errorf("tools: create build dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("tools: build dir mode: %w", err)
	}
	for _, sub := range []string{"bin", "share"} {
		if err := os.Mkdir(filepath.Join(tmp, sub), 0o755); err != nil {
			return fmt.Errorf("tools: create build dir: %w", err)
		}
	}
	st := stamp{Key: key, GoVersion: goVersion, Durations: map[string]string{}}
	total := time.Now()
	for _, b := range builds {
		start := time.Now()
		out := filepath.Join(tmp, "bin", b.name)
		args := []string{"build", "-trimpath", "-ldflags", b.ldflags, "-o", out, b.pkg}
		if err := runGo(ctx, opts.Go, filepath.Join(opts.SourceDir, "tools", b.module), args...); err != nil {
			return fmt.Errorf("tools: build %s: %w", b.name, err)
		}
		d := time.Since(start).Round(100 * time.Millisecond)
		st.Durations[b.name] = d.String()
		opts.Logf("e2e tools: built %-24s in %s", b.name, d)
	}
	start := time.Now()
	if err := gatherData(ctx, opts, filepath.Join(tmp, "share")); err != nil {
		return err
	}
	opts.Logf("e2e tools: gathered CRDs and kwok stages in %s", time.Since(start).Round(100*time.Millisecond))
	st.Built = time.Now().UTC()
	st.Durations["total"] = time.Since(total).Round(100 * time.Millisecond).String()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("tools: encode stamp: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, stampName), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("tools: write stamp: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil { // an incomplete set of the same key
		return fmt.Errorf("tools: clear %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("tools: move set into place: %w", err)
	}
	opts.Logf("e2e tools: all built in %s", st.Durations["total"])
	return nil
}

// gatherData copies the pinned data files out of the module cache, so that
// a test inside a network namespace, where the module proxy is unreachable,
// never needs the go command.
func gatherData(ctx context.Context, opts Options, share string) error {
	flagger, err := moduleDir(ctx, opts.Go, "github.com/fluxcd/flagger@"+FlaggerVersion)
	if err != nil {
		return err
	}
	istio, err := moduleDir(ctx, opts.Go, "istio.io/api@"+IstioAPIVersion)
	if err != nil {
		return err
	}
	kwok, err := moduleDir(ctx, opts.Go, "sigs.k8s.io/kwok@"+KwokVersion)
	if err != nil {
		return err
	}
	if err := concat(filepath.Join(share, "flagger-crd.yaml"), filepath.Join(flagger, "artifacts/flagger/crd.yaml")); err != nil {
		return err
	}
	if err := concat(filepath.Join(share, "istio-crds.yaml"), filepath.Join(istio, "kubernetes/customresourcedefinitions.gen.yaml")); err != nil {
		return err
	}
	var stages []string
	for _, f := range kwokStageFiles {
		stages = append(stages, filepath.Join(kwok, f))
	}
	return concat(filepath.Join(share, "kwok-stages.yaml"), stages...)
}

// concat writes the YAML files into dst as one multi-document stream.
func concat(dst string, srcs ...string) error {
	var buf bytes.Buffer
	for i, s := range srcs {
		b, err := os.ReadFile(s)
		if err != nil {
			return fmt.Errorf("tools: read %s: %w", s, err)
		}
		if i > 0 {
			buf.WriteString("\n---\n")
		}
		buf.Write(b)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("tools: write %s: %w", dst, err)
	}
	return nil
}

// moduleDir downloads (or finds in the module cache) one pinned module and
// returns its directory.
func moduleDir(ctx context.Context, goCmd, modVersion string) (string, error) {
	cmd := exec.CommandContext(ctx, goCmd, "mod", "download", "-json", modVersion)
	cmd.Dir = os.TempDir() // outside any module, so no go.mod is consulted
	cmd.Env = goBuildEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("tools: go mod download %s: %s", modVersion, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("tools: go mod download %s: %w: %s", modVersion, err, strings.TrimSpace(stderr.String()))
	}
	if info.Dir == "" {
		return "", fmt.Errorf("tools: go mod download %s gave no directory", modVersion)
	}
	return info.Dir, nil
}

// goBuildEnv keeps the caller's environment (GOCACHE, GOMODCACHE, GOPROXY)
// but pins what would make the build depend on the surroundings: no
// workspace, no toolchain download, no VCS stamping (module-cache sources
// have no VCS anyway).
func goBuildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "GOWORK" || k == "GOTOOLCHAIN" || k == "GOFLAGS" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GOWORK=off", "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false -mod=readonly")
}

func runGo(ctx context.Context, goCmd, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = dir
	cmd.Env = goBuildEnv()
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s in %s: %w\n%s", strings.Join(args, " "), dir, err, tail(out.String(), 40))
	}
	return nil
}

func goEnv(ctx context.Context, goCmd, name string) (string, error) {
	cmd := exec.CommandContext(ctx, goCmd, "env", name)
	cmd.Env = goBuildEnv()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("tools: go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// prune removes the sets of other keys that no process holds, so that each
// bump of a version does not leave another 550 MB behind.
func prune(opts Options, keep string) {
	entries, err := os.ReadDir(opts.CacheRoot)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || name == keep || strings.Contains(name, ".building-") {
			continue
		}
		lock, err := os.OpenFile(filepath.Join(opts.CacheRoot, name+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			continue
		}
		if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			if err := os.RemoveAll(filepath.Join(opts.CacheRoot, name)); err == nil {
				opts.Logf("e2e tools: pruned the unused set %s", name)
				os.Remove(lock.Name())
			}
		}
		lock.Close()
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ErrNoSet is returned by LoadFromEnv when no set was handed down.
var ErrNoSet = errors.New("tools: no tool set handed down in " + EnvDir)

// EnvDir names the variable through which a parent process that ran Ensure
// hands the set's directory to a child (the test re-executed inside its
// network namespace).
const EnvDir = "CANARYLAB_E2E_TOOLS_DIR"

// LoadFromEnv loads the set named by EnvDir.
func LoadFromEnv() (*Set, error) {
	d := os.Getenv(EnvDir)
	if d == "" {
		return nil, ErrNoSet
	}
	return Load(d)
}

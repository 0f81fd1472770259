package tools

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The versions are written twice: in the constants (the cache key, the
// data files) and in the build modules' go.mod (what is built). A bump of
// one without the other would build one version under another's name.
func TestBuildModulesPinTheConstants(t *testing.T) {
	for module, want := range map[string]string{
		"kube":    "k8s.io/kubernetes " + KubernetesVersion,
		"etcd":    "go.etcd.io/etcd/server/v3 " + EtcdVersion,
		"kwok":    "sigs.k8s.io/kwok " + KwokVersion,
		"flagger": "github.com/fluxcd/flagger " + FlaggerVersion,
	} {
		lines := goModLines(t, module)
		found := false
		for _, l := range lines {
			if strings.HasPrefix(strings.TrimPrefix(l, "require "), want) {
				found = true
			}
		}
		if !found {
			t.Errorf("tools/%s/go.mod does not require %s", module, want)
		}
	}
}

// Every staging module k8s.io/kubernetes replaces with a path in its own
// tree must be pinned to the release of the same version here, or the
// build mixes staging versions.
func TestKubeStagingReplacesMatch(t *testing.T) {
	staging := "v0." + strings.TrimPrefix(KubernetesVersion, "v1.")
	n := 0
	for _, l := range goModLines(t, "kube") {
		from, to, ok := strings.Cut(l, " => ")
		if !ok {
			continue
		}
		n++
		if want := from + " " + staging; to != want {
			t.Errorf("replace %s => %s, want %s", from, to, want)
		}
	}
	if n < 30 {
		t.Errorf("only %d staging replaces in tools/kube/go.mod; k8s.io/kubernetes %s has 33", n, KubernetesVersion)
	}
}

func TestLoadRefusesIncompleteSet(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil {
		t.Fatal("Load of an empty directory succeeded")
	}
	if err := os.WriteFile(filepath.Join(dir, stampName), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil {
		t.Fatal("Load of a stamp without binaries succeeded")
	}
}

func goModLines(t *testing.T, module string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(module, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if i := strings.Index(l, "//"); i >= 0 {
			l = strings.TrimSpace(l[:i])
		}
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

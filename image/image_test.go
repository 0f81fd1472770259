package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

var platform = v1.Platform{OS: "linux", Architecture: runtime.GOARCH}

// staticBinary builds testdata/hello as the image's binary is built:
// statically, for linux, trimmed.
func staticBinary(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(t.TempDir(), "hello")
	cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./testdata/hello")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, msg)
	}
	return out
}

func meta() Meta {
	return Meta{Version: "1.2.3", Revision: "0123456789abcdef", Platform: platform}
}

func TestBuild(t *testing.T) {
	bin := staticBinary(t)
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	img, err := Build(bin, meta())
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("the image is not self-consistent: %v", err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("media types %s, %s; want OCI's", m.MediaType, m.Config.MediaType)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/canarylab"}) || len(cf.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q, cmd %q; want [/canarylab] and none", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", cf.Config.User)
	}
	wantLabels := map[string]string{
		"org.opencontainers.image.title":    "canarylab",
		"org.opencontainers.image.source":   "https://github.com/canarylab/canarylab",
		"org.opencontainers.image.version":  "1.2.3",
		"org.opencontainers.image.revision": "0123456789abcdef",
		"org.opencontainers.image.licenses": "NOASSERTION",
	}
	if !maps.Equal(cf.Config.Labels, wantLabels) {
		t.Errorf("labels %v, want %v", cf.Config.Labels, wantLabels)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if !cf.Created.Equal(time.Unix(0, 0)) {
		t.Errorf("created %v, want the epoch (reproducible)", cf.Created)
	}
	if len(cf.History) != 1 || len(cf.RootFS.DiffIDs) != 1 {
		t.Errorf("%d history entries and %d diff IDs, want 1 and 1", len(cf.History), len(cf.RootFS.DiffIDs))
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	if mt, _ := layers[0].MediaType(); mt != types.OCILayer {
		t.Errorf("layer media type %s, want %s", mt, types.OCILayer)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var entries []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, hdr.Name)
		if hdr.Name != "canarylab" {
			continue
		}
		if hdr.Typeflag != tar.TypeReg || hdr.Mode != 0o755 || hdr.Uid != 0 || hdr.Gid != 0 {
			t.Errorf("/canarylab: type %c mode %o uid %d gid %d, want a regular file, 0755, root's", hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid)
		}
		got, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("/canarylab holds %d bytes, not the %d of the binary", len(got), len(want))
		}
	}
	if !slices.Equal(entries, []string{"canarylab"}) {
		t.Errorf("the layer holds %q, want only canarylab", entries)
	}

	// The same binary and meta give the same image.
	again, err := Build(bin, meta())
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("two builds differ: %s and %s", d1, d2)
	}
}

func TestWrite(t *testing.T) {
	img, err := Build(staticBinary(t), meta())
	if err != nil {
		t.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "layout")
	if err := Write(img, dir); err != nil {
		t.Fatal(err)
	}
	if err := Write(img, dir); err == nil {
		t.Error("Write into a layout that is not empty: no error")
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("the layout's index lists %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	if desc.Digest != digest || desc.Annotations[RefName] != "1.2.3" || desc.Platform == nil || desc.Platform.Architecture != runtime.GOARCH {
		t.Errorf("index entry %+v: want digest %s, ref.name 1.2.3, platform linux/%s", desc, digest, runtime.GOARCH)
	}
	back, err := p.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(back); err != nil {
		t.Errorf("the image read back from the layout: %v", err)
	}

	file := filepath.Join(t.TempDir(), "image.tar")
	if err := WriteTarball(img, file); err != nil {
		t.Fatal(err)
	}
	fromTar, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(fromTar); err != nil {
		t.Errorf("the image read back from the tarball: %v", err)
	}
	c1, _ := img.ConfigName()
	c2, _ := fromTar.ConfigName()
	if c1 != c2 {
		t.Errorf("the tarball's config is %s, want %s", c2, c1)
	}
	// docker load tags it from manifest.json.
	manifest := readTarFile(t, file, "manifest.json")
	var entries []struct{ RepoTags []string }
	if err := json.Unmarshal(manifest, &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || !slices.Equal(entries[0].RepoTags, []string{"canarylab/canarylab:1.2.3"}) {
		t.Errorf("manifest.json %s: want the tag canarylab/canarylab:1.2.3", manifest)
	}
}

func readTarFile(t *testing.T, file, name string) []byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s in %s: %v", name, file, err)
		}
		if hdr.Name == name {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return data
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	bin := staticBinary(t)
	script := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	cases := []struct {
		name    string
		binary  string
		meta    func(*Meta)
		wantErr string
	}{
		{"not ELF", script, nil, "not an ELF executable"},
		{"wrong architecture", bin, func(m *Meta) { m.Platform.Architecture = other }, "not for " + other},
		{"not linux", bin, func(m *Meta) { m.Platform.OS = "windows" }, "linux only"},
		{"no version", bin, func(m *Meta) { m.Version = "" }, "no version"},
		{"missing", filepath.Join(t.TempDir(), "none"), nil, "no such file"},
	}
	// A dynamically linked program of the system, where there is one: it
	// would find no loader on an empty base.
	for _, p := range []string{"/bin/sh", "/usr/bin/env", "/bin/ls"} {
		if data, err := os.ReadFile(p); err == nil && bytes.Contains(data, []byte("ld-linux")) && runtime.GOOS == "linux" {
			cases = append(cases, struct {
				name    string
				binary  string
				meta    func(*Meta)
				wantErr string
			}{"dynamic " + p, p, nil, "dynamically linked"})
			break
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := meta()
			if tc.meta != nil {
				tc.meta(&m)
			}
			_, err := Build(tc.binary, m)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Build: %v; want an error naming %q", err, tc.wantErr)
			}
		})
	}
}

// dockerfile is the final stage of the Dockerfile, instruction by
// instruction (continuation lines joined).
type dockerfile struct {
	from       string
	user       string
	entrypoint []string
	labels     map[string]string
	copies     []string
	build      string // the build stage's instructions, joined
}

func parseDockerfile(t *testing.T, file string) dockerfile {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	var cur strings.Builder
	for _, l := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(l)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	var df dockerfile
	var stages [][]string
	for _, l := range lines {
		if strings.HasPrefix(strings.ToUpper(l), "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], l)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("%s: %d stages, want a build stage and the final one", file, len(stages))
	}
	for _, st := range stages[:len(stages)-1] {
		df.build += strings.Join(st, "\n") + "\n"
	}
	df.labels = map[string]string{}
	labelRE := regexp.MustCompile(`([a-z0-9.]+)=("[^"]*"|\S+)`)
	for _, l := range stages[len(stages)-1] {
		kw, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(kw) {
		case "FROM":
			df.from = rest
		case "USER":
			df.user = rest
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &df.entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT %s: use the exec form (a JSON array): %v", rest, err)
			}
		case "LABEL":
			for _, m := range labelRE.FindAllStringSubmatch(rest, -1) {
				df.labels[m[1]] = strings.Trim(m[2], `"`)
			}
		case "COPY":
			df.copies = append(df.copies, rest)
		}
	}
	return df
}

// TestDockerfileAgrees holds the Dockerfile, for users with a container
// engine, to the image Build makes: the same base, user, entrypoint and
// labels, and a static, trimmed binary.
func TestDockerfileAgrees(t *testing.T) {
	df := parseDockerfile(t, filepath.Join("..", "Dockerfile"))
	if df.from != "scratch" {
		t.Errorf("final stage FROM %s, want scratch (Build's empty base)", df.from)
	}
	if df.user != User {
		t.Errorf("USER %s, want %s", df.user, User)
	}
	if !slices.Equal(df.entrypoint, []string{Entrypoint}) {
		t.Errorf("ENTRYPOINT %q, want [%s]", df.entrypoint, Entrypoint)
	}
	if len(df.copies) != 1 || !strings.HasSuffix(df.copies[0], " "+Entrypoint) || !strings.Contains(df.copies[0], "--chmod=0755") {
		t.Errorf("COPY %q: want one, of the binary to %s with mode 0755", df.copies, Entrypoint)
	}
	want := Labels(Meta{Version: "${VERSION}", Revision: "${REVISION}"})
	if !maps.Equal(df.labels, want) {
		t.Errorf("LABEL %v, want %v", df.labels, want)
	}
	for _, s := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=${VERSION}", "-X main.commit=${REVISION}"} {
		if !strings.Contains(df.build, s) {
			t.Errorf("the build stage does not say %s", s)
		}
	}
}

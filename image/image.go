// Package image builds canarylab's container image without a container
// engine: the image the Dockerfile describes (an empty base, the static
// binary at /canarylab, a non-root user and the OCI labels), assembled with
// go-containerregistry and written as an OCI image layout or a tarball that
// `docker load` and `podman load` read. `make image` runs it.
package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image is, as the Dockerfile says it too (a test holds them to
// it).
const (
	// Repository is the image's name; its tag is the version.
	Repository = "canarylab/canarylab"
	// Entrypoint is where the binary lies and what the image runs.
	Entrypoint = "/canarylab"
	// User is distroless's "nonroot": no shell or passwd file is needed to
	// run as it, and no pod security policy needs root for it.
	User = "65532:65532"
	// DefaultSource is the repository the image is built from.
	DefaultSource = "https://github.com/canarylab/canarylab"
	// DefaultLicenses is SPDX's "no assertion": the repository declares no
	// license yet, and the label must not invent one.
	DefaultLicenses = "NOASSERTION"
)

// The OCI annotation keys the image carries as labels.
const (
	LabelTitle    = "org.opencontainers.image.title"
	LabelSource   = "org.opencontainers.image.source"
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelLicenses = "org.opencontainers.image.licenses"
	// RefName names an image in an OCI layout's index (its tag).
	RefName = "org.opencontainers.image.ref.name"
)

// Meta describes a build.
type Meta struct {
	// Version is the release (the image's tag); Revision the commit.
	Version, Revision string
	// Source defaults to DefaultSource, Licenses to DefaultLicenses.
	Source, Licenses string
	// Platform is the binary's: OS linux (the binary runs on an empty
	// base), Architecture as GOARCH, Variant for arm.
	Platform v1.Platform
	// Created is the image's creation time and the binary's mtime in the
	// layer; zero gives the Unix epoch, so that the same binary and meta
	// always give the same digest.
	Created time.Time
}

// Labels returns the image's labels for meta.
func Labels(meta Meta) map[string]string {
	src, lic := meta.Source, meta.Licenses
	if src == "" {
		src = DefaultSource
	}
	if lic == "" {
		lic = DefaultLicenses
	}
	return map[string]string{
		LabelTitle:    "canarylab",
		LabelSource:   src,
		LabelVersion:  meta.Version,
		LabelRevision: meta.Revision,
		LabelLicenses: lic,
	}
}

// elfMachines maps GOARCH to the ELF machine its binaries are built for.
var elfMachines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM, "386": elf.EM_386,
	"ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV, "loong64": elf.EM_LOONGARCH,
}

// checkBinary refuses what cannot run on an empty base for the platform:
// anything but a statically linked Linux ELF executable of its
// architecture (a dynamic one finds no loader and no libc there).
func checkBinary(data []byte, p v1.Platform) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("ELF type %s is not an executable", f.Type)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (it names an ELF interpreter): build it with CGO_ENABLED=0")
		}
	}
	want, ok := elfMachines[p.Architecture]
	if !ok {
		return fmt.Errorf("unknown architecture %q", p.Architecture)
	}
	if f.Machine != want {
		return fmt.Errorf("built for %s, not for %s (%s)", f.Machine, p.Architecture, want)
	}
	return nil
}

// Build assembles the image from the static binary at binaryPath: an empty
// base and one layer holding the binary at /canarylab (mode 0755, owned by
// root, so that the non-root user can run but not replace it), with the
// entrypoint, user, labels and platform in its config. Media types are
// OCI's.
func Build(binaryPath string, meta Meta) (v1.Image, error) {
	if meta.Version == "" {
		return nil, errors.New("image: no version (the tag and the version label)")
	}
	if meta.Platform.OS != "linux" {
		return nil, fmt.Errorf("image: platform OS %q: canarylab's image is linux only", meta.Platform.OS)
	}
	data, err := os.ReadFile(binaryPath)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	if err := checkBinary(data, meta.Platform); err != nil {
		return nil, fmt.Errorf("image: %s: %w", binaryPath, err)
	}
	created := meta.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC()

	layerTar, err := binaryLayer(data, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}

	// The tarball layer's descriptor carries an empty annotation map, which
	// the manifest's JSON drops: the image in memory would then differ from
	// the one written (go-containerregistry's validate.Image says so). A
	// layer without that descriptor gets one made from its digest, size and
	// media type alone.
	layer = plainLayer{layer}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "COPY canarylab " + Entrypoint + " # canarylab/image",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: created}
	cf.OS = meta.Platform.OS
	cf.Architecture = meta.Platform.Architecture
	cf.Variant = meta.Platform.Variant
	cf.Config.Entrypoint = []string{Entrypoint}
	cf.Config.Cmd = nil
	cf.Config.User = User
	cf.Config.Labels = Labels(meta)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return img, nil
}

// plainLayer is a layer with only v1.Layer's methods.
type plainLayer struct{ v1.Layer }

// binaryLayer is the uncompressed layer: one regular file, the binary.
func binaryLayer(data []byte, mtime time.Time) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     Entrypoint[1:], // layer paths are relative to the root
		Mode:     0o755,
		Size:     int64(len(data)),
		ModTime:  mtime,
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	if _, err := tw.Write(data); err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	return b.Bytes(), nil
}

// Tag returns the image's reference for its version label.
func Tag(img v1.Image) (name.Tag, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return name.Tag{}, err
	}
	return name.NewTag(Repository + ":" + cf.Config.Labels[LabelVersion])
}

// Write writes img as an OCI image layout in dir (which must not exist or
// be empty), the image named by its version in the index, as skopeo,
// crane and podman read it (oci:DIR).
func Write(img v1.Image, dir string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("image: %s is not empty", dir)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	plat := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	if err := p.AppendImage(img,
		layout.WithAnnotations(map[string]string{RefName: cf.Config.Labels[LabelVersion]}),
		layout.WithPlatform(plat)); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	return nil
}

// WriteTarball writes img to file as a tarball tagged
// canarylab/canarylab:<version>, for `docker load -i file`.
func WriteTarball(img v1.Image, file string) error {
	tag, err := Tag(img)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	return nil
}

// Command canarylab-image builds canarylab's container image from a static
// binary without a container engine (make image): a tarball for `docker
// load` and/or an OCI image layout.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/canarylab/canarylab/image"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func main() {
	var (
		meta             image.Meta
		binary, tar, dir string
	)
	flag.StringVar(&binary, "binary", "", "the static linux binary of canarylab (CGO_ENABLED=0)")
	flag.StringVar(&meta.Version, "version", "dev", "version: the image's tag and its version label")
	flag.StringVar(&meta.Revision, "revision", "", "commit the binary was built from")
	flag.StringVar(&meta.Source, "source", image.DefaultSource, "source repository label")
	flag.StringVar(&meta.Licenses, "licenses", image.DefaultLicenses, "licenses label (an SPDX expression)")
	flag.StringVar(&meta.Platform.Architecture, "arch", runtime.GOARCH, "the binary's GOARCH")
	flag.StringVar(&meta.Platform.Variant, "variant", "", "architecture variant (v7 for arm)")
	flag.StringVar(&tar, "tar", "", "write a tarball for docker load here")
	flag.StringVar(&dir, "layout", "", "write an OCI image layout in this directory (absent or empty)")
	flag.Parse()
	meta.Platform.OS = "linux"
	// SOURCE_DATE_EPOCH, where set, dates the image (reproducible builds'
	// convention); otherwise the epoch, so equal inputs give equal digests.
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			fail(fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err))
		}
		meta.Created = time.Unix(sec, 0)
	}
	if binary == "" || (tar == "" && dir == "") {
		fail(fmt.Errorf("give -binary and at least one of -tar and -layout"))
	}
	img, err := image.Build(binary, meta)
	if err != nil {
		fail(err)
	}
	if tar != "" {
		if err := image.WriteTarball(img, tar); err != nil {
			fail(err)
		}
	}
	if dir != "" {
		if err := image.Write(img, dir); err != nil {
			fail(err)
		}
	}
	digest, err := img.Digest()
	if err != nil {
		fail(err)
	}
	tag, _ := image.Tag(img)
	fmt.Printf("%s %s (%s)", tag, digest, v1.Platform{OS: "linux", Architecture: meta.Platform.Architecture, Variant: meta.Platform.Variant}.String())
	for _, out := range []string{tar, dir} {
		if out != "" {
			fmt.Printf(" %s", out)
		}
	}
	fmt.Println()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "canarylab-image:", err)
	os.Exit(1)
}

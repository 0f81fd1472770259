// Command manifests-vendor writes the generated files of manifests/ (make
// manifests-vendor): Flagger's and Istio's manifests copied from the Go
// modules go.mod pins, and each Locust kustomization's plan and locustfile.
// Run it from the repository root.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/canarylab/canarylab/manifests"
)

func main() {
	files, err := manifests.Generate(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "manifests-vendor:", err)
		os.Exit(1)
	}
	for _, f := range files {
		path := filepath.FromSlash(f.Path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "manifests-vendor:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(path, f.Data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "manifests-vendor:", err)
			os.Exit(1)
		}
		fmt.Println(f.Path)
	}
}

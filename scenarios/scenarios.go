// Package scenarios holds canarylab's ready scenarios, embedded in the
// binary: `canarylab run failure-errors` runs scenarios/failure-errors.yaml.
package scenarios

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/canarylab/canarylab/orchestrator/scenario"
)

//go:embed *.yaml
var files embed.FS

// Names lists the ready scenarios, sorted.
func Names() []string {
	entries, _ := fs.ReadDir(files, ".")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	slices.Sort(names)
	return names
}

// Get returns a ready scenario's document.
func Get(name string) ([]byte, error) {
	data, err := files.ReadFile(name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no ready scenario %q (there are %s)", name, strings.Join(Names(), ", "))
	}
	return data, nil
}

// Load returns a ready scenario, parsed and validated.
func Load(name string) (*scenario.Scenario, error) {
	data, err := Get(name)
	if err != nil {
		return nil, err
	}
	s, err := scenario.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("ready scenario %s: %w", name, err)
	}
	return s, nil
}

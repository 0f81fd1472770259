package e2e_test

import (
	"testing"

	"github.com/canarylab/canarylab/e2e/cluster"
)

// TestMain builds the tools and re-executes the tests inside a private
// network namespace; see cluster.Main.
func TestMain(m *testing.M) { cluster.Main(m) }

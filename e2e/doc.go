// Package e2e holds the tests that need real peers: a real Kubernetes
// control plane with the real Flagger (started by package cluster), built
// from pinned Go modules by package tools. The tests run inside a private
// network namespace (cluster.Main), so nothing they start is visible on the
// host; `make e2e-tools` builds the binaries once, `make e2e` runs the tests.
package e2e

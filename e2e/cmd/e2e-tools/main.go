// Command e2e-tools builds the e2e control plane's binaries (see package
// tools) ahead of a test run, so that `make e2e` spends its time on tests and
// a CI log shows the build times apart. It prints the set's directory last.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/canarylab/canarylab/e2e/tools"
)

func main() {
	// Ctrl-C cancels the go builds (they are started with the context) and
	// the half-built directory is removed by tools.Ensure.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	set, err := tools.Ensure(ctx, tools.Options{Logf: func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e-tools:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "e2e tools: ready in %s\n", time.Since(start).Round(100*time.Millisecond))
	fmt.Println(set.Dir)
}

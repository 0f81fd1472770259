// Command canarylab is a testbed for progressive delivery: a flexible mock
// server, a load generator and a canary analysis orchestrator in one binary.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Set at link time (-ldflags "-X main.version=… -X main.commit=…").
var (
	version = "dev"
	commit  = ""
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, a second one kills at once instead of
		// waiting for a graceful drain.
		<-ctx.Done()
		stop()
	}()
	root := newRootCmd(buildInfo{Version: version, Commit: commit})
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "canarylab:", err)
		var ue usageError
		var te thresholdError
		switch {
		case errors.As(err, &ue):
			os.Exit(2)
		case errors.As(err, &te):
			os.Exit(exitThresholds)
		}
		os.Exit(1)
	}
}

// Command baseline is the reference point of the mock server benchmarks: a
// bare net/http server that answers every path exactly as `canarylab mock`
// does with no config (same status, body and headers), with nothing else on
// the hot path: no router, no fault model, no counters, no metrics.
//
//	go run ./bench/baseline -listen 127.0.0.1:18080
//
// It uses the mock command's http.Server timeouts, so idle keep-alive
// connections live as long in both.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/canarylab/canarylab/bench/bare"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18080", "address to listen on (loopback only, please)")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler:           bare.Handler(),
		ReadHeaderTimeout: 10 * time.Second,  // as canarylab mock
		IdleTimeout:       120 * time.Second, // as canarylab mock
	}
	fmt.Fprintf(os.Stderr, "baseline serving http://%s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

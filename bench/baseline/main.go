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
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// body is the mock's default answer with version label v1.
const body = `{"service":"canarylab-mock","version":"v1"}` + "\n"

func handler() http.Handler {
	b := []byte(body)
	n := strconv.Itoa(len(b))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Canarylab-Version", "v1")
		h.Set("Server-Timing", "injected-delay;dur=0")
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", n)
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(b)
		}
	})
}

func main() {
	listen := flag.String("listen", "127.0.0.1:18080", "address to listen on (loopback only, please)")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler:           handler(),
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

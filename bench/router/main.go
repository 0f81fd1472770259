// Command router serves orchestrator/mesh's router in front of two
// backends, as the embedded engine does, for bench/orchestrator.sh to
// measure what the router adds to a request.
package main

import (
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/canarylab/canarylab/orchestrator/mesh"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:21290", "the router's address")
	metrics := flag.String("metrics-listen", "127.0.0.1:21291", "the router's metrics address")
	primary := flag.String("primary", "http://127.0.0.1:21280", "the primary's URL")
	canary := flag.String("canary", "http://127.0.0.1:21282", "the canary's URL")
	weight := flag.Int("canary-weight", 10, "the canary's weight, 0 to 100")
	flag.Parse()
	rt, err := mesh.New(mesh.Config{Namespace: "test",
		Primary: mesh.Backend{Workload: "podinfo-primary", URL: *primary},
		Canary:  mesh.Backend{Workload: "podinfo", URL: *canary}})
	if err != nil {
		log.Fatal(err)
	}
	if err := rt.SetRoutes(100-*weight, *weight, false); err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Addr: *listen, Handler: rt}
	msrv := &http.Server{Addr: *metrics, Handler: rt.MetricsHandler()}
	go func() {
		if err := msrv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		_ = srv.Close()
		_ = msrv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	_ = rt.Close()
}

// Command example is a boomer program moved to canarylab: its task code is
// boomer's (an HTTP GET reported with boomer.RecordSuccess and
// boomer.RecordFailure), and the one changed line is boomercompat.Run
// where the program called boomer.Run. It joins a Locust 2 master with
// boomer's flags:
//
//	locust -f dummy.py --master --headless -u 10 -r 10 -t 30s   # dummy.py: boomercompat.Locustfile("")
//	go run ./loadgen/boomercompat/example --master-host 127.0.0.1 --master-port 5557 --url http://127.0.0.1:8080/
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/myzhan/boomer"

	"github.com/canarylab/canarylab/loadgen/boomercompat"
	"github.com/canarylab/canarylab/loadgen/plan"
)

var (
	target string
	client = &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 2000},
	}
)

// get is boomer task code as teams write it, unchanged.
func get() {
	start := time.Now()
	resp, err := client.Get(target)
	if err != nil {
		boomer.RecordFailure("http", "get", time.Since(start).Milliseconds(), err.Error())
		return
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	elapsed := time.Since(start).Milliseconds()
	switch {
	case err != nil:
		boomer.RecordFailure("http", "get", elapsed, err.Error())
	case resp.StatusCode >= 400:
		boomer.RecordFailure("http", "get", elapsed, fmt.Sprintf("HTTP %d", resp.StatusCode))
	default:
		boomer.RecordSuccess("http", "get", elapsed, n)
	}
}

func main() {
	flag.StringVar(&target, "url", "http://127.0.0.1:8080/", "the URL the task GETs (on this machine)")
	flag.Parse()
	if err := plan.CheckHost(target); err != nil {
		log.Fatalf("--url: %v", err)
	}
	task := &boomer.Task{Name: "get", Weight: 10, Fn: get}
	boomercompat.Run(task) // was: boomer.Run(task)
}

// Command boomer is the peer of the load generator benchmark: boomer
// v1.6.0 (github.com/myzhan/boomer) run standalone, each of its users
// looping over one task that GETs -url with a keep-alive net/http client
// and records the answer with RecordSuccess (or RecordFailure), as boomer's
// own examples/http does. It stops after -duration (time.AfterFunc(d,
// b.Quit)) and prints what it counted:
//
//	requests N failures F elapsed S
//
// With -wait each user sleeps that long after each request: -users 10000
// -wait 60s holds 10,000 idle users for the memory part; "ready N" is
// printed once N requests are done, that is, once every user has made its
// first request and is waiting.
//
//	cd bench/boomer && go run . -url http://127.0.0.1:18080/ -users 32 -duration 10s
//
// It is its own Go module, so canarylab's module never depends on boomer.
// Importing boomer registers global flags (--master-host, --max-rps, …) on
// the standard flag set; this command's flags do not clash with them.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/myzhan/boomer"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:18080/", "URL every request GETs (loopback only, please)")
	users := flag.Int("users", 32, "users (goroutines looping over the task)")
	spawnRate := flag.Float64("spawn-rate", 1000, "users started per second")
	duration := flag.Duration("duration", 10*time.Second, "length of the run, counted from the start of spawning")
	wait := flag.Duration("wait", 0, "sleep after each request (0: none)")
	startDelay := flag.Duration("start-delay", 0, "sleep this long before starting boomer (prints \"started\" then)")
	timeout := flag.Duration("timeout", 10*time.Second, "request timeout")
	maxIdle := flag.Int("max-idle-per-host", 0, "idle keep-alive connections kept (0: as many as users; net/http's default is 2)")
	flag.Parse()

	if *maxIdle <= 0 {
		*maxIdle = max(*users, 2)
	}
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: *maxIdle, DisableCompression: true},
		Timeout:   *timeout,
	}
	var requests, failures atomic.Int64
	var b *boomer.Boomer
	task := &boomer.Task{
		Name:   "get",
		Weight: 1,
		Fn: func() {
			start := time.Now()
			resp, err := client.Get(*url)
			if err != nil {
				failures.Add(1)
				b.RecordFailure("GET", "/", time.Since(start).Milliseconds(), err.Error())
			} else {
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				b.RecordSuccess("GET", "/", time.Since(start).Milliseconds(), n)
			}
			requests.Add(1)
			if *wait > 0 {
				time.Sleep(*wait)
			}
		},
	}

	if *startDelay > 0 {
		time.Sleep(*startDelay)
	}
	fmt.Println("started")
	b = boomer.NewStandaloneBoomer(*users, *spawnRate)
	if *wait > 0 {
		go func() {
			for requests.Load() < int64(*users) {
				time.Sleep(50 * time.Millisecond)
			}
			fmt.Printf("ready %d\n", *users)
		}()
	}
	begin := time.Now()
	var once sync.Once
	time.AfterFunc(*duration, func() { once.Do(b.Quit) })
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		once.Do(b.Quit)
	}()
	b.Run(task)
	elapsed := time.Since(begin)
	fmt.Printf("requests %d failures %d elapsed %.3f\n", requests.Load(), failures.Load(), elapsed.Seconds())
	if failures.Load() > 0 {
		log.Printf("%d requests failed", failures.Load())
	}
	os.Exit(0)
}

// Command conns opens N keep-alive HTTP/1.1 connections to a server, sends
// one GET on each so the server holds them as idle keep-alive connections,
// prints "ready N" on stdout, and then holds them open until it is
// signalled (SIGINT, SIGTERM) or -hold runs out. It is the memory benchmark's
// client: the server's RSS is read while these connections sit idle.
//
//	go run ./bench/conns -addr 127.0.0.1:18080 -n 10000
//
// The caller raises the open-file limit (ulimit -n) first; Go raises the soft
// limit to the hard one by itself, so -n can go up to about that.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "server address (host:port, loopback)")
	n := flag.Int("n", 10000, "connections to open")
	path := flag.String("path", "/", "path of the one request sent on each connection")
	par := flag.Int("parallel", 64, "connections being opened at once")
	hold := flag.Duration("hold", 10*time.Minute, "how long to hold the connections at most")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	req := []byte("GET " + *path + " HTTP/1.1\r\nHost: " + *addr + "\r\nUser-Agent: canarylab-bench-conns\r\n\r\n")
	conns := make([]net.Conn, *n)
	var failed atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, *par)
	var wg sync.WaitGroup
	d := net.Dialer{Timeout: 10 * time.Second}
	for i := range conns {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := open(ctx, &d, *addr, req)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			conns[i] = c
		}(i)
	}
	wg.Wait()
	opened := 0
	for _, c := range conns {
		if c != nil {
			opened++
		}
	}
	if f := failed.Load(); f > 0 {
		fmt.Fprintf(os.Stderr, "conns: %d of %d connections failed, first error: %v\n", f, *n, firstErr.Load())
	}
	fmt.Printf("ready %d\n", opened)
	if opened == *n {
		select {
		case <-ctx.Done():
		case <-time.After(*hold):
		}
	}
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
	if opened < *n {
		os.Exit(1)
	}
}

// open dials addr, sends one request and reads its whole response, leaving
// the connection idle and open.
func open(ctx context.Context, d *net.Dialer, addr string, req []byte) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		_ = c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 1024), nil)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_ = c.Close()
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

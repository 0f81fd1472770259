package mockserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Running is a server listening on its two ports.
type Running struct {
	Server *Server
	main   *http.Server
	admin  *http.Server
	mainLn net.Listener
	admLn  net.Listener
	errs   chan error
}

// Start listens on addr and adminAddr ("127.0.0.1:0" picks a free port) and
// serves in the background until Shutdown.
func Start(s *Server, addr, adminAddr string) (*Running, error) {
	mainLn, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	admLn, err := net.Listen("tcp", adminAddr)
	if err != nil {
		_ = mainLn.Close()
		return nil, fmt.Errorf("listen admin %s: %w", adminAddr, err)
	}
	settings := s.Config().Server
	r := &Running{
		Server: s,
		main: &http.Server{
			Handler:           s.Handler(),
			ReadHeaderTimeout: settings.readHeaderTimeout(),
			IdleTimeout:       settings.idleTimeout(),
		},
		admin: &http.Server{
			Handler:           s.AdminHandler(),
			ReadHeaderTimeout: settings.readHeaderTimeout(),
			IdleTimeout:       settings.idleTimeout(),
		},
		mainLn: mainLn,
		admLn:  admLn,
		errs:   make(chan error, 2),
	}
	go r.serve(r.main, mainLn)
	go r.serve(r.admin, admLn)
	return r, nil
}

func (r *Running) serve(srv *http.Server, ln net.Listener) {
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	r.errs <- err
}

// Addr is the main listener's address.
func (r *Running) Addr() string { return r.mainLn.Addr().String() }

// AdminAddr is the admin listener's address.
func (r *Running) AdminAddr() string { return r.admLn.Addr().String() }

// URL is the base URL of the main listener.
func (r *Running) URL() string { return "http://" + r.Addr() }

// AdminURL is the base URL of the admin listener.
func (r *Running) AdminURL() string { return "http://" + r.AdminAddr() }

// Errors delivers a listener's failure (nil after a clean shutdown).
func (r *Running) Errors() <-chan error { return r.errs }

// Shutdown stops accepting, ends hangs and slow bodies, and lets requests in
// flight finish until ctx ends; then it closes what is left.
func (r *Running) Shutdown(ctx context.Context) error {
	r.Server.SetReady(false)
	r.Server.Close()
	err := r.main.Shutdown(ctx)
	if err != nil {
		_ = r.main.Close()
	}
	if aerr := r.admin.Shutdown(ctx); aerr != nil {
		_ = r.admin.Close()
		err = errors.Join(err, aerr)
	}
	if err != nil {
		return fmt.Errorf("shut down mock server: %w", err)
	}
	return nil
}

// ShutdownTimeout is the drain time the config allows.
func (r *Running) ShutdownTimeout() time.Duration {
	return r.Server.Config().Server.shutdownTimeout()
}

// WatchFile calls onChange whenever path changes, until ctx ends. It
// watches the directory, so an editor's rename-and-replace and a
// Kubernetes ConfigMap's symlink swap are both seen; bursts of events are
// folded into one call.
func WatchFile(ctx context.Context, path string, onChange func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := w.Add(dir); err != nil {
		_ = w.Close()
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	base := filepath.Base(path)
	go func() {
		defer w.Close()
		var debounce <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				name := filepath.Base(ev.Name)
				if name == base || name == "..data" {
					debounce = time.After(150 * time.Millisecond)
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
			case <-debounce:
				debounce = nil
				onChange()
			}
		}
	}()
	return nil
}

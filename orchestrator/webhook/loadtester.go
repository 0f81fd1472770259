package webhook

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Loadtester stands in for flagger-loadtester (pkg/loadtester/server.go)
// on this machine: the same endpoints with the same statuses and bodies,
// gates and rollback switches kept in memory per "<name>.<namespace>",
// and the load task endpoint accepting "cmd" tasks without running them
// (canarylab drives traffic from the scenario's load, not from hey).
// Scenario actions flip the switches through OpenGate and friends, as a
// user would with curl. It is an http.Handler, safe for concurrent use.
type Loadtester struct {
	log *slog.Logger
	mux *http.ServeMux

	mu        sync.Mutex
	gates     map[string]bool
	rollbacks map[string]bool
	warned    map[string]bool // commands already warned about
	calls     []Received
}

// Received is one request the Loadtester answered, for tests and reports.
// Name, Namespace and Phase come from the body when it is a payload.
type Received struct {
	Path      string
	Name      string
	Namespace string
	Phase     string
	Status    int
	Time      time.Time
}

// NewLoadtester returns a Loadtester with every gate and rollback switch
// closed. logger receives what flagger-loadtester would log (nil:
// discarded).
func NewLoadtester(logger *slog.Logger) *Loadtester {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	lt := &Loadtester{
		log:       logger,
		mux:       http.NewServeMux(),
		gates:     map[string]bool{},
		rollbacks: map[string]bool{},
		warned:    map[string]bool{},
	}
	// Like the real server, no route checks the method.
	lt.route("/healthz", func(*Payload, error) (int, string) { return http.StatusOK, "OK" })
	lt.route("/gate/approve", func(*Payload, error) (int, string) { return http.StatusOK, "OK" })
	lt.route("/gate/halt", func(*Payload, error) (int, string) { return http.StatusForbidden, "Forbidden" })
	lt.route("/gate/check", lt.check(lt.gates, "gate check"))
	lt.route("/gate/open", lt.set(lt.gates, true, "gate opened"))
	lt.route("/gate/close", lt.set(lt.gates, false, "gate closed"))
	lt.route("/rollback/check", lt.check(lt.rollbacks, "rollback check"))
	lt.route("/rollback/open", lt.set(lt.rollbacks, true, "rollback opened"))
	lt.route("/rollback/close", lt.set(lt.rollbacks, false, "rollback closed"))
	lt.route("/", lt.task)
	return lt
}

// ServeHTTP answers as flagger-loadtester would.
func (lt *Loadtester) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	lt.mux.ServeHTTP(w, r)
}

// endpoint answers a request from its decoded payload (or the error
// decoding it) with a status and a body.
type endpoint func(p *Payload, decodeErr error) (status int, body string)

// route reads and decodes the body once, answers, and records the call.
func (lt *Loadtester) route(pattern string, ep endpoint) {
	lt.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p := &Payload{}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			err = fmt.Errorf("reading the request body: %w", err)
		} else if err = json.Unmarshal(b, p); err != nil {
			err = fmt.Errorf("decoding the request body: %w", err)
		}
		status, body := ep(p, err)
		lt.mu.Lock()
		lt.calls = append(lt.calls, Received{
			Path: r.URL.Path, Name: p.Name, Namespace: p.Namespace, Phase: string(p.Phase),
			Status: status, Time: time.Now(),
		})
		lt.mu.Unlock()
		w.WriteHeader(status)
		if body != "" {
			_, _ = io.WriteString(w, body)
		}
	})
}

func key(name, namespace string) string { return name + "." + namespace }

// badBody is the real loadtester's answer to an unreadable payload: 400,
// no body.
func (lt *Loadtester) badBody(err error) (int, string) {
	lt.log.Error("flagger-loadtester: bad request", "error", err)
	return http.StatusBadRequest, ""
}

// check answers 200 "Approved" when the switch is open, else 403
// "Forbidden" (the text Flagger then shows in its events).
func (lt *Loadtester) check(switches map[string]bool, what string) endpoint {
	return func(p *Payload, err error) (int, string) {
		if err != nil {
			return lt.badBody(err)
		}
		k := key(p.Name, p.Namespace)
		lt.mu.Lock()
		open := switches[k]
		lt.mu.Unlock()
		lt.log.Info(fmt.Sprintf("%s %s: approved %v", k, what, open))
		if open {
			return http.StatusOK, "Approved"
		}
		return http.StatusForbidden, "Forbidden"
	}
}

// set opens or closes a switch and answers 202 with no body, as the real
// loadtester does.
func (lt *Loadtester) set(switches map[string]bool, open bool, what string) endpoint {
	return func(p *Payload, err error) (int, string) {
		if err != nil {
			return lt.badBody(err)
		}
		k := key(p.Name, p.Namespace)
		lt.mu.Lock()
		switches[k] = open
		lt.mu.Unlock()
		lt.log.Info(k + " " + what)
		return http.StatusAccepted, ""
	}
}

// task is POST /: a load task. "cmd" (the default type) is accepted with
// 202 as the real loadtester does before running it in the background;
// here nothing runs, and a warning per distinct command says so.
func (lt *Loadtester) task(p *Payload, err error) (int, string) {
	if err != nil {
		return lt.badBody(err)
	}
	if len(p.Metadata) == 0 {
		return http.StatusBadRequest, "metadata not found in payload"
	}
	typ, ok := p.Metadata["type"]
	if !ok {
		typ = "cmd"
	}
	switch typ {
	case "cmd":
		cmd, ok := p.Metadata["cmd"]
		if !ok {
			return http.StatusBadRequest, "cmd not found in metadata"
		}
		lt.mu.Lock()
		first := !lt.warned[cmd]
		lt.warned[cmd] = true
		lt.mu.Unlock()
		if first {
			lt.log.Warn("the embedded flagger-loadtester does not execute commands; the scenario's load drives traffic instead",
				"canary", key(p.Name, p.Namespace), "cmd", cmd)
		}
		return http.StatusAccepted, ""
	case "bash", "helm", "helmv3", "kubectl", "concord", "ngrinder":
		// The real loadtester runs these to completion (or delegates
		// ngrinder); a 400 makes the hook fail with this text in the event.
		return http.StatusBadRequest, fmt.Sprintf("task type %s is not supported by canarylab's embedded flagger-loadtester, "+
			"which runs no commands: drive traffic with the scenario's load and approve with /gate/check or /rollback/check", typ)
	default:
		return http.StatusBadRequest, "unknown task type " + typ
	}
}

// OpenGate opens name.namespace's gate, like POST /gate/open: /gate/check
// then approves.
func (lt *Loadtester) OpenGate(name, namespace string) { lt.flip(lt.gates, name, namespace, true) }

// CloseGate closes name.namespace's gate, like POST /gate/close.
func (lt *Loadtester) CloseGate(name, namespace string) { lt.flip(lt.gates, name, namespace, false) }

// OpenRollback opens name.namespace's rollback switch, like POST
// /rollback/open: /rollback/check then signals a rollback.
func (lt *Loadtester) OpenRollback(name, namespace string) {
	lt.flip(lt.rollbacks, name, namespace, true)
}

// CloseRollback closes name.namespace's rollback switch, like POST
// /rollback/close.
func (lt *Loadtester) CloseRollback(name, namespace string) {
	lt.flip(lt.rollbacks, name, namespace, false)
}

// GateOpen reports whether name.namespace's gate is open.
func (lt *Loadtester) GateOpen(name, namespace string) bool {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	return lt.gates[key(name, namespace)]
}

// RollbackOpen reports whether name.namespace's rollback switch is open.
func (lt *Loadtester) RollbackOpen(name, namespace string) bool {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	return lt.rollbacks[key(name, namespace)]
}

func (lt *Loadtester) flip(switches map[string]bool, name, namespace string, open bool) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	switches[key(name, namespace)] = open
}

// Calls returns the requests answered so far, oldest first (a copy).
func (lt *Loadtester) Calls() []Received {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	return slices.Clone(lt.calls)
}

// Package plan is the load plan: user classes with weights, each a set of
// weighted tasks (HTTP requests) and a wait time between them, as a
// Locust locustfile describes them. The same plan drives the standalone
// runner and the Locust worker, and generates the master's locustfile, so
// user class names always match.
package plan

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/canarylab/canarylab/mockserver/behavior"
	"github.com/canarylab/canarylab/mockserver/strictyaml"
)

// Plan is a whole load plan.
//
//	host: http://127.0.0.1:8080
//	users:
//	- name: Browser
//	  weight: 3
//	  wait: between(500ms, 1s)
//	  tasks:
//	  - {weight: 5, request: {path: /}}
//	  - {weight: 1, request: {method: POST, path: /orders, body: '{"id": 1}', expect: [201]}}
type Plan struct {
	// Host is the base URL requests go to; --host wins over it.
	Host string `json:"host,omitempty"`
	// Users are the user classes; a user is one class, chosen by weight.
	Users []UserClass `json:"users"`
}

// UserClass is one kind of simulated user (a Locust User class).
type UserClass struct {
	// Name is the class name a Locust master knows it by: a Python
	// identifier, unique in the plan.
	Name   string `json:"name"`
	Weight int    `json:"weight,omitempty"`
	// Host overrides the plan's host for this class.
	Host string `json:"host,omitempty"`
	// Wait is the time between two tasks of one user (default: none).
	Wait  Wait   `json:"wait,omitzero"`
	Tasks []Task `json:"tasks"`
}

// Task is one thing a user does: an HTTP request, chosen by weight.
type Task struct {
	Name    string  `json:"name,omitempty"`
	Weight  int     `json:"weight,omitempty"`
	Request Request `json:"request"`
}

// Request is an HTTP request and what counts as its success.
type Request struct {
	Method  string            `json:"method,omitempty"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
	// Name groups requests in the statistics (default: the path without
	// its query), as Locust's name= does.
	Name string `json:"name,omitempty"`
	// Expect lists the statuses that count as success: codes (200) or
	// classes ("2xx"). Default: any status below 400.
	Expect []Status `json:"expect,omitempty"`
	// Timeout bounds the request (default DefaultTimeout).
	Timeout behavior.Duration `json:"timeout,omitempty"`
}

// DefaultTimeout bounds a request whose plan gives no timeout.
const DefaultTimeout = 30 * time.Second

// Status is an expected status: a code, or a class such as "2xx".
type Status struct {
	Code  int
	Class int // 1..5 for "1xx".."5xx"; 0 for an exact code
}

// UnmarshalJSON reads 200 or "2xx".
func (s *Status) UnmarshalJSON(b []byte) error {
	var code int
	if err := json.Unmarshal(b, &code); err == nil {
		if code < 100 || code > 599 {
			return fmt.Errorf("%d is not an HTTP status (100–599)", code)
		}
		*s = Status{Code: code}
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return fmt.Errorf("must be a status code such as 200 or a class such as \"2xx\"")
	}
	parsed, err := ParseStatus(str)
	if err != nil {
		return err
	}
	*s = parsed
	return nil
}

// MarshalJSON writes the code or the class.
func (s Status) MarshalJSON() ([]byte, error) {
	if s.Class > 0 {
		return json.Marshal(s.String())
	}
	return json.Marshal(s.Code)
}

func (s Status) String() string {
	if s.Class > 0 {
		return fmt.Sprintf("%dxx", s.Class)
	}
	return strconv.Itoa(s.Code)
}

// ParseStatus reads "200" or "2xx".
func ParseStatus(str string) (Status, error) {
	str = strings.ToLower(strings.TrimSpace(str))
	if len(str) == 3 && strings.HasSuffix(str, "xx") && str[0] >= '1' && str[0] <= '5' {
		return Status{Class: int(str[0] - '0')}, nil
	}
	code, err := strconv.Atoi(str)
	if err != nil || code < 100 || code > 599 {
		return Status{}, fmt.Errorf("%q is not a status: write a code such as 200 or a class such as 2xx", str)
	}
	return Status{Code: code}, nil
}

// Matches reports whether code is this expected status.
func (s Status) Matches(code int) bool {
	if s.Class > 0 {
		return code/100 == s.Class
	}
	return code == s.Code
}

// Succeeded reports whether a response with code counts as a success.
func (r Request) Succeeded(code int) bool {
	if len(r.Expect) == 0 {
		return code > 0 && code < 400
	}
	for _, s := range r.Expect {
		if s.Matches(code) {
			return true
		}
	}
	return false
}

// StatsName is the name the request's statistics are grouped under.
func (r Request) StatsName() string {
	if r.Name != "" {
		return r.Name
	}
	p, _, _ := strings.Cut(r.Path, "?")
	return p
}

// HTTPMethod is the method, GET by default.
func (r Request) HTTPMethod() string {
	if r.Method == "" {
		return http.MethodGet
	}
	return strings.ToUpper(r.Method)
}

// Default is the plan used when none is given: one user class that GETs /.
func Default() Plan {
	return Plan{Users: []UserClass{{Name: "DefaultUser", Weight: 1, Tasks: []Task{{Name: "index", Weight: 1, Request: Request{Path: "/"}}}}}}
}

// Parse reads a plan from YAML or JSON, strictly, and validates it.
func Parse(data []byte) (Plan, error) {
	var p Plan
	if err := strictyaml.Decode(data, &p); err != nil {
		return Plan{}, err
	}
	if err := p.Validate(); err != nil {
		return Plan{}, err
	}
	return p, nil
}

// Load reads and validates a plan file.
func Load(path string) (Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Plan{}, fmt.Errorf("read load plan: %w", err)
	}
	p, err := Parse(data)
	if err != nil {
		return Plan{}, fmt.Errorf("load plan %s: %w", path, err)
	}
	return p, nil
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// pythonKeywords cannot name a class in the master's locustfile.
var pythonKeywords = map[string]bool{
	"False": true, "None": true, "True": true, "and": true, "as": true, "assert": true, "async": true,
	"await": true, "break": true, "class": true, "continue": true, "def": true, "del": true, "elif": true,
	"else": true, "except": true, "finally": true, "for": true, "from": true, "global": true, "if": true,
	"import": true, "in": true, "is": true, "lambda": true, "nonlocal": true, "not": true, "or": true,
	"pass": true, "raise": true, "return": true, "try": true, "while": true, "with": true, "yield": true,
}

// Validate checks the plan and names every bad field.
func (p Plan) Validate() error {
	var errs strictyaml.FieldErrors
	if p.Host != "" {
		if err := CheckHost(p.Host); err != nil {
			errs = append(errs, strictyaml.FieldError{Field: "host", Message: err.Error()})
		}
	}
	if len(p.Users) == 0 {
		errs = append(errs, strictyaml.FieldError{Field: "users", Message: "must list at least one user class, such as {name: WebUser, tasks: [{request: {path: /}}]}"})
	}
	seen := map[string]int{}
	for i, u := range p.Users {
		f := fmt.Sprintf("users[%d]", i)
		switch {
		case !identifier.MatchString(u.Name):
			errs = append(errs, strictyaml.FieldError{Field: f + ".name", Message: fmt.Sprintf("%q must be an identifier (letters, digits, _; not starting with a digit): a Locust master knows the class by it", u.Name)})
		case pythonKeywords[u.Name] || strings.HasPrefix(u.Name, "_canarylab"):
			errs = append(errs, strictyaml.FieldError{Field: f + ".name", Message: fmt.Sprintf("%q cannot name a class in the master's locustfile (a Python keyword, or reserved): choose another name", u.Name)})
		}
		if j, dup := seen[u.Name]; dup {
			errs = append(errs, strictyaml.FieldError{Field: f + ".name", Message: fmt.Sprintf("%q is already the name of users[%d]", u.Name, j)})
		}
		seen[u.Name] = i
		if u.Weight < 0 {
			errs = append(errs, strictyaml.FieldError{Field: f + ".weight", Message: "must not be negative (0 means 1)"})
		}
		if u.Host != "" {
			if err := CheckHost(u.Host); err != nil {
				errs = append(errs, strictyaml.FieldError{Field: f + ".host", Message: err.Error()})
			}
		}
		errs = append(errs, strictyaml.Prefix(f+".wait", u.Wait.validate())...)
		if len(u.Tasks) == 0 {
			errs = append(errs, strictyaml.FieldError{Field: f + ".tasks", Message: "must list at least one task, such as {request: {path: /}}"})
		}
		for j, t := range u.Tasks {
			tf := fmt.Sprintf("%s.tasks[%d]", f, j)
			if t.Weight < 0 {
				errs = append(errs, strictyaml.FieldError{Field: tf + ".weight", Message: "must not be negative (0 means 1)"})
			}
			errs = append(errs, strictyaml.Prefix(tf+".request", t.Request.validate())...)
		}
	}
	return errs.Err()
}

func (r Request) validate() []strictyaml.FieldError {
	var errs []strictyaml.FieldError
	if !strings.HasPrefix(r.Path, "/") {
		errs = append(errs, strictyaml.FieldError{Field: "path", Message: fmt.Sprintf("must start with / (got %q); the host comes from --host or the plan's host", r.Path)})
	} else if _, err := url.ParseRequestURI(r.Path); err != nil {
		errs = append(errs, strictyaml.FieldError{Field: "path", Message: fmt.Sprintf("is not a valid path: %v", err)})
	}
	if r.Method != "" {
		for _, c := range r.Method {
			if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') {
				errs = append(errs, strictyaml.FieldError{Field: "method", Message: fmt.Sprintf("%q is not an HTTP method", r.Method)})
				break
			}
		}
	}
	keys := make([]string, 0, len(r.Headers))
	for k := range r.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			errs = append(errs, strictyaml.FieldError{Field: "headers." + k, Message: "is not a valid header name"})
		}
	}
	if r.Timeout < 0 {
		errs = append(errs, strictyaml.FieldError{Field: "timeout", Message: "must not be negative"})
	}
	return errs
}

// CheckHost refuses a base URL that is not http(s) on this machine: load
// only ever goes to loopback addresses (127.0.0.0/8, ::1, localhost). In a
// Kubernetes pod (KUBERNETES_SERVICE_HOST is set in every pod) it also
// accepts a service of the cluster by its full internal name,
// <service>.<namespace>.svc.cluster.local: canarylab's workers load the
// canary's service, never a host outside the cluster.
func CheckHost(host string) error {
	u, err := url.Parse(host)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q must be a base URL such as http://127.0.0.1:8080", host)
	}
	if IsClusterService(u.Hostname()) {
		if os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
			return fmt.Errorf("%q is a Kubernetes service: canarylab loads it only from a pod of the cluster", host)
		}
		return nil
	}
	if !isLoopback(u.Hostname()) {
		return fmt.Errorf("%q is not on this machine: canarylab only sends load to loopback addresses (127.0.0.0/8, ::1, localhost)", host)
	}
	return nil
}

// IsClusterService reports whether h is a Kubernetes service's full
// internal name, <service>.<namespace>.svc.cluster.local.
func IsClusterService(h string) bool {
	rest, ok := strings.CutSuffix(h, ".svc.cluster.local")
	if !ok {
		return false
	}
	svc, ns, ok := strings.Cut(rest, ".")
	return ok && dnsLabel(svc) && dnsLabel(ns)
}

func dnsLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func isLoopback(h string) bool {
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	if strings.HasPrefix(h, "127.") {
		parts := strings.Split(h, ".")
		if len(parts) != 4 {
			return false
		}
		for _, p := range parts {
			if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 255 {
				return false
			}
		}
		return true
	}
	return h == "::1"
}

// Wait is the time a user waits between two tasks, Locust's wait_time:
//
//	none                      no wait
//	constant(1s)              always 1 s
//	between(500ms, 2s)        uniform between the two
//	constantThroughput(2)     at most 2 tasks a second per user, the wait filling up the rest
//	constantPacing(1s)        a task every 1 s per user (1 / constantThroughput)
type Wait struct {
	Kind WaitKind
	// Min and Max are constant's wait (Min), between's bounds, or
	// constantPacing's period (Min).
	Min, Max time.Duration
	// Rate is constantThroughput's tasks per second.
	Rate float64
}

// WaitKind names a wait time function.
type WaitKind string

// The wait kinds.
const (
	WaitNone               WaitKind = ""
	WaitConstant           WaitKind = "constant"
	WaitBetween            WaitKind = "between"
	WaitConstantThroughput WaitKind = "constantThroughput"
	WaitConstantPacing     WaitKind = "constantPacing"
)

// IsZero reports no wait.
func (w Wait) IsZero() bool { return w.Kind == WaitNone }

// ParseWait reads a wait in the forms above.
func ParseWait(s string) (Wait, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return Wait{}, nil
	}
	open := strings.IndexByte(s, '(')
	if open < 0 || !strings.HasSuffix(s, ")") {
		return Wait{}, fmt.Errorf("%q: write none, constant(1s), between(500ms,2s), constantThroughput(2) or constantPacing(1s)", s)
	}
	name := strings.TrimSpace(s[:open])
	var args []string
	for _, a := range strings.Split(s[open+1:len(s)-1], ",") {
		args = append(args, strings.TrimSpace(a))
	}
	dur := func(a string) (time.Duration, error) {
		d, err := behavior.ParseDuration(a)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		return d, nil
	}
	var w Wait
	var err error
	switch strings.ToLower(name) {
	case "constant":
		if len(args) != 1 {
			return Wait{}, fmt.Errorf("constant takes one duration, such as constant(1s)")
		}
		w.Kind = WaitConstant
		w.Min, err = dur(args[0])
	case "between":
		if len(args) != 2 {
			return Wait{}, fmt.Errorf("between takes two durations, such as between(500ms, 2s)")
		}
		w.Kind = WaitBetween
		if w.Min, err = dur(args[0]); err == nil {
			w.Max, err = dur(args[1])
		}
	case "constantthroughput":
		if len(args) != 1 {
			return Wait{}, fmt.Errorf("constantThroughput takes tasks per second, such as constantThroughput(2)")
		}
		w.Kind = WaitConstantThroughput
		w.Rate, err = strconv.ParseFloat(args[0], 64)
		if err != nil {
			err = fmt.Errorf("constantThroughput: %q is not a number of tasks per second", args[0])
		}
	case "constantpacing":
		if len(args) != 1 {
			return Wait{}, fmt.Errorf("constantPacing takes a period, such as constantPacing(1s)")
		}
		w.Kind = WaitConstantPacing
		w.Min, err = dur(args[0])
	default:
		return Wait{}, fmt.Errorf("unknown wait %q: use none, constant, between, constantThroughput or constantPacing", name)
	}
	if err != nil {
		return Wait{}, err
	}
	if errs := w.validate(); len(errs) > 0 {
		return Wait{}, errs[0]
	}
	return w, nil
}

func (w Wait) validate() []strictyaml.FieldError {
	switch w.Kind {
	case WaitBetween:
		if w.Max < w.Min {
			return []strictyaml.FieldError{{Message: fmt.Sprintf("between's maximum %s is below its minimum %s", w.Max, w.Min)}}
		}
	case WaitConstantThroughput:
		if !(w.Rate > 0) {
			return []strictyaml.FieldError{{Message: fmt.Sprintf("constantThroughput needs a positive number of tasks per second, got %v", w.Rate)}}
		}
	case WaitConstantPacing:
		if w.Min <= 0 {
			return []strictyaml.FieldError{{Message: "constantPacing needs a positive period"}}
		}
	}
	return nil
}

func (w Wait) String() string {
	switch w.Kind {
	case WaitConstant, WaitConstantPacing:
		return fmt.Sprintf("%s(%s)", w.Kind, behavior.FormatDuration(w.Min))
	case WaitBetween:
		return fmt.Sprintf("between(%s,%s)", behavior.FormatDuration(w.Min), behavior.FormatDuration(w.Max))
	case WaitConstantThroughput:
		return fmt.Sprintf("constantThroughput(%s)", strconv.FormatFloat(w.Rate, 'g', -1, 64))
	}
	return "none"
}

// UnmarshalJSON reads the string form.
func (w *Wait) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("must be a string such as \"between(500ms, 2s)\"")
	}
	parsed, err := ParseWait(s)
	if err != nil {
		return err
	}
	*w = parsed
	return nil
}

// MarshalJSON writes the string form.
func (w Wait) MarshalJSON() ([]byte, error) { return json.Marshal(w.String()) }

// Next returns how long to wait after a task that took elapsed, given a
// uniform draw u in [0, 1) (used by between).
func (w Wait) Next(elapsed time.Duration, u float64) time.Duration {
	switch w.Kind {
	case WaitConstant:
		return w.Min
	case WaitBetween:
		return w.Min + time.Duration(u*float64(w.Max-w.Min))
	case WaitConstantThroughput:
		return max(0, time.Duration(float64(time.Second)/w.Rate)-elapsed)
	case WaitConstantPacing:
		return max(0, w.Min-elapsed)
	}
	return 0
}

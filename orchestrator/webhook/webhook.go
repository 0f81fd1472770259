// Package webhook calls a canary's analysis webhooks the way Flagger's
// controller does (pkg/controller/webhook.go) and embeds a stand-in for
// flagger-loadtester, so a scenario written for a cluster keeps its hooks,
// gates and rollback switches when canarylab runs it on one machine.
//
// Calling: a hook is a JSON POST through hashicorp/go-retryablehttp
// v0.7.8 (Flagger's client) with Flagger's timeout rule, retry policy and
// success rule (status ≤ 202), and the error texts Flagger puts in its
// events: the response body for a refusal, "POST <url> giving up after N
// attempt(s)" when retries run out. Only loopback targets are called;
// Rewrite maps the conventional http://flagger-loadtester.<ns>/ address to
// the embedded Loadtester.
//
// The embedded Loadtester answers the gate and rollback endpoints from
// memory, exactly as flagger-loadtester does, and accepts but does not run
// load commands: in canarylab the scenario's load drives traffic.
package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/canarylab/canarylab/orchestrator/analysis"
)

// Flagger versions whose webhook behaviour differs (only in the event
// hooks' timeout, and 1.36 has no disableTLS field).
const (
	Version144 = "1.44"
	Version136 = "1.36"
)

// defaultTimeout is Flagger's webhook timeout when none (or a one-character
// one) is set.
const defaultTimeout = "10s"

// eventTimeout136 is the timeout Flagger v1.36 hard-codes for event hooks,
// whatever the hook says.
const eventTimeout136 = "5s"

// Payload is Flagger's CanaryWebhookPayload, the JSON body of every hook
// call ({"name","namespace","phase","checksum","metadata"}). It is the
// analysis package's own type, so an engine passes the machine's payload
// straight through.
type Payload = analysis.Payload

// Options configure a Caller.
type Options struct {
	// Version is the Flagger version to behave as: "1.44" (default, also
	// for "") or "1.36".
	Version string
	// Logger receives debug lines about retries (default: discarded).
	Logger *slog.Logger
	// Transport carries the requests (default: one pooled transport per
	// Caller, as go-cleanhttp builds it). Tests inject one to see the
	// request's deadline.
	Transport http.RoundTripper
	// Sleep waits out a retry backoff. It must return ctx.Err() if ctx ends
	// first; any error aborts the call. Default: a timer. Tests inject one
	// that records the durations and returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Caller calls webhooks as Flagger's controller does. It is safe for
// concurrent use.
type Caller struct {
	version   string
	log       *slog.Logger
	transport http.RoundTripper
	sleep     func(context.Context, time.Duration) error

	// insecure is the transport for disableTLS hooks, built on first use
	// so that its connections are pooled like the default ones.
	insecureOnce sync.Once
	insecure     http.RoundTripper
}

// NewCaller returns a Caller; it fails only for an unknown Version.
func NewCaller(opts Options) (*Caller, error) {
	c := &Caller{
		version:   opts.Version,
		log:       opts.Logger,
		transport: opts.Transport,
		sleep:     opts.Sleep,
	}
	switch c.version {
	case "":
		c.version = Version144
	case Version144, Version136:
	default:
		return nil, fmt.Errorf("webhook: unknown Flagger version %q (want %q or %q)", opts.Version, Version144, Version136)
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.transport == nil {
		// retryablehttp.NewClient would build a fresh pooled transport per
		// call (Flagger does); one per Caller keeps connections reused.
		c.transport = retryablehttp.NewClient().HTTPClient.Transport
	}
	if c.sleep == nil {
		c.sleep = sleepTimer
	}
	return c, nil
}

// sleepTimer waits d or until ctx ends.
func sleepTimer(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// StatusError is a hook's refusal: a response with status > 202. Its text
// is the response body alone, as in Flagger's events ("Forbidden" from a
// closed gate); the status is kept for reports.
type StatusError struct {
	StatusCode int
	Body       string
}

func (e *StatusError) Error() string { return e.Body }

// Call POSTs p to hook.URL as Flagger's CallWebhook does: p.Metadata is
// replaced by the hook's metadata, a Timeout shorter than two characters
// means "10s", and hook.Retries is go-retryablehttp's RetryMax. nil means
// the hook answered ≤ 202.
//
// The errors carry Flagger's texts, because the analysis puts them in
// events verbatim: *StatusError (the body) for a status > 202, or
// retryablehttp's "POST <url> giving up after N attempt(s)[: <err>]". A
// bad timeout or a non-loopback URL gives an error naming the hook.
func (c *Caller) Call(ctx context.Context, hook analysis.Webhook, p Payload) error {
	p.Metadata = hook.Metadata
	return c.post(ctx, hook, p, hookTimeout(hook))
}

// CallEvent POSTs an event to an event hook as Flagger's CallEventWebhook
// does: metadata is eventMessage, eventType ("Normal" or "Warning") and
// timestamp (ts in Unix milliseconds, decimal), plus the hook's own
// metadata on other keys; p.Metadata is ignored. The timeout is the hook's
// (empty: "10s") on 1.44 and always "5s" on 1.36.
func (c *Caller) CallEvent(ctx context.Context, hook analysis.Webhook, p Payload, eventMessage, eventType string, ts time.Time) error {
	md := map[string]string{
		"eventMessage": eventMessage,
		"eventType":    eventType,
		"timestamp":    strconv.FormatInt(ts.UnixMilli(), 10),
	}
	for k, v := range hook.Metadata {
		if _, taken := md[k]; !taken {
			md[k] = v
		}
	}
	p.Metadata = md
	return c.post(ctx, hook, p, c.eventTimeout(hook))
}

// hookTimeout is CallWebhook's rule: len < 2 means "10s", so "5" (no
// unit) is 10s rather than an error.
func hookTimeout(hook analysis.Webhook) string {
	if len(hook.Timeout) < 2 {
		return defaultTimeout
	}
	return hook.Timeout
}

// eventTimeout is CallEventWebhook's: v1.36 hard-codes 5s; v1.44 passes
// the hook's timeout as is (only "" becomes 10s in callWebhook, so a
// one-character value is an error there, unlike in Call).
func (c *Caller) eventTimeout(hook analysis.Webhook) string {
	if c.version == Version136 {
		return eventTimeout136
	}
	if hook.Timeout == "" {
		return defaultTimeout
	}
	return hook.Timeout
}

// post is Flagger's callWebhook, with canarylab's loopback rule and an
// injectable backoff sleep.
func (c *Caller) post(ctx context.Context, hook analysis.Webhook, p Payload, timeout string) error {
	body, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("webhook %q: encoding the payload: %w", hook.Name, err)
	}
	u, err := url.Parse(hook.URL)
	if err != nil {
		return fmt.Errorf("webhook %q: %w", hook.Name, err)
	}
	if !IsLoopback(u) {
		return refusal(hook)
	}
	t, err := time.ParseDuration(timeout)
	if err != nil {
		return fmt.Errorf("webhook %q: timeout %q: %w", hook.Name, timeout, err)
	}

	client := retryablehttp.NewClient()
	client.RetryMax = hook.Retries
	client.Logger = nil
	client.HTTPClient = &http.Client{
		Transport:     c.transportFor(hook),
		Timeout:       t,
		CheckRedirect: loopbackRedirects,
	}
	// retryablehttp waits with its own timer; compute Flagger's wait with
	// the default backoff, wait it out through c.sleep, and let the
	// library's timer run for zero. If ctx ended, an endless wait makes the
	// library return ctx.Err() itself; any other sleep error aborts in
	// PrepareRetry.
	var sleepErr error
	client.Backoff = func(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
		d := retryablehttp.DefaultBackoff(minWait, maxWait, attempt, resp)
		c.log.Debug("webhook retry", "hook", hook.Name, "url", hook.URL, "attempt", attempt+1, "wait", d)
		if err := c.sleep(ctx, d); err != nil {
			if ctx.Err() != nil {
				return time.Duration(math.MaxInt64)
			}
			sleepErr = err
		}
		return 0
	}
	client.PrepareRetry = func(*http.Request) error { return sleepErr }

	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook %q: %w", hook.Name, err)
	}
	req.Header.Set("Content-Type", "application/json")

	resp, err := client.Do(req)
	if err != nil {
		// retryablehttp returns a bare ctx.Err() when ctx ends during a
		// backoff; say which hook it was. Its own errors keep Flagger's text.
		if ctxErr := ctx.Err(); ctxErr != nil && err == ctxErr {
			return fmt.Errorf("webhook %q: %w", hook.Name, err)
		}
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("error reading body: %w", err)
	}
	if resp.StatusCode > 202 {
		return &StatusError{StatusCode: resp.StatusCode, Body: string(b)}
	}
	return nil
}

// transportFor honours disableTLS on 1.44 (skip certificate checks); 1.36
// has no such field (the API server prunes it), so there it is ignored.
func (c *Caller) transportFor(hook analysis.Webhook) http.RoundTripper {
	if !hook.DisableTLS || c.version == Version136 {
		return c.transport
	}
	c.insecureOnce.Do(func() {
		base, ok := c.transport.(*http.Transport)
		if !ok {
			// A custom RoundTripper decides TLS itself.
			c.insecure = c.transport
			return
		}
		t := base.Clone()
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{}
		}
		t.TLSClientConfig.InsecureSkipVerify = true
		c.insecure = t
	})
	return c.insecure
}

// IsLoopback reports whether u's host is one canarylab may call:
// localhost, 127.0.0.0/8 or ::1. The local engine must not reach into
// other machines on a scenario's behalf.
func IsLoopback(u *url.URL) bool {
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func refusal(hook analysis.Webhook) error {
	return fmt.Errorf("webhook %q: refusing to call %s: canarylab calls only loopback hooks (localhost, 127.0.0.0/8, ::1); "+
		"for gates and rollback switches use http://flagger-loadtester.<namespace>/gate/check (or /rollback/check, /gate/approve, /gate/halt, /), "+
		"which canarylab answers with its embedded loadtester, or run the hook on this machine", hook.Name, hook.URL)
}

// loopbackRedirects keeps a loopback hook from redirecting the call
// elsewhere; otherwise it follows redirects as net/http does.
func loopbackRedirects(req *http.Request, via []*http.Request) error {
	if !IsLoopback(req.URL) {
		return fmt.Errorf("refusing redirect to %s: canarylab calls only loopback hooks", req.URL.Redacted())
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

// loadtesterHost is the Service name the loadtester has in Flagger's
// installs; hooks address it as http://flagger-loadtester.<ns>/.
const loadtesterHost = "flagger-loadtester"

// Rewrite maps a hook URL aimed at the conventional loadtester Service,
// http://flagger-loadtester[.<anything>][:port]/path[?query], to
// loadtesterBase + /path[?query], so scenarios written for a cluster reach
// the embedded Loadtester. Any other URL comes back unchanged.
func Rewrite(rawURL string, loadtesterBase string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" {
		return rawURL
	}
	host := strings.ToLower(u.Hostname())
	if host != loadtesterHost && !strings.HasPrefix(host, loadtesterHost+".") {
		return rawURL
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	out := strings.TrimRight(loadtesterBase, "/") + path
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	return out
}

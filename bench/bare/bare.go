// Package bare is the benchmarks' reference server: a bare net/http
// handler that answers exactly what canarylab mock answers with no config
// (status, body and headers), so the two are compared on the same work.
package bare

import (
	"net/http"
	"strconv"
)

// Body is the mock's default answer with version label v1.
const Body = `{"service":"canarylab-mock","version":"v1"}` + "\n"

// Handler writes Body with the mock's headers.
func Handler() http.Handler {
	b := []byte(Body)
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

package boomercompat

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"testing"

	"github.com/myzhan/boomer"
)

// boomerFlags is boomer's own command line (registered on flag.CommandLine
// when boomer is imported), on a fresh set.
func boomerFlags(t *testing.T, args ...string) *flag.FlagSet {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	flag.CommandLine.VisitAll(func(f *flag.Flag) {
		fs.String(f.Name, f.DefValue, f.Usage)
	})
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestRunTasksRunsNamedTasksOnce(t *testing.T) {
	calls := map[string]int{}
	tasks := []*boomer.Task{
		{Name: "a", Fn: func() { calls["a"]++; boomer.RecordSuccess("http", "/a", 3, 1) }},
		{Name: "b", Fn: func() { calls["b"]++; boomer.RecordFailure("http", "/b", 4, "boom") }},
		{Name: "c", Fn: func() { calls["c"]++ }},
	}
	var out bytes.Buffer
	if err := runFlags(context.Background(), boomerFlags(t, "--run-tasks", "a,b"), &out, tasks); err != nil {
		t.Fatal(err)
	}
	if calls["a"] != 1 || calls["b"] != 1 || calls["c"] != 0 {
		t.Errorf("calls %v, want a and b once", calls)
	}
	for _, want := range []string{"Running a", "Running b", "/a", "/b", "Aggregated"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if err := runFlags(context.Background(), boomerFlags(t, "--run-tasks", "zzz"), &out, tasks); err == nil || !strings.Contains(err.Error(), "no task has that name") {
		t.Errorf("unknown task: %v", err)
	}
}

func TestRateLimiterFromBoomerFlags(t *testing.T) {
	for _, tc := range []struct {
		maxRPS, increase string
		want             string // type, or error text
	}{
		{"0", "-1", "<nil>"},
		{"", "", "<nil>"},
		{"100", "-1", "*boomer.StableRateLimiter"},
		{"100", "10/1s", "*boomer.RampUpRateLimiter"},
		{"0", "10", "*boomer.RampUpRateLimiter"},
		{"ten", "-1", `--max-rps "ten"`},
		{"-5", "-1", `--max-rps "-5"`},
		{"0", "fast", `--request-increase-rate "fast"`},
	} {
		l, err := rateLimiter(tc.maxRPS, tc.increase)
		got := typeName(l)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("rateLimiter(%q, %q) = %s, want %s", tc.maxRPS, tc.increase, got, tc.want)
		}
	}
}

func typeName(v any) string {
	if v == nil {
		return "<nil>"
	}
	return strings.TrimSpace(strings.Split(fmtType(v), " ")[0])
}

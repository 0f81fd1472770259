#!/usr/bin/env bash
# Benchmarks of the embedded engine's overhead (docs/benchmarks.md):
#
#   router   what orchestrator/mesh's router adds to a request: the open
#            model at BENCH_RATE (5000) requests a second for
#            BENCH_DURATION (20s), straight to the primary mock server and
#            through the router (90/10 to primary and canary mock servers),
#            in alternating rounds; the medians of p50, p99 and p99.9 and
#            the router's CPU
#   gobench  go test -bench of one analysis tick, a whole ten-step analysis,
#            and the router in process (orchestrator/analysis, mesh)
#
# Usage: bash bench/orchestrator.sh      (knobs: BENCH_* below)
# Servers and the router run on core BENCH_SERVER_CPU (0), the load on
# BENCH_CLIENT_CPU (1). All traffic stays on 127.0.0.1; every process it
# starts is stopped when it exits, Ctrl-C included. Results go to
# bench/results/<timestamp>-orchestrator.txt (gitignored).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SECTIONS=${BENCH_SECTIONS:-router,gobench}
RATE=${BENCH_RATE:-5000}
DURATION=${BENCH_DURATION:-20s}
ROUNDS=${BENCH_ROUNDS:-3}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
BIN=$ROOT/bench/.bin
mkdir -p "$BIN" bench/results
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=bench/results/$STAMP-orchestrator.txt
RAW=bench/results/$STAMP-orchestrator.raw
mkdir -p "$RAW"
PIDS=()

cleanup() {
	for p in "${PIDS[@]:-}"; do [[ -n $p ]] && kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { printf '%s\n' "$*" | tee -a "$OUT"; }
has() { [[ ",$SECTIONS," == *",$1,"* ]]; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END { if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2 }'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; exit 1; }

for t in jq taskset; do command -v $t >/dev/null || { echo "bench/orchestrator.sh needs $t" >&2; exit 1; }; done
go build -trimpath -o "$BIN/canarylab" ./cmd/canarylab
go build -trimpath -o "$BIN/router" ./bench/router

say "# canarylab orchestrator benchmarks, $STAMP, commit $(git rev-parse --short HEAD)"
say "# $(nproc) cores, $(go version | cut -d' ' -f3)"

if has router; then
	taskset -c "$SERVER_CPU" "$BIN/canarylab" mock --listen 127.0.0.1:21280 --admin-listen 127.0.0.1:21281 --version-label primary >"$RAW/primary.log" 2>&1 &
	PIDS+=($!)
	taskset -c "$SERVER_CPU" "$BIN/canarylab" mock --listen 127.0.0.1:21282 --admin-listen 127.0.0.1:21283 --version-label canary >"$RAW/canary.log" 2>&1 &
	PIDS+=($!)
	taskset -c "$SERVER_CPU" "$BIN/router" >"$RAW/router.log" 2>&1 &
	ROUTER=$!
	PIDS+=($ROUTER)
	wait_port 21280; wait_port 21282; wait_port 21290
	declare -A P50 P99 P999 RPS
	ROUTER_CPU=()
	for r in $(seq "$ROUNDS"); do
		for target in direct router; do
			url=http://127.0.0.1:21280/; [[ $target == router ]] && url=http://127.0.0.1:21290/
			t0=$(cpu_ticks $ROUTER)
			taskset -c "$CLIENT_CPU" "$BIN/canarylab" load --host "$url" --rate "$RATE" --duration "$DURATION" --quiet \
				--json "$RAW/$target-$r.json" >"$RAW/$target-$r.log" 2>&1
			t1=$(cpu_ticks $ROUTER)
			j=$RAW/$target-$r.json
			P50[$target]+=" $(jq .total.latencyMs.p50 "$j")"
			P99[$target]+=" $(jq .total.latencyMs.p99 "$j")"
			P999[$target]+=" $(jq .total.latencyMs.p999 "$j")"
			RPS[$target]+=" $(jq .total.rps "$j" | xargs printf "%.0f")"
			[[ $target == router ]] && ROUTER_CPU+=("$(awk -v d=$((t1 - t0)) -v s="${DURATION%s}" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", 100*d/hz/s}')")
		done
	done
	say ""
	say "## router: open model at $RATE rps for $DURATION, $ROUNDS rounds, medians (ms)"
	say "| target | rps | p50 | p99 | p99.9 |"
	say "|---|---:|---:|---:|---:|"
	for target in direct router; do
		say "| $target | $(median ${RPS[$target]}) | $(median ${P50[$target]}) | $(median ${P99[$target]}) | $(median ${P999[$target]}) |"
	done
	say ""
	say "router added at p50: $(awk -v a="$(median ${P50[router]})" -v b="$(median ${P50[direct]})" 'BEGIN{printf "%.3f ms", a-b}'), at p99: $(awk -v a="$(median ${P99[router]})" -v b="$(median ${P99[direct]})" 'BEGIN{printf "%.3f ms", a-b}'); router CPU at $RATE rps: $(median "${ROUTER_CPU[@]}") % of a core"
fi

if has gobench; then
	say ""
	say "## go test -bench"
	go test -run '^$' -bench 'Tick|Run' -benchmem -count 3 ./orchestrator/analysis/ 2>&1 | grep -E '^Benchmark' | tee -a "$OUT"
	go test -run '^$' -bench 'Direct|Router' -benchmem -count 3 ./orchestrator/mesh/ 2>&1 | grep -E '^Benchmark' | tee -a "$OUT"
fi
say ""
say "results: $OUT"

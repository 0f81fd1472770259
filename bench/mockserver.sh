#!/usr/bin/env bash
# Benchmarks of `canarylab mock` (docs/benchmarks.md says what and why):
#
#   throughput  wrk against a bare net/http baseline, canarylab mock (no
#               faults, metrics on), fortio's echo server and go-httpbin,
#               side by side in alternating rounds; the median rps of each
#               and its ratio to the baseline
#   latency     canarylab mock --latency 'lognormal(50ms,400ms)' under an
#               open-model load (fortio load -qps), client p50/p99 against
#               the configured values, and the server's realised delays
#   memory      RSS of canarylab mock and of the baseline idle and holding
#               10,000 idle keep-alive connections
#   gobench     go test -bench of the in-process hot path
#
# Usage: bash bench/mockserver.sh        (make bench)
#
# Every knob is an environment variable:
#   BENCH_SECTIONS      sections to run            throughput,latency,memory,gobench
#   BENCH_DURATION      wrk run per server/round   10s
#   BENCH_WARMUP        wrk warm-up per server     3s
#   BENCH_ROUNDS        alternating rounds         3
#   BENCH_CONNS         wrk connections            32
#   BENCH_LAT_QPS       open-model rate            2000
#   BENCH_LAT_CONNS     fortio connections         400
#   BENCH_LAT_DURATION  latency run                30s
#   BENCH_IDLE_CONNS    idle keep-alive conns      10000
#   BENCH_SERVER_CPU    core of the servers        0
#   BENCH_CLIENT_CPU    core of the load tools     1
#   BENCH_PORT_BASE     first of 8 ports used      21080
#   BENCH_QUIET_WAIT    seconds to wait for a quiet machine before each
#                       section (0: don't)         60
#   BENCH_RETRIES       reruns of a wrk run that other processes skewed  2
#
# It installs its peers at pinned versions into bench/.bin (gitignored),
# writes bench/results/<timestamp>.txt (gitignored) and prints it; the raw
# outputs go to bench/results/<timestamp>.raw/. Every process it starts is
# stopped when it exits, Ctrl-C included. All traffic stays on 127.0.0.1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

FORTIO_MOD=fortio.org/fortio
FORTIO_VERSION=v1.66.0
HTTPBIN_MOD=github.com/mccutchen/go-httpbin/v2
HTTPBIN_PKG=$HTTPBIN_MOD/cmd/go-httpbin
HTTPBIN_VERSION=v2.26.0

SECTIONS=${BENCH_SECTIONS:-throughput,latency,memory,gobench}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-32}
LAT_QPS=${BENCH_LAT_QPS:-2000}
LAT_CONNS=${BENCH_LAT_CONNS:-400}
LAT_DURATION=${BENCH_LAT_DURATION:-30s}
LAT_MEDIAN=50ms
LAT_P99=400ms
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
PORT_BASE=${BENCH_PORT_BASE:-21080}
QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
RETRIES=${BENCH_RETRIES:-2}
SKEWED=0

BIN=$ROOT/bench/.bin
RESULTS_DIR=$ROOT/bench/results
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$RESULTS_DIR/$STAMP.txt
WORK=$(mktemp -d "${TMPDIR:-/tmp}/canarylab-bench.XXXXXX")

# The default body of canarylab mock; the baseline serves the same bytes,
# and go-httpbin's /base64/ endpoint decodes them back.
BODY='{"service":"canarylab-mock","version":"v1"}'

PIDS=()

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if ((${#PIDS[@]})); then
		kill -TERM "${PIDS[@]}" 2>/dev/null || true
		local i
		for i in $(seq 50); do
			local alive=0 p
			for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
			((alive)) || break
			sleep 0.1
		done
		kill -KILL "${PIDS[@]}" 2>/dev/null || true
		wait 2>/dev/null || true
	fi
	# Keep the raw outputs (wrk, fortio, metrics, server logs) beside the
	# results.
	if [[ -s $OUT ]] && cp -r "$WORK" "$RESULTS_DIR/$STAMP.raw" 2>/dev/null; then
		rm -rf "$WORK"
		((rc == 0)) || echo "bench: stopped (exit $rc); raw outputs and logs in ${RESULTS_DIR#"$ROOT"/}/$STAMP.raw" >&2
	elif ((rc != 0)); then
		echo "bench: stopped (exit $rc); server logs kept in $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# say prints and appends to the results file.
say() { printf '%s\n' "$*" | tee -a "$OUT"; }
die() {
	echo "bench: $*" >&2
	exit 1
}
has() { [[ ",$SECTIONS," == *",$1,"* ]]; }

# ---------------------------------------------------------------- setup

install_tools() {
	mkdir -p "$BIN" "$RESULTS_DIR"
	command -v go >/dev/null || die "go is not on PATH"
	if ! command -v wrk >/dev/null || ! command -v curl >/dev/null || ! command -v taskset >/dev/null; then
		[[ $(id -u) == 0 ]] || die "need wrk, curl and taskset (apt-get install wrk curl util-linux), or run as root to install them"
		echo "bench: installing wrk and curl from Debian" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk curl >/dev/null 2>&1 ||
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk curl >/dev/null; }
	fi
	# Peers at pinned versions: reinstall only when the recorded module
	# version differs.
	local spec
	for spec in "fortio $FORTIO_MOD $FORTIO_MOD $FORTIO_VERSION" "go-httpbin $HTTPBIN_MOD $HTTPBIN_PKG $HTTPBIN_VERSION"; do
		read -r name mod pkg ver <<<"$spec"
		if ! go version -m "$BIN/$name" 2>/dev/null | grep -qE "^[[:space:]]+mod[[:space:]]+${mod}[[:space:]]+${ver}[[:space:]]"; then
			echo "bench: installing $pkg@$ver into bench/.bin" >&2
			GOBIN=$BIN GOFLAGS='' go install "$pkg@$ver"
		fi
	done
	echo "bench: building canarylab and the bench helpers" >&2
	go build -trimpath -ldflags '-s -w' -o "$BIN/canarylab" ./cmd/canarylab
	go build -trimpath -o "$BIN/baseline" ./bench/baseline
	go build -trimpath -o "$BIN/conns" ./bench/conns
	go build -trimpath -o "$BIN/latstats" ./bench/latstats
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start NAME PORT CMD... starts CMD on the servers' core and waits until
# http://127.0.0.1:PORT/ answers; the pid is left in STARTED_PID.
start() {
	local name=$1 port=$2
	shift 2
	port_busy "$port" && die "port $port is in use (set BENCH_PORT_BASE)"
	taskset -c "$SERVER_CPU" "$@" >"$WORK/$name.log" 2>&1 &
	STARTED_PID=$!
	PIDS+=("$STARTED_PID")
	local i
	for i in $(seq 100); do
		if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null; then
			return 0
		fi
		kill -0 "$STARTED_PID" 2>/dev/null || die "$name exited at start: $(tail -5 "$WORK/$name.log")"
		sleep 0.1
	done
	die "$name did not answer on port $port"
}

stop() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	local keep=() p
	for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
	PIDS=("${keep[@]+"${keep[@]}"}")
}

# cpu_busy prints the share of all cores busy over one second, in percent.
cpu_busy() {
	local a b
	read -r -a a < <(grep '^cpu ' /proc/stat)
	sleep 1
	read -r -a b < <(grep '^cpu ' /proc/stat)
	awk -v u1="${a[1]}" -v n1="${a[2]}" -v s1="${a[3]}" -v i1="${a[4]}" -v w1="${a[5]}" -v q1="${a[6]}" -v sq1="${a[7]}" -v st1="${a[8]}" \
		-v u2="${b[1]}" -v n2="${b[2]}" -v s2="${b[3]}" -v i2="${b[4]}" -v w2="${b[5]}" -v q2="${b[6]}" -v sq2="${b[7]}" -v st2="${b[8]}" \
		'BEGIN { busy=(u2+n2+s2+q2+sq2+st2)-(u1+n1+s1+q1+sq1+st1); idle=(i2+w2)-(i1+w1); printf "%.0f", (busy+idle) ? 100*busy/(busy+idle) : 0 }'
}

# wait_quiet waits up to QUIET_WAIT seconds for the machine to be idle
# (under 15 % busy) and notes in the results when it is not: other work on
# these 2 cores skews every number.
wait_quiet() {
	local what=$1 busy waited=0
	busy=$(cpu_busy)
	while ((busy > 15 && waited < QUIET_WAIT)); do
		((waited == 0)) && echo "bench: machine is ${busy}% busy before $what; waiting up to ${QUIET_WAIT}s for it to quieten" >&2
		sleep 4
		waited=$((waited + 5))
		busy=$(cpu_busy)
	done
	if ((busy > 15)); then
		say "WARNING: the machine was ${busy}% busy (other processes) before $what: its numbers are skewed"
	fi
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || die "process $1 exited during the run"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# median of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END { if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2 }'; }

header() {
	local commit
	commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	git diff --quiet HEAD -- 2>/dev/null || commit="$commit (+ uncommitted changes)"
	say "canarylab mock benchmarks, $STAMP"
	say "commit:  $commit"
	say "machine: $(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
	say "go:      $(go env GOVERSION); servers on core $SERVER_CPU (GOMAXPROCS=1 by affinity), load tools on core $CLIENT_CPU"
	say "tools:   $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), fortio $FORTIO_VERSION, go-httpbin $HTTPBIN_VERSION"
	say "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) at start"
	say ""
}

# ---------------------------------------------------------------- throughput

P_BASE=$PORT_BASE
P_MOCK=$((PORT_BASE + 1))
P_MOCK_ADMIN=$((PORT_BASE + 2))
P_FORTIO=$((PORT_BASE + 3))
P_HTTPBIN=$((PORT_BASE + 4))
P_LAT=$((PORT_BASE + 5))
P_LAT_ADMIN=$((PORT_BASE + 6))
P_MEM_ADMIN=$((PORT_BASE + 7))

# core_ticks CORE prints that core's busy and total ticks from /proc/stat.
core_ticks() {
	awk -v c="cpu$1" '$1 == c { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat
}

# measure NAME PID URL warms the server up and measures it with wrk, into
# M_RPS, M_EFF (requests per second of server CPU), M_SHARE (the share of
# its core the server used) and M_MARK ("*" when skewed). A run is skewed
# when other processes took more than 10 % of the server's or the client's
# core; it is retried up to RETRIES times.
measure() {
	local n=$1 pid=$2 u=$3 try hz TIMEFORMAT='%R %U %S'
	hz=$(getconf CLK_TCK)
	for ((try = 0; try <= RETRIES; try++)); do
		taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"$WARMUP" "$u" >/dev/null
		local c0 c1 s0 s1 k0 k1 t0 t1 out tm
		read -r -a s0 < <(core_ticks "$SERVER_CPU")
		read -r -a k0 < <(core_ticks "$CLIENT_CPU")
		c0=$(cpu_ticks "$pid")
		t0=$(date +%s.%N)
		{ time taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "$u" >"$WORK/wrk.out" 2>&1; } 2>"$WORK/wrk.time"
		t1=$(date +%s.%N)
		c1=$(cpu_ticks "$pid")
		read -r -a s1 < <(core_ticks "$SERVER_CPU")
		read -r -a k1 < <(core_ticks "$CLIENT_CPU")
		out=$(cat "$WORK/wrk.out")
		tm=$(tail -1 "$WORK/wrk.time")
		{
			echo "# $n try $try"
			echo "$out"
			echo "wall/user/sys of wrk: $tm"
		} >>"$WORK/wrk-$n.txt"
		if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
			say "   WARNING: $n: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ' | tr '\n' ';')"
		fi
		M_RPS=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
		local reqs
		reqs=$(awk '/requests in/ {print $1}' <<<"$out")
		# Other processes' time on each core: its busy time less what the
		# server (on the server core) or wrk (on the client core) used.
		local verdict
		verdict=$(awk -v hz="$hz" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v q="$reqs" \
			-v sb0="${s0[0]}" -v sb1="${s1[0]}" -v kb0="${k0[0]}" -v kb1="${k1[0]}" -v tm="$tm" 'BEGIN {
				wall = t1 - t0; split(tm, w, " "); srv = (c1 - c0) / hz; cli = w[2] + w[3]
				other_s = (sb1 - sb0) / hz - srv; other_c = (kb1 - kb0) / hz - cli
				printf "%.0f %.0f %.0f %.0f %.0f\n", (srv > 0) ? q / srv : 0, 100 * srv / wall, 100 * other_s / wall, 100 * other_c / wall, 100 * cli / wall }')
		local other_s other_c cli
		read -r M_EFF M_SHARE other_s other_c cli <<<"$verdict"
		echo "server CPU ${M_SHARE}%, wrk CPU ${cli}%, others on server core ${other_s}%, on client core ${other_c}%" >>"$WORK/wrk-$n.txt"
		M_MARK=""
		if ((other_s <= 10 && other_c <= 10)); then
			return 0
		fi
		M_MARK="*"
		((try < RETRIES)) && sleep 5
	done
	SKEWED=$((SKEWED + 1))
}

throughput() {
	local names=(baseline canarylab fortio go-httpbin)
	local -A url spid rps eff share
	local b64
	b64=$(printf '%s\n' "$BODY" | base64 -w0 | tr '+/' '-_')

	say "== throughput: wrk -t1 -c$CONNS -d$DURATION, $ROUNDS alternating rounds, median (warm-up $WARMUP each)"
	say "   baseline    bench/baseline: bare net/http, the same body and headers as canarylab mock"
	say "   canarylab   canarylab mock, no config: no faults, metrics on"
	say "   fortio      fortio server, echo handler /echo?size=44 (44 bytes)"
	say "   go-httpbin  go-httpbin -log-level OFF, /base64/<the 44-byte body>"
	wait_quiet throughput

	start baseline "$P_BASE" "$BIN/baseline" -listen "127.0.0.1:$P_BASE"
	spid[baseline]=$STARTED_PID
	url[baseline]="http://127.0.0.1:$P_BASE/"
	start canarylab "$P_MOCK" "$BIN/canarylab" mock --listen "127.0.0.1:$P_MOCK" --admin-listen "127.0.0.1:$P_MOCK_ADMIN" --log-level warn
	spid[canarylab]=$STARTED_PID
	url[canarylab]="http://127.0.0.1:$P_MOCK/"
	start fortio "$P_FORTIO" "$BIN/fortio" server -http-port "127.0.0.1:$P_FORTIO" -grpc-port disabled \
		-redirect-port disabled -tcp-port disabled -udp-port disabled -ui-path "" -echo-debug-path ""
	spid[fortio]=$STARTED_PID
	url[fortio]="http://127.0.0.1:$P_FORTIO/echo?size=44"
	start go-httpbin "$P_HTTPBIN" "$BIN/go-httpbin" -host 127.0.0.1 -port "$P_HTTPBIN" -log-level OFF
	spid[go-httpbin]=$STARTED_PID
	url[go-httpbin]="http://127.0.0.1:$P_HTTPBIN/base64/$b64"

	local n
	for n in "${names[@]}"; do
		local len
		len=$(curl -fsS "${url[$n]}" | wc -c)
		[[ $len == 44 ]] || die "$n answers $len bytes, not 44, at ${url[$n]}"
	done

	local round i k
	for ((round = 0; round < ROUNDS; round++)); do
		local line="   round $((round + 1)):"
		for ((i = 0; i < ${#names[@]}; i++)); do
			k=$(((i + round) % ${#names[@]}))
			n=${names[$k]}
			measure "$n" "${spid[$n]}" "${url[$n]}"
			rps[$n]+=" $M_RPS"
			eff[$n]+=" $M_EFF"
			share[$n]+=" $M_SHARE"
			line+=$(printf ' %s %.0f%s' "$n" "$M_RPS" "$M_MARK")
		done
		say "$line"
	done
	((SKEWED == 0)) || say "   * other processes took over 10 % of the server's or wrk's core in this run, even after $RETRIES retries"

	local base_rps base_eff
	# shellcheck disable=SC2086
	base_rps=$(median ${rps[baseline]})
	# shellcheck disable=SC2086
	base_eff=$(median ${eff[baseline]})
	say ""
	say "   server        rps (median)   x baseline   server CPU   req per CPU-second   x baseline"
	for n in "${names[@]}"; do
		local m e s
		# shellcheck disable=SC2086
		m=$(median ${rps[$n]})
		# shellcheck disable=SC2086
		e=$(median ${eff[$n]})
		# shellcheck disable=SC2086
		s=$(median ${share[$n]})
		say "$(awk -v n="$n" -v m="$m" -v b="$base_rps" -v e="$e" -v be="$base_eff" -v s="$s" \
			'BEGIN { printf "   %-12s %11.0f   %10.2f   %9.0f%%   %18.0f   %10.2f", n, m, m/b, s, e, e/be }')"
		THROUGHPUT_RATIO[$n]=$(awk -v m="$m" -v b="$base_rps" 'BEGIN { printf "%.2f", m/b }')
	done
	say "   (server CPU: the share of its core the server used. req per CPU-second is"
	say "    requests over the server's own CPU time: less sensitive to other load)"
	local c=${THROUGHPUT_RATIO[canarylab]}
	local ok=PASS
	awk -v c="$c" -v f="${THROUGHPUT_RATIO[fortio]}" -v h="${THROUGHPUT_RATIO[go-httpbin]}" \
		'BEGIN { exit !(c >= 0.90 && c > f && c > h) }' || ok=FAIL
	say "   target: canarylab >= 0.90 x baseline and above both peers: $c  $ok"
	say ""

	for n in "${names[@]}"; do stop "${spid[$n]}"; done
}

# ---------------------------------------------------------------- latency

latency() {
	say "== latency injection accuracy: canarylab mock --latency 'lognormal($LAT_MEDIAN,$LAT_P99)'"
	say "   fortio load -qps $LAT_QPS -c $LAT_CONNS -t $LAT_DURATION -uniform -r 0.001 (open model: a fixed"
	say "   request rate, whatever the answers' delay), client on core $CLIENT_CPU; target: within 3 %"
	wait_quiet latency
	start canarylab-latency "$P_LAT" "$BIN/canarylab" mock --listen "127.0.0.1:$P_LAT" \
		--admin-listen "127.0.0.1:$P_LAT_ADMIN" --latency "lognormal($LAT_MEDIAN,$LAT_P99)" --seed 1 --log-level warn
	local pid=$STARTED_PID admin="http://127.0.0.1:$P_LAT_ADMIN"
	curl -fsS -o /dev/null -X DELETE "$admin/counts"
	curl -fsS -o "$WORK/metrics-before.txt" "$admin/metrics"
	# -r 0.001: fortio's histogram then has bucket edges at exactly 50 ms
	# and 400 ms, and 5-10 % wide buckets around them.
	taskset -c "$CLIENT_CPU" "$BIN/fortio" load -quiet -qps "$LAT_QPS" -c "$LAT_CONNS" -t "$LAT_DURATION" \
		-uniform -r 0.001 -p "50,99" -timeout 10s -json "$WORK/latency.json" \
		"http://127.0.0.1:$P_LAT/" >"$WORK/fortio-load.log" 2>&1 ||
		die "fortio load failed: $(tail -3 "$WORK/fortio-load.log")"
	curl -fsS -o "$WORK/metrics-after.txt" "$admin/metrics"
	curl -fsS -o "$WORK/counts.json" "$admin/counts"
	"$BIN/latstats" -fortio "$WORK/latency.json" -metrics-before "$WORK/metrics-before.txt" \
		-metrics-after "$WORK/metrics-after.txt" -counts "$WORK/counts.json" \
		-median "$LAT_MEDIAN" -p99 "$LAT_P99" -tolerance 0.03 | sed 's/^/   /' | tee -a "$OUT"
	say ""
	stop "$pid"
}

# ---------------------------------------------------------------- memory

# memory_of NAME PORT CMD... measures one server idle and with IDLE_CONNS
# idle keep-alive connections, into MEM_IDLE, MEM_HELD, MEM_HWM (KiB) and
# MEM_FDS (the server's open files while holding them).
memory_of() {
	local name=$1 port=$2
	shift 2
	start "$name" "$port" "$@"
	local pid=$STARTED_PID
	sleep 2
	MEM_IDLE=$(rss_kib "$pid")
	local cout="$WORK/conns-$name.out"
	taskset -c "$CLIENT_CPU" "$BIN/conns" -addr "127.0.0.1:$port" -n "$IDLE_CONNS" >"$cout" 2>"$WORK/conns-$name.log" &
	local cpid=$!
	PIDS+=("$cpid")
	local i
	for i in $(seq 600); do
		grep -q '^ready' "$cout" 2>/dev/null && break
		kill -0 "$cpid" 2>/dev/null || break
		sleep 0.2
	done
	grep -q "^ready $IDLE_CONNS\$" "$cout" || die "conns against $name: $(cat "$cout" "$WORK/conns-$name.log" | tail -3)"
	sleep 3
	MEM_HELD=$(rss_kib "$pid")
	MEM_FDS=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
	MEM_HWM=$(hwm_kib "$pid")
	stop "$cpid"
	stop "$pid"
}

memory() {
	say "== memory: VmRSS idle (after start and one request) and holding $IDLE_CONNS idle keep-alive connections"
	say "   (bench/conns opens them, sends one GET on each and keeps them open)"
	local need=$((IDLE_CONNS + 1024))
	if (($(ulimit -n) < need)); then
		ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
	fi
	(($(ulimit -n) >= IDLE_CONNS + 64)) || die "open-file limit $(ulimit -n) is too low for $IDLE_CONNS connections (raise ulimit -n)"
	wait_quiet memory
	local rows=()
	memory_of baseline-mem "$P_BASE" "$BIN/baseline" -listen "127.0.0.1:$P_BASE"
	rows+=("baseline $MEM_IDLE $MEM_HELD $MEM_FDS $MEM_HWM")
	local bheld=$MEM_HELD
	memory_of canarylab-mem "$P_MOCK" "$BIN/canarylab" mock --listen "127.0.0.1:$P_MOCK" \
		--admin-listen "127.0.0.1:$P_MEM_ADMIN" --log-level warn
	rows+=("canarylab $MEM_IDLE $MEM_HELD $MEM_FDS $MEM_HWM")
	local cheld=$MEM_HELD
	say "   server        idle RSS   RSS with $IDLE_CONNS conns   per conn   peak (VmHWM)   open fds"
	local row n idle held fds hwm
	for row in "${rows[@]}"; do
		read -r n idle held fds hwm <<<"$row"
		say "$(awk -v n="$n" -v i="$idle" -v h="$held" -v f="$fds" -v w="$hwm" -v c="$IDLE_CONNS" \
			'BEGIN { printf "   %-12s %6.1f MiB   %18.1f MiB   %5.1f KiB   %8.1f MiB   %8d", n, i/1024, h/1024, (h-i)/c, w/1024, f }')"
	done
	say "$(awk -v b="$bheld" -v c="$cheld" 'BEGIN { printf "   canarylab / baseline with the connections: %.2f", c/b }')"
	say ""
}

# ---------------------------------------------------------------- go test -bench

gobench() {
	say "== go test -run='^\$' -bench=. -benchmem ./mockserver/ (in process, GOMAXPROCS=2)"
	wait_quiet gobench
	if go test -run='^$' -bench=. -benchmem ./mockserver/ >"$WORK/gobench.txt" 2>&1; then
		grep -E '^(Benchmark|cpu:)' "$WORK/gobench.txt" | sed 's/^/   /' | tee -a "$OUT"
	else
		say "   go test -bench failed:"
		tail -20 "$WORK/gobench.txt" | sed 's/^/   /' | tee -a "$OUT"
	fi
	say ""
}

# ---------------------------------------------------------------- main

declare -A THROUGHPUT_RATIO
install_tools
: >"$OUT"
header
has throughput && throughput
has latency && latency
has memory && memory
has gobench && gobench
say "results: ${OUT#"$ROOT"/}"

#!/usr/bin/env bash
# Benchmarks of `canarylab load`, the load generator (docs/benchmarks.md
# says what and why; bench/mockserver.sh is its twin for the mock server):
#
#   throughput  requests per CPU-second of the generator, closed model, N
#               users or connections with no wait, against the bare
#               net/http baseline (bench/baseline): canarylab load, boomer
#               v1.6.0 standalone (bench/boomer), wrk and Locust's
#               FastHttpUser, one after the other in alternating rounds;
#               the median of each and the ratios
#   open        canarylab load --rate 5000 --duration 20s: the achieved
#               rate and the p99 of the send-time error
#   memory      RSS per idle user: 10,000 users that made one request and
#               wait, canarylab load and boomer
#   gobench     go test -bench of the hot path (loadgen/bench_test.go)
#
# Usage: bash bench/loadgen.sh
#
# Every knob is an environment variable:
#   BENCH_SECTIONS       sections to run              throughput,open,memory,gobench
#   BENCH_GENERATORS     generators compared          canarylab,boomer,wrk,locust
#   BENCH_DURATION       measured window per run      10s
#   BENCH_WARMUP         load before the window       2s
#   BENCH_ROUNDS         alternating rounds           3
#   BENCH_USERS          users (wrk: connections)     32
#   BENCH_OPEN_RATE      open-model rate              5000
#   BENCH_OPEN_DURATION  open-model run               20s
#   BENCH_IDLE_USERS     users of the memory part     10000
#   BENCH_IDLE_WAIT      their wait between requests  60s
#   BENCH_MEM_ROUNDS     alternating memory rounds    3
#   BENCH_SERVER_CPU     core of the target server    0
#   BENCH_CLIENT_CPU     core of the generators       1
#   BENCH_PORT_BASE      first of 2 ports used        21180
#   BENCH_QUIET_WAIT     seconds to wait for a quiet machine before each
#                        section (0: don't)           60
#   BENCH_RETRIES        reruns of a run that other processes skewed  2
#   BENCH_CANARYLAB      a canarylab binary to measure instead of building
#                        ./cmd/canarylab
#   BENCH_CANARYLAB_ALT  a second canarylab binary (a patched build, say),
#                        measured as "canarylab-alt" beside the first in
#                        every section, in the same alternating rounds
#
# It builds canarylab, the baseline and bench/boomer (its own Go module)
# into bench/.bin (gitignored), installs wrk, jq and python3-locust from
# Debian when it runs as root and they are missing, writes
# bench/results/<timestamp>-loadgen.txt (gitignored) and prints it; the raw
# outputs go to bench/results/<timestamp>-loadgen.raw/. Every process it
# starts is stopped when it exits, Ctrl-C included. All traffic stays on
# 127.0.0.1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BOOMER_VERSION=v1.6.0

SECTIONS=${BENCH_SECTIONS:-throughput,open,memory,gobench}
GENERATORS=${BENCH_GENERATORS:-canarylab,boomer,wrk,locust}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
ROUNDS=${BENCH_ROUNDS:-3}
USERS=${BENCH_USERS:-32}
OPEN_RATE=${BENCH_OPEN_RATE:-5000}
OPEN_DURATION=${BENCH_OPEN_DURATION:-20s}
IDLE_USERS=${BENCH_IDLE_USERS:-10000}
IDLE_WAIT=${BENCH_IDLE_WAIT:-60s}
MEM_ROUNDS=${BENCH_MEM_ROUNDS:-3}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
PORT_BASE=${BENCH_PORT_BASE:-21180}
QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
RETRIES=${BENCH_RETRIES:-2}
CANARYLAB=${BENCH_CANARYLAB:-}
CANARYLAB_ALT=${BENCH_CANARYLAB_ALT:-}
[[ -z $CANARYLAB_ALT || ",$GENERATORS," == *",canarylab-alt,"* ]] || GENERATORS+=,canarylab-alt
SKEWED=0

BIN=$ROOT/bench/.bin
RESULTS_DIR=$ROOT/bench/results
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$RESULTS_DIR/$STAMP-loadgen.txt
WORK=$(mktemp -d "${TMPDIR:-/tmp}/canarylab-bench-loadgen.XXXXXX")

P_BASE=$PORT_BASE
P_METRICS=$((PORT_BASE + 1))
BASE_URL=http://127.0.0.1:$P_BASE
HZ=$(getconf CLK_TCK)

PIDS=()
NAP_PID=

# nap SECONDS sleeps in a way a signal interrupts at once (bash runs a
# trap only when its foreground child ends).
nap() {
	sleep "$1" &
	NAP_PID=$!
	wait "$NAP_PID" || true
	NAP_PID=
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[[ -z $NAP_PID ]] || kill "$NAP_PID" 2>/dev/null || true
	if ((${#PIDS[@]})); then
		# SIGINT first: wrk, Locust and canarylab print their summary on it.
		kill -INT "${PIDS[@]}" 2>/dev/null || true
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
	if [[ -s $OUT ]] && cp -r "$WORK" "$RESULTS_DIR/$STAMP-loadgen.raw" 2>/dev/null; then
		rm -rf "$WORK"
		((rc == 0)) || echo "bench: stopped (exit $rc); raw outputs in ${RESULTS_DIR#"$ROOT"/}/$STAMP-loadgen.raw" >&2
	elif ((rc != 0)); then
		echo "bench: stopped (exit $rc); logs kept in $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf '%s\n' "$*" | tee -a "$OUT"; }
die() {
	echo "bench: $*" >&2
	exit 1
}
has() { [[ ",$SECTIONS," == *",$1,"* ]]; }
# secs turns 10s, 1m, 500ms or 10 into seconds.
secs() {
	awk -v d="$1" 'BEGIN {
		if (d ~ /ms$/) { sub(/ms$/, "", d); print d / 1000 }
		else if (d ~ /s$/) { sub(/s$/, "", d); print d + 0 }
		else if (d ~ /m$/) { sub(/m$/, "", d); print d * 60 }
		else print d + 0 }'
}
DUR_S=$(secs "$DURATION")
WARM_S=$(secs "$WARMUP")
LONG_S=$(awk -v d="$DUR_S" -v w="$WARM_S" 'BEGIN { printf "%d", 3 * (d + w) + 60 }')

# ---------------------------------------------------------------- setup

install_tools() {
	mkdir -p "$BIN" "$RESULTS_DIR"
	command -v go >/dev/null || die "go is not on PATH"
	local missing=() p
	command -v wrk >/dev/null || missing+=(wrk)
	command -v jq >/dev/null || missing+=(jq)
	command -v curl >/dev/null || missing+=(curl)
	command -v ss >/dev/null || missing+=(iproute2)
	command -v taskset >/dev/null || missing+=(util-linux)
	[[ -x /usr/bin/locust ]] || missing+=(python3-locust)
	if ((${#missing[@]})); then
		[[ $(id -u) == 0 ]] || die "need ${missing[*]} (apt-get install ${missing[*]}), or run as root to install them"
		echo "bench: installing ${missing[*]} from Debian" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
	fi
	echo "bench: building canarylab, the baseline and boomer $BOOMER_VERSION (bench/boomer)" >&2
	if [[ -z $CANARYLAB ]]; then
		go build -trimpath -ldflags '-s -w' -o "$BIN/canarylab" ./cmd/canarylab
		CANARYLAB=$BIN/canarylab
	fi
	[[ -x $CANARYLAB ]] || die "BENCH_CANARYLAB=$CANARYLAB is not an executable"
	[[ -z $CANARYLAB_ALT || -x $CANARYLAB_ALT ]] || die "BENCH_CANARYLAB_ALT=$CANARYLAB_ALT is not an executable"
	go build -trimpath -o "$BIN/baseline" ./bench/baseline
	(cd bench/boomer && go build -trimpath -o "$BIN/boomer" .)
	go version -m "$BIN/boomer" | grep -qE "^[[:space:]]+dep[[:space:]]+github.com/myzhan/boomer[[:space:]]+$BOOMER_VERSION" ||
		die "bench/boomer is not built with boomer $BOOMER_VERSION"
	for p in "$P_BASE" "$P_METRICS"; do
		! port_busy "$p" || die "port $p is in use (set BENCH_PORT_BASE)"
	done
	# The open-file limit: 10,000 idle users keep up to ~1,000 connections,
	# and the baseline serves them.
	local need=$((IDLE_USERS + 1024))
	if (($(ulimit -n) < need)); then
		ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
	fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop PID [SIGNAL] stops a process we started (SIGINT by default, which
# makes wrk, Locust and canarylab print their summary), then forgets it.
stop() {
	local pid=$1 sig=${2:-INT} i
	kill -"$sig" "$pid" 2>/dev/null || true
	for i in $(seq 100); do
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
# (under 15 % busy, the baseline idle included) and says so when it is not.
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
threads_of() { awk '/^Threads:/ {print $2}' "/proc/$1/status"; }
fds_of() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# others_ticks PID... prints the CPU ticks used so far by every process
# but these and this script (whose waited-for children are in its own
# cutime): other load on the machine. Process times are exact (the
# scheduler's), unlike /proc/stat's per-core ticks, which are sampled and
# miss most of the busy time of a process that wakes thousands of times a
# second (the open model). A process that started and ended in between is
# counted in its parent's cutime when the parent waits for it.
# (cat fails when a process ends between the glob and its read: not an error.)
others_ticks() {
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v self="$$" -v skip=" $* " '
		{ pid = $1; line = $0; sub(/^.*\) /, "", line); split(line, f, " ")
		  if (pid == self || index(skip, " " pid " ")) next
		  t += f[12] + f[13] + f[14] + f[15] }
		END { printf "%.0f\n", t }'
}

# median of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END { if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2 }'; }

# client_snap FILE writes the established connections to the baseline
# (client side: their peer port is the baseline's), one per line: local
# address and bytes received. Only one generator runs at a time, so they
# are all its own.
client_snap() {
	ss -Htin state established "( dport = :$P_BASE )" | awk '
		/^[^ \t]/ { cur = $3; s[cur] = 0; next }
		{ for (i = 1; i <= NF; i++) if ($i ~ /^bytes_received:/) { v = $i; sub(/^bytes_received:/, "", v); s[cur] = v } }
		END { for (k in s) print k, s[k] }' >"$1"
}

# client_delta BEFORE AFTER prints the bytes received between two
# snapshots (a connection opened in between counts from 0) and how many
# connections that had carried answers closed in between (what they
# received after BEFORE is lost: the count is then low, and flagged).
# Connections that never carried one do not count: net/http's transport
# may dial a few more than it uses, which the server closes after its
# ReadHeaderTimeout.
client_delta() {
	awk 'NR == FNR { a[$1] = $2; next }
		{ if ($1 in a) { d += $2 - a[$1]; seen[$1] = 1 } else d += $2 }
		END { for (k in a) if (!(k in seen) && a[k] > 0) gone++; printf "%.0f %d\n", d, gone + 0 }' "$1" "$2"
}

header() {
	local commit
	commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	git diff --quiet HEAD -- 2>/dev/null || commit="$commit (+ uncommitted changes)"
	say "canarylab load generator benchmarks, $STAMP"
	say "commit:  $commit"
	[[ $CANARYLAB == "$BIN/canarylab" ]] || say "canarylab: $CANARYLAB (BENCH_CANARYLAB), not this tree's build"
	[[ -z $CANARYLAB_ALT ]] || say "canarylab-alt: $CANARYLAB_ALT (BENCH_CANARYLAB_ALT)"
	say "machine: $(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
	say "go:      $(go env GOVERSION); target server on core $SERVER_CPU, load generators on core $CLIENT_CPU (Go: GOMAXPROCS=1 by affinity)"
	say "tools:   boomer $BOOMER_VERSION, $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), Locust $(dpkg-query -W -f '${Version}' python3-locust 2>/dev/null || echo '?') (Debian, $(/usr/bin/python3 --version 2>&1))"
	say "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min) at start"
	say ""
}

# start_baseline starts bench/baseline on the server core; SRV_PID.
start_baseline() {
	taskset -c "$SERVER_CPU" "$BIN/baseline" -listen "127.0.0.1:$P_BASE" >"$WORK/baseline.log" 2>&1 &
	SRV_PID=$!
	PIDS+=("$SRV_PID")
	local i
	for i in $(seq 100); do
		curl -fsS -o /dev/null --max-time 1 "$BASE_URL/" 2>/dev/null && break
		kill -0 "$SRV_PID" 2>/dev/null || die "baseline exited at start: $(tail -5 "$WORK/baseline.log")"
		sleep 0.1
	done
	local len
	len=$(curl -fsS "$BASE_URL/" | wc -c)
	[[ $len == 44 ]] || die "the baseline answers $len bytes, not 44"
	# Every answer is the same size (the Date header's length is fixed):
	# bytes received over it is requests answered.
	RESP_BYTES=$(curl -fsS -D - -o /dev/null "$BASE_URL/" | wc -c)
	RESP_BYTES=$((RESP_BYTES + len))
}

# ---------------------------------------------------------------- throughput

# canarylab_bin NAME: the binary of canarylab or canarylab-alt.
canarylab_bin() { if [[ $1 == canarylab-alt ]]; then echo "$CANARYLAB_ALT"; else echo "$CANARYLAB"; fi; }
# canarylabs: canarylab, and canarylab-alt when there is one.
canarylabs() { if [[ -n $CANARYLAB_ALT ]]; then echo canarylab canarylab-alt; else echo canarylab; fi; }

write_locustfile() {
	cat >"$WORK/locustfile.py" <<'EOF'
# The benchmark's Locust user: FastHttpUser, no wait, GET / in a loop.
from locust import FastHttpUser, constant, task


class BenchUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def index(self):
        self.client.get("/")
EOF
}

# gen_start NAME TAG starts generator NAME on the client core against the
# baseline, for far longer than the measurement (it is stopped after it);
# GEN_PID is its pid (taskset execs it, so it is the generator's own).
gen_start() {
	local n=$1 out="$WORK/$1-$2"
	case $n in
	canarylab | canarylab-alt)
		taskset -c "$CLIENT_CPU" "$(canarylab_bin "$n")" load --host "$BASE_URL" --users "$USERS" --duration "${LONG_S}s" \
			--quiet --log-level warn --json "$out.json" >"$out.out" 2>&1 &
		;;
	boomer)
		taskset -c "$CLIENT_CPU" "$BIN/boomer" -url "$BASE_URL/" -users "$USERS" -spawn-rate 1000 \
			-max-idle-per-host 2000 -duration "${LONG_S}s" >"$out.out" 2>&1 &
		;;
	wrk)
		taskset -c "$CLIENT_CPU" wrk -t1 -c"$USERS" -d"${LONG_S}s" "$BASE_URL/" >"$out.out" 2>&1 &
		;;
	locust)
		taskset -c "$CLIENT_CPU" /usr/bin/locust -f "$WORK/locustfile.py" --headless -u "$USERS" -r "$USERS" \
			-t "${LONG_S}s" --host "$BASE_URL" --only-summary --loglevel WARNING --stop-timeout 0 >"$out.out" 2>&1 &
		;;
	*) die "unknown generator $n (BENCH_GENERATORS: canarylab, boomer, wrk, locust)" ;;
	esac
	GEN_PID=$!
	PIDS+=("$GEN_PID")
	GEN_OUT=$out.out
	# Running: every user has its connection open.
	local i conns=0
	for i in $(seq 300); do
		client_snap "$WORK/conns.now"
		conns=$(wc -l <"$WORK/conns.now")
		((conns >= USERS)) && return 0
		kill -0 "$GEN_PID" 2>/dev/null || die "$n exited at start: $(tail -5 "$GEN_OUT")"
		sleep 0.1
	done
	die "$n opened $conns connections in 30 s, not $USERS: $(tail -5 "$GEN_OUT")"
}

# gen_signal NAME: the signal that stops generator NAME and makes it print
# its summary (Locust ignores SIGINT while it runs; wrk dies silently on
# SIGTERM).
gen_signal() { if [[ $1 == wrk ]]; then echo INT; else echo TERM; fi; }

# measure NAME TAG runs generator NAME, lets it warm up, and measures it
# over DURATION into M_RPS, M_EFF (requests per CPU-second of the
# generator), M_GEN and M_SRV (the share of its core the generator and the
# server used) and M_MARK ("*" when skewed). Requests are counted from the
# bytes its connections received (each answer is RESP_BYTES), CPU from
# /proc/PID/stat, both over the same window, so start-up, ramp-up and
# shutdown are not in it. A run is skewed when other processes took more
# than 10 % of either core; it is rerun up to RETRIES times.
measure() {
	local n=$1 tag=$2 try
	for ((try = 0; try <= RETRIES; try++)); do
		gen_start "$n" "$tag-$try"
		nap "$WARM_S"
		local c0 g0 v0 o0 t0 c1 g1 v1 o1 t1 bytes gone
		client_snap "$WORK/conns.0"
		g0=$(cpu_ticks "$GEN_PID")
		v0=$(cpu_ticks "$SRV_PID")
		o0=$(others_ticks "$GEN_PID" "$SRV_PID")
		t0=$(date +%s.%N)
		nap "$DUR_S"
		client_snap "$WORK/conns.1"
		g1=$(cpu_ticks "$GEN_PID")
		v1=$(cpu_ticks "$SRV_PID")
		o1=$(others_ticks "$GEN_PID" "$SRV_PID")
		t1=$(date +%s.%N)
		stop "$GEN_PID" "$(gen_signal "$n")"
		c0=$(wc -l <"$WORK/conns.0")
		c1=$(wc -l <"$WORK/conns.1")
		read -r bytes gone < <(client_delta "$WORK/conns.0" "$WORK/conns.1")
		local v
		v=$(awk -v hz="$HZ" -v rb="$RESP_BYTES" -v bytes="$bytes" -v g0="$g0" -v g1="$g1" -v v0="$v0" -v v1="$v1" \
			-v o0="$o0" -v o1="$o1" -v t0="$t0" -v t1="$t1" 'BEGIN {
				wall = t1 - t0; req = bytes / rb; gen = (g1 - g0) / hz; srv = (v1 - v0) / hz
				printf "%.0f %.0f %.0f %.0f %.0f %.0f %.3f\n", req / wall, (gen > 0) ? req / gen : 0,
					100 * gen / wall, 100 * srv / wall, 100 * (o1 - o0) / hz / wall, req, req - int(req) }')
		local others reqs frac
		read -r M_RPS M_EFF M_GEN M_SRV others reqs frac <<<"$v"
		{
			echo "# $n $tag try $try"
			echo "window ${DUR_S}s: $reqs requests ($bytes bytes / $RESP_BYTES, fraction $frac), $M_RPS rps, $M_EFF per generator CPU-second"
			echo "connections $c0 -> $c1 ($gone closed in the window); generator CPU ${M_GEN}%, server CPU ${M_SRV}%, other processes ${others}% of a core"
			echo "generator output:"
			sed 's/^/  /' "$GEN_OUT" | grep -vE '^  [|+]' | tail -40
		} >>"$WORK/throughput-$n.txt"
		((gone == 0)) || say "   WARNING: $n closed $gone connections during the window: its request count is low"
		M_MARK=""
		if ((others <= 10)); then
			return 0
		fi
		M_MARK="*"
		((try < RETRIES)) && sleep 5
	done
	SKEWED=$((SKEWED + 1))
}

throughput() {
	local names
	IFS=, read -r -a names <<<"$GENERATORS"
	local -A rps eff gen srv
	say "== throughput, closed model: $USERS users (wrk: connections) with no wait, GET / on bench/baseline"
	say "   $ROUNDS alternating rounds, median; each run measured over ${DUR_S}s after ${WARM_S}s of load"
	say "   canarylab   canarylab load --users $USERS --duration D (default plan: GET /, no wait)"
	say "   boomer      bench/boomer: boomer $BOOMER_VERSION NewStandaloneBoomer($USERS, 1000), net/http keep-alive GET"
	say "               (MaxIdleConnsPerHost 2000, as boomer's examples/http) + RecordSuccess"
	say "   wrk         wrk -t1 -c$USERS"
	say "   locust      locust --headless -u $USERS, FastHttpUser, wait_time = constant(0)"
	[[ -z $CANARYLAB_ALT ]] || say "   canarylab-alt  the same as canarylab, with BENCH_CANARYLAB_ALT"
	write_locustfile
	wait_quiet throughput
	start_baseline
	say "   requests: bytes received on the generator's connections / $RESP_BYTES bytes per answer;"
	say "   CPU: utime+stime of the generator process (/proc/PID/stat), over the same window"

	local round i k n
	for ((round = 0; round < ROUNDS; round++)); do
		local line="   round $((round + 1)):"
		for ((i = 0; i < ${#names[@]}; i++)); do
			k=$(((i + round) % ${#names[@]}))
			n=${names[$k]}
			measure "$n" "r$((round + 1))"
			rps[$n]+=" $M_RPS"
			eff[$n]+=" $M_EFF"
			gen[$n]+=" $M_GEN"
			srv[$n]+=" $M_SRV"
			line+=$(printf ' %s %.0f/CPU-s (%.0f rps)%s;' "$n" "$M_EFF" "$M_RPS" "$M_MARK")
		done
		say "${line%;}"
	done
	((SKEWED == 0)) || say "   * other processes took over 10 % of a core during this measurement, even after $RETRIES retries"

	say ""
	say "   generator      rps (median)   generator CPU   server CPU   req per CPU-second   canarylab / this"
	local -A med
	for n in "${names[@]}"; do
		# shellcheck disable=SC2086
		med[$n]=$(median ${eff[$n]})
	done
	local cl=${med[canarylab]:-0}
	for n in "${names[@]}"; do
		local m g s
		# shellcheck disable=SC2086
		m=$(median ${rps[$n]})
		# shellcheck disable=SC2086
		g=$(median ${gen[$n]})
		# shellcheck disable=SC2086
		s=$(median ${srv[$n]})
		say "$(awk -v n="$n" -v m="$m" -v g="$g" -v s="$s" -v e="${med[$n]}" -v c="$cl" \
			'BEGIN { printf "   %-14s %11.0f   %12.0f%%   %9.0f%%   %18.0f   %16s", n, m, g, s, e, (c > 0 && e > 0) ? sprintf("%.2f", c / e) : "-" }')"
	done
	say "   (CPU: the share of its core each used in the window; the generator that does not"
	say "    fill its core is waiting for the server, which is why it is compared per CPU-second)"
	local c verdict
	for c in $(canarylabs); do
		[[ -n ${med[$c]:-} ]] || continue
		if [[ -n ${med[boomer]:-} ]]; then
			verdict=$(awk -v c="${med[$c]}" -v b="${med[boomer]}" 'BEGIN { printf "%.2f %s", c / b, (c >= 1.5 * b) ? "PASS" : "FAIL" }')
			say "   target: $c >= 1.5 x boomer per CPU-second: $verdict"
		fi
		if [[ -n ${med[wrk]:-} ]]; then
			verdict=$(awk -v c="${med[$c]}" -v w="${med[wrk]}" 'BEGIN { printf "%.2f %s", c / w, (c >= 0.5 * w) ? "PASS" : "FAIL" }')
			say "   target: $c >= 0.5 x wrk per CPU-second:    $verdict"
		fi
	done
	say ""
	stop "$SRV_PID" TERM
}

# ---------------------------------------------------------------- open

# open_run NAME runs canarylab (or canarylab-alt) in the open model and
# reports it.
open_run() {
	local name=$1 bin try j="$WORK/open-$1.json" TIMEFORMAT='%R %U %S'
	bin=$(canarylab_bin "$name")
	for ((try = 0; try <= RETRIES; try++)); do
		local o0 o1 tm t0 t1
		o0=$(others_ticks "$SRV_PID")
		t0=$(date +%s.%N)
		{ time taskset -c "$CLIENT_CPU" "$bin" load --host "$BASE_URL" --rate "$OPEN_RATE" --duration "$OPEN_DURATION" \
			--quiet --log-level warn --json "$j" >"$WORK/open-$name-$try.out" 2>&1; } 2>"$WORK/open-$name-$try.time" ||
			die "$name load --rate failed: $(tail -5 "$WORK/open-$name-$try.out")"
		t1=$(date +%s.%N)
		o1=$(others_ticks "$SRV_PID")
		tm=$(tail -1 "$WORK/open-$name-$try.time")
		cp "$j" "$WORK/open-$name-$try.json"
		local others gen
		# The generator has exited: its time is in this script's cutime,
		# so others_ticks leaves it out; time(1) gives it.
		read -r others gen < <(awk -v hz="$HZ" -v o0="$o0" -v o1="$o1" -v t0="$t0" -v t1="$t1" -v tm="$tm" 'BEGIN {
			split(tm, w, " "); printf "%.0f %.0f\n", 100 * (o1 - o0) / hz / (t1 - t0), 100 * (w[2] + w[3]) / w[1] }')
		echo "$name try $try: generator CPU ${gen}%, other processes ${others}% of a core (wall/user/sys $tm)" >>"$WORK/open.txt"
		OPEN_MARK=""
		((others <= 10)) && break
		OPEN_MARK=" (* other processes took over 10 % of a core)"
		((try < RETRIES)) && sleep 5
	done
	local o
	o=$(jq -r '[.open.targetRate, .open.achievedRate, .open.intended, .open.sent, .open.late, .open.dropped,
		.open.sendErrorP99Ms, .open.sendErrorP999Ms, .total.failures, .total.latencyMs.p50, .total.latencyMs.p99,
		.total.latencyMs.min] | @tsv' "$j")
	local target achieved intended sent late dropped p99 p999 failures lp50 lp99 lmin
	read -r target achieved intended sent late dropped p99 p999 failures lp50 lp99 lmin <<<"$o"
	say "   $name"
	say "$(awk -v t="$target" -v a="$achieved" -v i="$intended" -v s="$sent" -v l="$late" -v d="$dropped" -v f="$failures" -v g="$gen" 'BEGIN {
		printf "     achieved %.1f/s (%+.2f %% of %g), %d intended, %d sent, %d late (> 1 ms), %d dropped, %d failed; generator CPU %d%%",
			a, 100 * (a / t - 1), t, i, s, l, d, f, g }')$OPEN_MARK"
	say "     send-time error: p99 $p99 ms, p99.9 $p999 ms; response time (from the intended start): p50 $lp50 ms, p99 $lp99 ms, min $lmin ms"
	local ok_rate=PASS ok_err=PASS
	awk -v t="$target" -v a="$achieved" 'BEGIN { d = a / t - 1; exit !(d <= 0.01 && d >= -0.01) }' || ok_rate=FAIL
	awk -v p="$p99" 'BEGIN { exit !(p < 1) }' || ok_err=FAIL
	say "     target: achieved rate within 1 %: $ok_rate; send-time error p99 < 1 ms: $ok_err"
}

open_model() {
	say "== open model: canarylab load --rate $OPEN_RATE --duration $OPEN_DURATION --json, GET / on bench/baseline"
	say "   target: achieved rate within 1 % of $OPEN_RATE/s, p99 of the send-time error < 1 ms"
	wait_quiet "the open model"
	start_baseline
	local n
	for n in $(canarylabs); do open_run "$n"; done
	say ""
	stop "$SRV_PID" TERM
}

# ---------------------------------------------------------------- memory

# wait_for FILE PATTERN PID SECONDS waits for PATTERN in FILE.
wait_for() {
	local f=$1 pat=$2 pid=$3 i
	for i in $(seq $(($4 * 10))); do
		grep -qE "$pat" "$f" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# memory_canarylab NAME: canarylab (or canarylab-alt) with IDLE_USERS idle
# users, 4 s with none first (RSS before), then all of them at once; sets
# before, after, fds, thr and hwm of the caller.
memory_canarylab() {
	local name=$1 pid i up=0
	taskset -c "$CLIENT_CPU" "$(canarylab_bin "$name")" load --host "$BASE_URL" --plan "$WORK/idle.yaml" --stage 4s:0 \
		--stage "${LONG_S}s:$IDLE_USERS:$IDLE_USERS" --quiet --log-level warn \
		--metrics-listen "127.0.0.1:$P_METRICS" >"$WORK/memory-$name.out" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	for i in $(seq 30); do
		curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$P_METRICS/metrics" 2>/dev/null && up=1 && break
		sleep 0.1
	done
	((up)) || die "$name load --metrics-listen did not answer: $(tail -3 "$WORK/memory-$name.out")"
	sleep 1
	before=$(rss_kib "$pid")
	local ready=0 m
	for i in $(seq 600); do
		m=$(curl -fsS --max-time 1 "http://127.0.0.1:$P_METRICS/metrics" 2>/dev/null || true)
		if awk -v n="$IDLE_USERS" '/^canarylab_load_users / { u = $2 } /^canarylab_load_requests_total\{.*Aggregated/ { r = $2 }
			END { exit !(u == n && r >= n) }' <<<"$m"; then
			ready=1
			break
		fi
		sleep 0.1
	done
	((ready)) || die "$name did not reach $IDLE_USERS users that each made a request in 60 s"
	nap 3
	after=$(rss_kib "$pid")
	fds=$(fds_of "$pid")
	thr=$(threads_of "$pid")
	hwm=$(hwm_kib "$pid")
	curl -fsS -o "$WORK/memory-$name-metrics.txt" "http://127.0.0.1:$P_METRICS/metrics" || true
	stop "$pid"
}

# memory_boomer: bench/boomer with IDLE_USERS idle users; sets before,
# after, fds, thr and hwm of the caller.
memory_boomer() {
	local pid
	taskset -c "$CLIENT_CPU" "$BIN/boomer" -url "$BASE_URL/" -users "$IDLE_USERS" -spawn-rate "$IDLE_USERS" \
		-wait "$IDLE_WAIT" -duration "${LONG_S}s" -start-delay 3s >"$WORK/memory-boomer.out" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	nap 2
	before=$(rss_kib "$pid")
	wait_for "$WORK/memory-boomer.out" "^ready $IDLE_USERS\$" "$pid" 120 ||
		die "boomer did not reach $IDLE_USERS users: $(grep -vE '^[|+]' "$WORK/memory-boomer.out" | tail -3)"
	nap 3
	after=$(rss_kib "$pid")
	fds=$(fds_of "$pid")
	thr=$(threads_of "$pid")
	hwm=$(hwm_kib "$pid")
	stop "$pid"
}

memory() {
	local names
	read -r -a names <<<"$(canarylabs)"
	[[ ",$GENERATORS," != *",boomer,"* ]] || names+=(boomer)
	say "== memory per idle user: $IDLE_USERS users that made one request and wait $IDLE_WAIT, VmRSS before and after"
	say "   canarylab   canarylab load --stage 4s:0 --stage D:$IDLE_USERS:$IDLE_USERS, a plan with wait: constant($IDLE_WAIT)"
	say "   boomer      bench/boomer -users $IDLE_USERS -spawn-rate $IDLE_USERS -wait $IDLE_WAIT (each task: GET, then sleep)"
	say "   RSS before: the process up, no user yet; after: 3 s after the last user's first answer;"
	say "   $MEM_ROUNDS alternating rounds, median"
	wait_quiet memory
	start_baseline
	printf 'users:\n- name: IdleUser\n  wait: constant(%s)\n  tasks:\n  - request: {path: /}\n' "$IDLE_WAIT" >"$WORK/idle.yaml"
	local -A mb ma mu mf mt mh
	local round i k n before after fds thr hwm
	for ((round = 0; round < MEM_ROUNDS; round++)); do
		local line="   round $((round + 1)):"
		for ((i = 0; i < ${#names[@]}; i++)); do
			k=$(((i + round) % ${#names[@]}))
			n=${names[$k]}
			if [[ $n == boomer ]]; then memory_boomer; else memory_canarylab "$n"; fi
			echo "$n round $((round + 1)): before $before KiB, after $after KiB, fds $fds, threads $thr, VmHWM $hwm KiB" >>"$WORK/memory.txt"
			mb[$n]+=" $before"
			ma[$n]+=" $after"
			mu[$n]+=" $(awk -v b="$before" -v a="$after" -v u="$IDLE_USERS" 'BEGIN { printf "%.2f", (a - b) / u }')"
			mf[$n]+=" $fds"
			mt[$n]+=" $thr"
			mh[$n]+=" $hwm"
			line+=$(awk -v n="$n" -v b="$before" -v a="$after" -v u="$IDLE_USERS" -v f="$fds" 'BEGIN { printf " %s %.1f KiB/user (%d fds);", n, (a - b) / u, f }')
		done
		say "${line%;}"
	done
	say ""
	say "   generator      RSS before   RSS with $IDLE_USERS idle users   per user   peak (VmHWM)   open fds   threads"
	for n in "${names[@]}"; do
		# shellcheck disable=SC2086
		say "$(awk -v n="$n" -v b="$(median ${mb[$n]})" -v a="$(median ${ma[$n]})" -v pu="$(median ${mu[$n]})" \
			-v f="$(median ${mf[$n]})" -v t="$(median ${mt[$n]})" -v h="$(median ${mh[$n]})" \
			'BEGIN { printf "   %-14s %6.1f MiB   %21.1f MiB   %4.1f KiB   %8.1f MiB   %8d   %7d", n, b/1024, a/1024, pu, h/1024, f, t }')"
	done
	say "   (medians; per user is the median of the rounds' (after - before) / users. Open fds are"
	say "    mostly the idle keep-alive connections each keeps to the server)"
	say ""
	stop "$SRV_PID" TERM
}

# ---------------------------------------------------------------- go test -bench

gobench() {
	say "== go test -run='^\$' -bench=. -benchmem ./loadgen/ (in process, GOMAXPROCS=2)"
	wait_quiet gobench
	if go test -run='^$' -bench=. -benchmem ./loadgen/ >"$WORK/gobench.txt" 2>&1; then
		grep -E '^(Benchmark|cpu:)' "$WORK/gobench.txt" | sed 's/^/   /' | tee -a "$OUT"
	else
		say "   go test -bench failed:"
		tail -20 "$WORK/gobench.txt" | sed 's/^/   /' | tee -a "$OUT"
	fi
	say ""
}

# ---------------------------------------------------------------- main

install_tools
: >"$OUT"
header
has throughput && throughput
has open && open_model
has memory && memory
has gobench && gobench
say "results: ${OUT#"$ROOT"/}"

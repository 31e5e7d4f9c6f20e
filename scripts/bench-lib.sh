# Shared by the benchmark scripts (sourced, not run): a work directory removed at exit, free
# loopback ports, and a gateway started from a config and stopped at exit, with a bare TCP
# relay (socat) as the reference for what any extra hop costs.
#   work=$(bench_workdir NAME); bench_need TOOL...; port=$(freeport); bench_stop PID
#   bench_gateway CONFIG API_PORT; bench_relay LISTEN_PORT TARGET_HOST:PORT; median NUMBER...

gwpid=""
socatpid=""
agpid="" # an agent a script started (scripts/bench-agent.sh), stopped before the gateway
work=""
# bench_stop PID: TERM, then KILL after 10 s.
bench_stop() {
	local pid=$1
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
	kill -KILL "$pid" 2>/dev/null || true
}
bench_cleanup() {
	[ -n "$socatpid" ] && kill "$socatpid" 2>/dev/null || true
	bench_stop "$agpid"
	bench_stop "$gwpid"
	[ -n "$work" ] && rm -rf "$work"
	return 0
}
trap bench_cleanup EXIT

# bench_workdir NAME: makes the work directory (removed at exit) and prints it.
bench_workdir() { mktemp -d -t "airlock-$1-XXXXXX"; }

# bench_need TOOL...: fails when one is missing.
bench_need() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || { echo "$(basename "$0"): $tool missing (scripts/ensure-services.sh installs it)" >&2; exit 1; }
	done
}

# freeport: a loopback port nothing listens on, below Linux's ephemeral range (32768-60999, where
# a port may be a connection's local end though nothing listens on it), and not one this script
# was given before ($work/.ports keeps them: freeport runs in a subshell).
freeport() {
	local p used=$work/.ports
	while :; do
		p=$((20000 + RANDOM % 12000))
		grep -qx "$p" "$used" 2>/dev/null && continue
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p" >>"$used"; echo "$p"; return; }
	done
}

# bench_gateway CONFIG API_PORT: starts $work/airlock with CONFIG (log in $work/gateway.log),
# sets gwpid, and waits until /healthz answers. The admin's password is $bench_admin when set.
bench_gateway() {
	local config=$1 api=$2
	AIRLOCK_ADMIN_PASSWORD="${bench_admin:-bench-admin-$RANDOM}" "$work/airlock" gateway --config "$config" >"$work/gateway.log" 2>&1 &
	gwpid=$!
	for _ in $(seq 1 200); do
		curl -fsS "http://127.0.0.1:$api/healthz" >/dev/null 2>&1 && return 0
		kill -0 "$gwpid" 2>/dev/null || { cat "$work/gateway.log" >&2; exit 1; }
		sleep 0.1
	done
	echo "gateway not healthy" >&2
	cat "$work/gateway.log" >&2
	exit 1
}

# bench_relay LISTEN_PORT HOST:PORT: a bare TCP relay (socat), stopped at exit. nodelay on
# both sides, as the gateway's sockets (Go's default): without it Nagle's algorithm holds
# pipelined writes (sysbench oltp_read_only at 8 threads: 60 TPS).
bench_relay() {
	socat "TCP-LISTEN:$1,bind=127.0.0.1,fork,reuseaddr,nodelay" "TCP:$2,nodelay" &
	socatpid=$!
	sleep 0.3
}

# median NUMBER...: the median (of an even count, the mean of the middle two).
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

#!/usr/bin/env bash
# Benchmark of the agent hop (issue 8): pgbench -S directly against PostgreSQL, through the
# gateway dialling it itself, and through the gateway and an `airlock agent` (TLS + yamux
# tunnel, the handshake on the agent), in one run on one machine. The three are interleaved over
# ROUNDS rounds so that a change of the machine's load hits them alike; the report gives each
# round and the means, and the ratio gateway+agent / gateway-direct against the goal
# (the agent hop costs <= 15% of gateway-direct TPS, i.e. ratio >= 0.85).
# Usage: scripts/bench-agent.sh   (env: DURATION=15 seconds per run, ROUNDS=3, SCALE=10, CLIENTS=8,
#        AGENT_GOMAXPROCS=N for the agent process, default all cores)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-10}
CLIENTS=${CLIENTS:-8}
DB=airlock_bench_agent  # its own: scripts/bench.sh re-initialises airlock_bench
PGH=127.0.0.1 PGP=5432

. scripts/bench-lib.sh
work=$(bench_workdir bench-agent)

bench_need psql pgbench bc
unset PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSSLMODE PGAPPNAME

echo "== building ./cmd/airlock" >&2
go build -o "$work/airlock" ./cmd/airlock

echo "== preparing database $DB (pgbench -i -s $SCALE, directly)" >&2
if [ "$(psql -X -h $PGH -p $PGP -U postgres -d postgres -tAc "select 1 from pg_database where datname='$DB'")" != 1 ]; then
	psql -X -q -h $PGH -p $PGP -U postgres -d postgres -c "create database $DB"
fi
pgbench -q -i -s "$SCALE" -h $PGH -p $PGP -U postgres "$DB" >"$work/init.log" 2>&1 || { cat "$work/init.log" >&2; exit 1; }

api=$(freeport); pgport=$(freeport); agport=$(freeport)
password="bench-$RANDOM$RANDOM"
bench_admin="bench-admin-$RANDOM$RANDOM"
cat >"$work/config.yaml" <<YAML
data_dir: $work/data
listen:
  api: 127.0.0.1:$api
  postgres: 127.0.0.1:$pgport
  mysql: "off"
  ssh: "off"
  agents: 127.0.0.1:$agport
log:
  level: info
  format: json
users:
  - name: bench
    password: $password
    role: user
targets:
  - name: bench
    type: postgres
    address: $PGH:$PGP
    database: $DB
    username: postgres
    password: ""
  - name: bench-agent
    type: postgres
    agent: bench-agent
YAML
# The agent holds the same target's address and credential; the gateway holds neither.
cat >"$work/agent.yaml" <<YAML
log:
  level: info
  format: json
targets:
  - name: bench-agent
    type: postgres
    address: $PGH:$PGP
    database: $DB
    username: postgres
    password: ""
YAML
echo "== starting gateway (api :$api, postgres :$pgport, agents :$agport)" >&2
bench_gateway "$work/config.yaml" "$api"

echo "== registering and starting the agent" >&2
export HOME=$work XDG_CONFIG_HOME=$work/.config
echo "$bench_admin" | "$work/airlock" login --gateway "http://127.0.0.1:$api" --user admin >/dev/null 2>&1
token=$("$work/airlock" agents create bench-agent 2>/dev/null)
GOMAXPROCS=${AGENT_GOMAXPROCS:-$(nproc)} "$work/airlock" agent --token "$token" --config "$work/agent.yaml" >"$work/agent.log" 2>&1 &
agpid=$!
for _ in $(seq 1 100); do
	"$work/airlock" agents list 2>/dev/null | grep -q '^bench-agent  *connected' && break
	sleep 0.1
done
"$work/airlock" agents list | grep -q '^bench-agent  *connected' || { echo "agent not connected" >&2; cat "$work/agent.log" >&2; exit 1; }

# hung: a run that overstays its time keeps the goroutine dumps of both processes for study.
hung() {
	local keep
	keep=$(mktemp -d -t airlock-bench-agent-hang-XXXXXX)
	ss -tanpo >"$keep/sockets.txt" 2>&1 || true
	ps -eo pid,stat,wchan:32,args | grep -E 'pgbench|airlock' >"$keep/ps.txt" 2>&1 || true
	kill -QUIT "$agpid" "$gwpid" 2>/dev/null || true
	sleep 1
	cp "$work"/*.log "$keep"/
	echo "bench-agent: pgbench $1 did not finish in time; logs and goroutine dumps kept in $keep" >&2
	exit 1
}

# pgb WHERE ARGS... -> prints "tps latency_ms"
pgb() {
	local where=$1; shift
	local out limit=$((DURATION + 120)) code=0
	case $where in
	direct) out=$(timeout $limit pgbench -h $PGH -p $PGP -U postgres "$@" "$DB" 2>&1) || code=$? ;;
	gateway) out=$(PGPASSWORD="$password" timeout $limit pgbench -h 127.0.0.1 -p "$pgport" -U bench "$@" bench 2>&1) || code=$? ;;
	agent) out=$(PGPASSWORD="$password" timeout $limit pgbench -h 127.0.0.1 -p "$pgport" -U bench "$@" bench-agent 2>&1) || code=$? ;;
	esac
	[ "$code" = 124 ] && hung "$where $*"
	[ "$code" = 0 ] || { echo "$out" >&2; return 1; }
	local tps lat
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -n1)
	lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out" | head -n1)
	echo "$tps $lat"
}
# cpu PID: user+system CPU time of a process so far, in clock ticks.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# cpurun VAR WHERE ARGS...: runs pgb, sets VAR to "tps latency gw_us agent_us": the gateway's and
# the agent's CPU microseconds per transaction during the run.
cpurun() {
	local var=$1; shift
	local g0 a0 g1 a1 res tps lat hz
	hz=$(getconf CLK_TCK)
	g0=$(cpu "$gwpid"); a0=$(cpu "$agpid")
	res=$(pgb "$@")
	g1=$(cpu "$gwpid"); a1=$(cpu "$agpid")
	read -r tps lat <<<"$res"
	local n
	n=$(echo "$tps * $DURATION" | bc -l)
	printf -v "$var" '%s %s %.0f %.0f' "$tps" "$lat" "$(echo "($g1 - $g0) * 1000000 / $hz / $n" | bc -l)" "$(echo "($a1 - $a0) * 1000000 / $hz / $n" | bc -l)"
}
ratio() { printf '%.3f' "$(echo "scale=4; $1 / $2" | bc -l)"; }
int() { printf '%.0f' "$1"; }
mean() { echo "$@" | tr ' ' '\n' | awk '{s+=$1; n++} END {printf "%.1f", s/n}'; }

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
declare -a D G A D1 G1 A1 GC AGC AAC
rows=""
for r in $(seq 1 "$ROUNDS"); do
	echo "== round $r/$ROUNDS: pgbench -n -S -c $CLIENTS -j 2 -T $DURATION, then -c 1" >&2
	read -r d _ < <(pgb direct -n -S -c "$CLIENTS" -j 2 -T "$DURATION")
	cpurun resg gateway -n -S -c "$CLIENTS" -j 2 -T "$DURATION"
	cpurun resa agent -n -S -c "$CLIENTS" -j 2 -T "$DURATION"
	read -r g _ gcpu _ <<<"$resg"
	read -r a _ agcpu aacpu <<<"$resa"
	GC+=("$gcpu"); AGC+=("$agcpu"); AAC+=("$aacpu")
	read -r d1 dl < <(pgb direct -n -S -c 1 -T "$DURATION")
	read -r g1 gl < <(pgb gateway -n -S -c 1 -T "$DURATION")
	read -r a1 al < <(pgb agent -n -S -c 1 -T "$DURATION")
	D+=("$d"); G+=("$g"); A+=("$a"); D1+=("$d1"); G1+=("$g1"); A1+=("$a1")
	rows+="| $r | $(int "$d") | $(int "$g") | $(int "$a") | $(ratio "$a" "$g") | $(int "$d1") | $(int "$g1") | $(int "$a1") ($dl / $gl / $al ms) | $(ratio "$a1" "$g1") |"$'\n'
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
md=$(mean "${D[@]}"); mg=$(mean "${G[@]}"); ma=$(mean "${A[@]}")
md1=$(mean "${D1[@]}"); mg1=$(mean "${G1[@]}"); ma1=$(mean "${A1[@]}")
hop=$(ratio "$ma" "$mg")
met=NO; [ "$(echo "$hop >= 0.85" | bc -l)" = 1 ] && met=yes

cat <<REPORT

machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), PostgreSQL $(psql -X -h $PGH -p $PGP -U postgres -d postgres -tAc 'show server_version'), pgbench scale $SCALE, ${DURATION}s per run, $ROUNDS rounds
load average (1, 5, 15 min): $load_start at the start, $load_end at the end; agent GOMAXPROCS ${AGENT_GOMAXPROCS:-$(nproc)}

| round | direct -c $CLIENTS | gateway -c $CLIENTS | gateway+agent -c $CLIENTS | agent/gateway | direct -c 1 | gateway -c 1 | gateway+agent -c 1 (latency d/g/a) | agent/gateway -c 1 |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
${rows}| mean | $(int "$md") | $(int "$mg") | $(int "$ma") | **$hop** | $(int "$md1") | $(int "$mg1") | $(int "$ma1") | $(ratio "$ma1" "$mg1") |

CPU per transaction (-c $CLIENTS, means): gateway $(mean "${GC[@]}") us when it dials the target itself; via the agent, gateway $(mean "${AGC[@]}") us + agent $(mean "${AAC[@]}") us.
gateway/direct: $(ratio "$mg" "$md") (-c $CLIENTS), $(ratio "$mg1" "$md1") (-c 1); gateway+agent/direct: $(ratio "$ma" "$md") (-c $CLIENTS).
goal: gateway+agent >= 0.85 of gateway-direct TPS (-c $CLIENTS, means): $met ($hop)
REPORT
for f in gateway agent; do
	if grep -q '"level":"ERROR"' "$work/$f.log"; then
		echo "$f logged errors:" >&2
		grep '"level":"ERROR"' "$work/$f.log" | tail -n 5 >&2
	fi
done

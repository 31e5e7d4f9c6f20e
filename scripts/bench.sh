#!/usr/bin/env bash
# Benchmark: the same workloads directly against PostgreSQL and through a gateway (recording
# on, default settings, clients on their default sslmode=prefer both ways). Prints each figure
# direct vs gateway and the ratio, against the targets of issue 2:
#   select-only TPS >= 0.56 of direct, added mean latency <= 100 us, 2M rows within 1.1x.
# Then select-only through a target with recording.mode best-effort and one whose policy turns
# recording off, against the first (strict): what recording every event before forwarding costs
# (issue 3: strict costs <= 10% of the TPS with recording off).
# Usage: scripts/bench.sh   (env: DURATION=10 seconds per pgbench run, ROUNDS=3, SCALE=10)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-10}
DB=airlock_bench
PGH=127.0.0.1 PGP=5432

. scripts/bench-lib.sh
work=$(bench_workdir bench)

for tool in psql pgbench; do
	command -v "$tool" >/dev/null || { echo "bench: $tool missing (scripts/ensure-services.sh installs it)" >&2; exit 1; }
done
# socat is the floor: a bare TCP relay that parses and records nothing, measured in the same run
# so that the gateway's added latency can be read against what any extra hop costs here.
if ! command -v socat >/dev/null; then
	echo "== installing socat (the bare-relay reference)" >&2
	apt-get install -y -qq socat >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq socat; } >/dev/null
fi
unset PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE PGSSLMODE PGAPPNAME

echo "== building ./cmd/airlock" >&2
go build -o "$work/airlock" ./cmd/airlock

echo "== preparing database $DB (pgbench -i -s $SCALE, directly)" >&2
if [ "$(psql -X -h $PGH -p $PGP -U postgres -d postgres -tAc "select 1 from pg_database where datname='$DB'")" != 1 ]; then
	psql -X -q -h $PGH -p $PGP -U postgres -d postgres -c "create database $DB"
fi
pgbench -q -i -s "$SCALE" -h $PGH -p $PGP -U postgres "$DB" >"$work/init.log" 2>&1 || { cat "$work/init.log" >&2; exit 1; }

api=$(freeport); pgport=$(freeport)
while [ "$pgport" = "$api" ]; do pgport=$(freeport); done
password="bench-$RANDOM$RANDOM"
cat >"$work/config.yaml" <<YAML
data_dir: $work/data
listen:
  api: 127.0.0.1:$api
  postgres: 127.0.0.1:$pgport
  mysql: "off"
  ssh: "off"
log:
  level: warn
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
  - name: bench-be
    type: postgres
    address: $PGH:$PGP
    database: $DB
    username: postgres
    password: ""
    recording:
      mode: best-effort
  - name: bench-off
    type: postgres
    address: $PGH:$PGP
    database: $DB
    username: postgres
    password: ""
policies:
  - name: everyone
    subjects: ["*"]
    targets: ["*"]
    access: allow
  - name: unrecorded
    subjects: ["*"]
    targets: ["bench-off"]
    access: allow
    recording: "off"
YAML
echo "== starting gateway (api :$api, postgres :$pgport)" >&2
bench_gateway "$work/config.yaml" "$api"

relayport=$(freeport)
bench_relay "$relayport" "$PGH:$PGP"

direct=(-h $PGH -p $PGP -U postgres)
relay=(-h 127.0.0.1 -p "$relayport" -U postgres)
gateway=(-h 127.0.0.1 -p "$pgport" -U bench)

# pgb WHERE ARGS... -> prints "tps latency_ms"
pgb() {
	local where=$1; shift
	local out
	if [ "$where" = direct ]; then
		out=$(pgbench "${direct[@]}" "$@" "$DB" 2>&1) || { echo "$out" >&2; return 1; }
	elif [ "$where" = relay ]; then
		out=$(pgbench "${relay[@]}" "$@" "$DB" 2>&1) || { echo "$out" >&2; return 1; }
	elif [ "$where" = best-effort ]; then
		out=$(PGPASSWORD="$password" pgbench "${gateway[@]}" "$@" bench-be 2>&1) || { echo "$out" >&2; return 1; }
	elif [ "$where" = off ]; then
		out=$(PGPASSWORD="$password" pgbench "${gateway[@]}" "$@" bench-off 2>&1) || { echo "$out" >&2; return 1; }
	else
		out=$(PGPASSWORD="$password" pgbench "${gateway[@]}" "$@" bench 2>&1) || { echo "$out" >&2; return 1; }
	fi
	local tps lat
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -n1)
	lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out" | head -n1)
	echo "$tps $lat"
}

# rows2m WHERE BEST -> the lower of BEST (may be empty) and one more wall time, in seconds
rows2m() {
	local where=$1 best=$2 t0 t1 d
	local q="select g, md5(g::text) from generate_series(1,2000000) g"
	t0=$(date +%s.%N)
	if [ "$where" = direct ]; then
		psql -X -q "${direct[@]}" -d "$DB" -c "$q" -o /dev/null
	else
		PGPASSWORD="$password" psql -X -q "${gateway[@]}" -d bench -c "$q" -o /dev/null
	fi
	t1=$(date +%s.%N)
	d=$(echo "$t1 - $t0" | bc -l)
	if [ -z "$best" ] || [ "$(echo "$d < $best" | bc -l)" = 1 ]; then best=$d; fi
	printf '%.3f\n' "$best"
}

ratio() { printf '%.3f' "$(echo "scale=4; $1 / $2" | bc -l)"; }
int() { printf '%.0f' "$1"; }

# The host's speed drifts by tens of percent from minute to minute (a shared VM), so every
# comparison runs its paths alternately, ROUNDS times (the order flipped every round), and
# reports the median of each path and the median of the per-round ratios: two runs of one
# round are seconds apart, which is what makes their ratio mean something.
# rounds OUT WHERE... ARGS...: for each WHERE, OUT_<WHERE> gets the "tps latency" of each round.
# paths are given up to "--", pgbench arguments after it.
rounds() {
	local out=$1; shift
	local where=() w r i n
	while [ "$1" != -- ]; do where+=("$1"); shift; done
	shift
	n=${#where[@]}
	for w in "${where[@]}"; do eval "${out}_${w//-/_}=()"; done
	for r in $(seq 1 "$ROUNDS"); do
		for i in $(seq 0 $((n - 1))); do
			if [ $((r % 2)) = 1 ]; then w=${where[$i]}; else w=${where[$((n - 1 - i))]}; fi
			local res
			res=$(pgb "$w" "$@")
			eval "${out}_${w//-/_}+=(\"\$res\")"
		done
	done
}
# field N "tps lat"... -> the Nth field of each
field() { local n=$1 x; shift; for x in "$@"; do echo "$x" | cut -d' ' -f"$n"; done; }
# per_round OP A[@] B[@]: B/A (OP ratio) or (B-A)*1000 (OP diff_us) round by round, of field 1 or 2
per_round() {
	local op=$1 f=$2; shift 2
	local -n a=$1 b=$2
	local i
	for i in "${!a[@]}"; do
		local x y
		x=$(echo "${a[$i]}" | cut -d' ' -f"$f"); y=$(echo "${b[$i]}" | cut -d' ' -f"$f")
		if [ "$op" = ratio ]; then echo "scale=4; $y / $x" | bc -l; else echo "($y - $x) * 1000" | bc -l; fi
	done
}

echo "== pgbench -S -c 8 -j 2 -T $DURATION, $ROUNDS rounds, direct, gateway and socat alternately" >&2
rounds S8 direct gateway relay -- -n -S -c 8 -j 2 -T "$DURATION"
s8d=$(median $(field 1 "${S8_direct[@]}")); s8g=$(median $(field 1 "${S8_gateway[@]}")); s8x=$(median $(field 1 "${S8_relay[@]}"))
s8r=$(median $(per_round ratio 1 S8_direct S8_gateway)); s8xr=$(printf '%.3f' "$(median $(per_round ratio 1 S8_direct S8_relay))")
echo "== pgbench (tpcb-like) -c 8 -j 2 -T $DURATION, $ROUNDS rounds" >&2
rounds T8 direct gateway -- -c 8 -j 2 -T "$DURATION"
t8d=$(median $(field 1 "${T8_direct[@]}")); t8g=$(median $(field 1 "${T8_gateway[@]}"))
t8r=$(median $(per_round ratio 1 T8_direct T8_gateway))
echo "== pgbench -S -c 1 -T $DURATION, $ROUNDS rounds, direct, gateway and socat" >&2
rounds S1 direct gateway relay -- -n -S -c 1 -T "$DURATION"
s1d=$(median $(field 1 "${S1_direct[@]}")); s1g=$(median $(field 1 "${S1_gateway[@]}")); s1r=$(median $(field 1 "${S1_relay[@]}"))
l1d=$(median $(field 2 "${S1_direct[@]}")); l1g=$(median $(field 2 "${S1_gateway[@]}")); l1r=$(median $(field 2 "${S1_relay[@]}"))
added_us=$(median $(per_round diff_us 2 S1_direct S1_gateway))
relay_us=$(median $(per_round diff_us 2 S1_direct S1_relay))
echo "== pgbench -S -c 8 -j 2 -T $DURATION, $ROUNDS rounds, strict, best-effort and recording off" >&2
rounds RM gateway best-effort off -- -n -S -c 8 -j 2 -T "$DURATION"
s8s=$(median $(field 1 "${RM_gateway[@]}")); s8b=$(median $(field 1 "${RM_best_effort[@]}")); s8o=$(median $(field 1 "${RM_off[@]}"))
sor=$(median $(per_round ratio 1 RM_off RM_gateway)); sbr=$(median $(per_round ratio 1 RM_best_effort RM_gateway))
echo "== 2M rows through psql to /dev/null, best of 3 each, alternately" >&2
r2d="" r2g=""
for _ in 1 2 3; do
	r2d=$(rows2m direct "$r2d")
	r2g=$(rows2m gateway "$r2g")
done

added_us=$(printf '%.0f' "$added_us"); relay_us=$(printf '%.0f' "$relay_us")
s8r=$(printf '%.3f' "$s8r"); t8r=$(printf '%.3f' "$t8r"); sor=$(printf '%.3f' "$sor"); sbr=$(printf '%.3f' "$sbr"); r2r=$(ratio "$r2g" "$r2d")
pass() { if [ "$(echo "$1" | bc -l)" = 1 ]; then echo "yes"; else echo "NO"; fi; }

cat <<REPORT

machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), PostgreSQL $(psql -X "${direct[@]}" -d postgres -tAc 'show server_version'), pgbench scale $SCALE, ${DURATION}s per run, $ROUNDS rounds (figures: medians; ratios and added latency: the median of the per-round values)

| workload | direct | gateway | ratio (gateway/direct) | target | met |
| --- | ---: | ---: | ---: | --- | --- |
| pgbench -S -c 8 -j 2 (TPS) | $(int $s8d) | $(int $s8g) | $s8r | >= 0.56 | $(pass "$s8r >= 0.56") |
| pgbench tpcb-like -c 8 -j 2 (TPS) | $(int $t8d) | $(int $t8g) | $t8r | (none) | - |
| pgbench -S -c 1 (TPS) | $(int $s1d) | $(int $s1g) | $(ratio "$s1g" "$s1d") | (none) | - |
| pgbench -S -c 1 (mean latency, ms) | $l1d | $l1g | $(ratio "$l1g" "$l1d") | added <= 100 us (here: ${added_us} us) | $(pass "$added_us <= 100") |
| 2M rows psql to /dev/null (s, best of 3, alternately) | $r2d | $r2g | $r2r | <= 1.1 | $(pass "$r2r <= 1.1") |

| recording, pgbench -S -c 8 -j 2 (TPS) | off | best-effort | strict | strict/off | strict/best-effort | target | met |
| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |
| select-only | $(int $s8o) | $(int $s8b) | $(int $s8s) | $sor | $sbr | strict/off >= 0.90 | $(pass "$sor >= 0.90") |

Reference: a bare TCP relay (socat, same TLS end to end as direct) on the same path adds ${relay_us} us of
mean latency at -S -c 1 (latency $l1r ms, $(int $s1r) TPS), and gets $(int $s8x) TPS at -S -c 8 ($s8xr of direct):
the cost of one extra hop on this machine.
REPORT
if grep -q '"level":"ERROR"' "$work/gateway.log"; then
	echo "gateway logged errors:" >&2
	grep '"level":"ERROR"' "$work/gateway.log" | tail -n 5 >&2
fi

# The MySQL engine's benchmark (issue 10), when MariaDB/MySQL answers on 127.0.0.1:3306.
if [ "${MYSQL_BENCH:-1}" != 0 ] && mariadb --no-defaults -h 127.0.0.1 -P 3306 -u root -e 'select 1' >/dev/null 2>&1; then
	DURATION=$DURATION scripts/bench-mysql.sh
fi

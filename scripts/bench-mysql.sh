#!/usr/bin/env bash
# Benchmark of the MySQL engine: sysbench directly against MariaDB and through a gateway
# (recording on, strict, default settings) in one run, against the targets of issue 10:
#   oltp_read_only (8 threads) TPS >= 0.6 of direct, added mean latency <= 100 us.
# The client reaches the gateway over TLS (the password must not cross in clear); the local
# MariaDB has no TLS, so direct is plain. A plaintext-loopback gateway listener and a bare TCP
# relay (socat) are measured in the same run, to tell TLS and the extra hop from the gateway.
# Usage: scripts/bench-mysql.sh   (env: DURATION=10 seconds per run, ROUNDS=3, TABLES=4, TABLE_SIZE=10000)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
TABLES=${TABLES:-4}
TABLE_SIZE=${TABLE_SIZE:-10000}
DB=airlock_bench
MYH=127.0.0.1 MYP=3306

. scripts/bench-lib.sh
work=$(bench_workdir bench-mysql)

for tool in mariadb sysbench openssl socat curl bc; do
	command -v "$tool" >/dev/null || { echo "bench-mysql: $tool missing (scripts/ensure-services.sh installs it)" >&2; exit 1; }
done

loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== building ./cmd/airlock" >&2
go build -o "$work/airlock" ./cmd/airlock

echo "== preparing database $DB (sysbench oltp_read_only prepare, $TABLES x $TABLE_SIZE rows, directly)" >&2
mariadb --no-defaults -h $MYH -P $MYP -u root -e "drop database if exists $DB; create database $DB"
sysbench oltp_read_only --mysql-host=$MYH --mysql-port=$MYP --mysql-user=root --mysql-db=$DB \
	--tables="$TABLES" --table-size="$TABLE_SIZE" prepare >"$work/prepare.log" 2>&1 || { cat "$work/prepare.log" >&2; exit 1; }

api=$(freeport); pgport=$(freeport); myport=$(freeport); myplain=$(freeport)
password="bench-$RANDOM$RANDOM"
cat >"$work/config.yaml" <<YAML
data_dir: $work/data
listen:
  api: 127.0.0.1:$api
  postgres: 127.0.0.1:$pgport
  mysql: 127.0.0.1:$myport
  ssh: "off"
mysql:
  allow_plaintext_loopback: true
log:
  level: warn
  format: json
users:
  - name: bench
    password: $password
    role: user
targets:
  - name: bench
    type: mysql
    address: $MYH:$MYP
    database: $DB
    username: root
    password: ""
YAML
echo "== starting gateway (api :$api, mysql :$myport)" >&2
bench_gateway "$work/config.yaml" "$api"
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$myport") 2>/dev/null && break; sleep 0.1; done

relayport=$(freeport)
bench_relay "$relayport" "$MYH:$MYP"

# sysbench --mysql-ssl=on loads client-key.pem, client-cert.pem and cacert.pem from its working
# directory.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/client-key.pem" \
	-out "$work/client-cert.pem" -days 1 -subj /CN=sysbench >/dev/null 2>&1
cp "$work/data/tls/cert.pem" "$work/cacert.pem"

common=(--tables="$TABLES" --table-size="$TABLE_SIZE" --time="$DURATION" --report-interval=0)
# sb WHERE TEST THREADS -> prints "tps qps"
sb() {
	local where=$1 test=$2 threads=$3 out
	local conn
	case $where in
	direct) conn=(--mysql-host=$MYH --mysql-port=$MYP --mysql-user=root --mysql-db=$DB) ;;
	relay) conn=(--mysql-host=127.0.0.1 --mysql-port="$relayport" --mysql-user=root --mysql-db=$DB) ;;
	gateway) conn=(--mysql-host=127.0.0.1 --mysql-port="$myport" --mysql-user=bench --mysql-password="$password" --mysql-db=bench --mysql-ssl=on) ;;
	plain) conn=(--mysql-host=127.0.0.1 --mysql-port="$myport" --mysql-user=bench --mysql-password="$password" --mysql-db=bench) ;;
	esac
	# libmariadb loads the mysql_clear_password plugin lazily and races when threads connect at
	# once ("could not be loaded: it is already loaded"); LIBMYSQL_PLUGINS loads it up front.
	out=$(cd "$work" && LIBMYSQL_PLUGINS=mysql_clear_password sysbench "$test" "${conn[@]}" "${common[@]}" --threads="$threads" run 2>&1) ||
		{ echo "$out" >&2; return 1; }
	local tps qps
	tps=$(sed -n 's/^ *transactions: *[0-9]* *(\([0-9.]*\) per sec.)/\1/p' <<<"$out" | head -n1)
	qps=$(sed -n 's/^ *queries: *[0-9]* *(\([0-9.]*\) per sec.)/\1/p' <<<"$out" | head -n1)
	echo "$tps $qps"
}

ratio() { printf '%.3f' "$(echo "scale=4; $1 / $2" | bc -l)"; }
int() { printf '%.0f' "$1"; }
us() { printf '%.1f' "$(echo "1000000 / $1" | bc -l)"; } # mean microseconds per query at 1 thread

# rounds OUT TEST THREADS FIELD WHERE...: ROUNDS rounds of sysbench on each path, one after the
# other, the order flipped every round (the host's speed drifts from minute to minute); OUT_WHERE
# gets each round's FIELD (1: TPS, 2: QPS) in round order.
rounds() {
	local out=$1 test=$2 threads=$3 field=$4; shift 4
	local where=("$@") n=$# r i w v
	for w in "${where[@]}"; do eval "${out}_$w=()"; done
	for r in $(seq 1 "$ROUNDS"); do
		for i in $(seq 0 $((n - 1))); do
			if [ $((r % 2)) = 1 ]; then w=${where[$i]}; else w=${where[$((n - 1 - i))]}; fi
			v=$(sb "$w" "$test" "$threads" | cut -d' ' -f"$field")
			eval "${out}_$w+=($v)"
		done
	done
}
# per_round OP A B: B/A (ratio) or B-A (diff) of the arrays named A and B, round by round
per_round() {
	local op=$1
	local -n a=$2 b=$3
	local i
	for i in "${!a[@]}"; do
		if [ "$op" = ratio ]; then echo "scale=4; ${b[$i]} / ${a[$i]}" | bc -l; else echo "${b[$i]} - ${a[$i]}" | bc -l; fi
	done
}

echo "== sysbench oltp_read_only --threads=8 --time=$DURATION, $ROUNDS rounds" >&2
rounds R8 oltp_read_only 8 1 direct gateway plain relay
r8d=$(median "${R8_direct[@]}"); r8g=$(median "${R8_gateway[@]}"); r8p=$(median "${R8_plain[@]}"); r8x=$(median "${R8_relay[@]}")
r8xr=$(printf '%.3f' "$(median $(per_round ratio R8_direct R8_relay))")
r8r=$(printf '%.3f' "$(median $(per_round ratio R8_direct R8_gateway))")
r8pr=$(printf '%.3f' "$(median $(per_round ratio R8_direct R8_plain))")
echo "== sysbench oltp_point_select --threads=1 --time=$DURATION, $ROUNDS rounds" >&2
rounds Q1 oltp_point_select 1 2 direct gateway plain relay
# mean microseconds per query at 1 thread, round by round
for w in direct gateway plain relay; do
	eval "L1_$w=()"
	eval 'for q in "${Q1_'$w'[@]}"; do L1_'$w'+=($(us "$q")); done'
done
l1d=$(median "${L1_direct[@]}"); l1g=$(median "${L1_gateway[@]}"); l1p=$(median "${L1_plain[@]}"); l1r=$(median "${L1_relay[@]}")
added=$(printf '%.0f' "$(median $(per_round diff L1_direct L1_gateway))")
addedp=$(printf '%.0f' "$(median $(per_round diff L1_direct L1_plain))")
addedr=$(printf '%.0f' "$(median $(per_round diff L1_direct L1_relay))")
pass() { if [ "$(echo "$1" | bc -l)" = 1 ]; then echo "yes"; else echo "NO"; fi; }

cat <<REPORT

machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), $(mariadb --no-defaults -h $MYH -P $MYP -u root -N -e 'select version()'), sysbench $TABLES tables x $TABLE_SIZE rows, ${DURATION}s per run, $ROUNDS rounds (figures: medians; ratios and added latency: the median of the per-round values), load average before the run: $loadavg

| workload | direct | gateway (TLS) | ratio | target | met | gateway (plain loopback) |
| --- | ---: | ---: | ---: | --- | --- | ---: |
| oltp_read_only --threads=8 (TPS) | $(int "$r8d") | $(int "$r8g") | $r8r | >= 0.6 | $(pass "$r8r >= 0.6") | $(int "$r8p") ($r8pr) |
| oltp_point_select --threads=1 (mean us per query) | $l1d | $l1g | $(ratio "$l1g" "$l1d") | added <= 100 us (here: $added us) | $(pass "$added <= 100") | $l1p (+$addedp us) |

Reference: a bare TCP relay (socat) gets $(int "$r8x") TPS on oltp_read_only ($r8xr of direct) and adds $addedr us per point select ($l1r us).
REPORT
if grep -q '"level":"ERROR"' "$work/gateway.log"; then
	echo "gateway logged errors:" >&2
	grep '"level":"ERROR"' "$work/gateway.log" | tail -n 5 >&2
fi

#!/usr/bin/env bash
# Benchmark of the MySQL engine: sysbench directly against MariaDB and through a gateway
# (recording on, strict, default settings) in one run, against the targets of issue 10:
#   oltp_read_only (8 threads) TPS >= 0.6 of direct, added mean latency <= 100 us.
# The client reaches the gateway over TLS (the password must not cross in clear); the local
# MariaDB has no TLS, so direct is plain. A plaintext-loopback gateway listener and a bare TCP
# relay (socat) are measured in the same run, to tell TLS and the extra hop from the gateway.
# Usage: scripts/bench-mysql.sh   (env: DURATION=20 seconds per run, TABLES=4, TABLE_SIZE=10000)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
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

echo "== sysbench oltp_read_only --threads=8 --time=$DURATION" >&2
read -r r8d _ < <(sb direct oltp_read_only 8)
read -r r8g _ < <(sb gateway oltp_read_only 8)
read -r r8p _ < <(sb plain oltp_read_only 8)
echo "== sysbench oltp_point_select --threads=1 --time=$DURATION" >&2
read -r _ q1d < <(sb direct oltp_point_select 1)
read -r _ q1g < <(sb gateway oltp_point_select 1)
read -r _ q1p < <(sb plain oltp_point_select 1)
read -r _ q1r < <(sb relay oltp_point_select 1)

l1d=$(us "$q1d"); l1g=$(us "$q1g"); l1p=$(us "$q1p"); l1r=$(us "$q1r")
added=$(printf '%.0f' "$(echo "$l1g - $l1d" | bc -l)")
addedp=$(printf '%.0f' "$(echo "$l1p - $l1d" | bc -l)")
addedr=$(printf '%.0f' "$(echo "$l1r - $l1d" | bc -l)")
r8r=$(ratio "$r8g" "$r8d")
pass() { if [ "$(echo "$1" | bc -l)" = 1 ]; then echo "yes"; else echo "NO"; fi; }

cat <<REPORT

machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1), $(mariadb --no-defaults -h $MYH -P $MYP -u root -N -e 'select version()'), sysbench $TABLES tables x $TABLE_SIZE rows, ${DURATION}s per run, load average before the run: $loadavg

| workload | direct | gateway (TLS) | ratio | target | met | gateway (plain loopback) |
| --- | ---: | ---: | ---: | --- | --- | ---: |
| oltp_read_only --threads=8 (TPS) | $(int "$r8d") | $(int "$r8g") | $r8r | >= 0.6 | $(pass "$r8r >= 0.6") | $(int "$r8p") ($(ratio "$r8p" "$r8d")) |
| oltp_point_select --threads=1 (mean us per query) | $l1d | $l1g | $(ratio "$l1g" "$l1d") | added <= 100 us (here: $added us) | $(pass "$added <= 100") | $l1p (+$addedp us) |

Reference: a bare TCP relay (socat) adds $addedr us per point select ($l1r us).
REPORT
if grep -q '"level":"ERROR"' "$work/gateway.log"; then
	echo "gateway logged errors:" >&2
	grep '"level":"ERROR"' "$work/gateway.log" | tail -n 5 >&2
fi

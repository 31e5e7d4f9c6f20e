#!/usr/bin/env bash
# Makes sure what the test suite and the benchmark need is there: the PostgreSQL and MariaDB
# servers running and answering, the client tools (psql, pgbench, pg_dump, mariadb) installed,
# and PostgreSQL's database `test`. Idempotent; quick when everything is already up.
set -euo pipefail

log() { echo "ensure-services: $*" >&2; }

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Client tools, installed from Debian's packages when missing (apt-get update once, first).
apt_updated=0
need_pkg() { # need_pkg COMMAND PACKAGE
	command -v "$1" >/dev/null 2>&1 && return 0
	if [ "$apt_updated" = 0 ]; then
		log "installing missing tools: apt-get update"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
		apt_updated=1
	fi
	log "installing $2 (for $1)"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need_pkg psql postgresql-client
need_pkg pgbench postgresql-client
need_pkg pg_dump postgresql-client
need_pkg pg_isready postgresql-client
need_pkg mariadb mariadb-client
need_pkg make make
need_pkg bc bc
need_pkg curl curl

# PostgreSQL on 127.0.0.1:5432.
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
	if [ -d /etc/postgresql ] && [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
		ver=$(ls /etc/postgresql | sort -V | tail -n1)
		log "starting PostgreSQL $ver"
		as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
	else
		log "PostgreSQL server is not installed (no /etc/postgresql)"
	fi
fi
for i in $(seq 1 60); do
	pg_isready -q -h 127.0.0.1 -p 5432 && break
	sleep 0.5
done
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
	log "PostgreSQL does not answer on 127.0.0.1:5432"
	exit 1
fi

# MariaDB on 127.0.0.1:3306 (for the MySQL engine's tests and benchmark), with the tools they
# drive: mariadb-dump, sysbench (its --mysql-ssl needs a client certificate made with openssl).
need_pkg mariadb-dump mariadb-client
need_pkg sysbench sysbench
need_pkg openssl openssl
mariadb_up() { mariadb -h 127.0.0.1 -P 3306 -u root -e 'select 1' >/dev/null 2>&1; }
if [ -x /usr/sbin/mariadbd ]; then
	if ! mariadb_up; then
		log "starting MariaDB"
		as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
		for i in $(seq 1 60); do mariadb_up && break; sleep 0.5; done
		mariadb_up || log "warning: MariaDB does not answer on 127.0.0.1:3306"
	fi
	mariadb -h 127.0.0.1 -P 3306 -u root -e 'create database if not exists test' >/dev/null 2>&1 || true
fi

# Database `test` in PostgreSQL.
if [ "$(psql -X -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname='test'")" != 1 ]; then
	log "creating database test"
	psql -X -q -h 127.0.0.1 -U postgres -d postgres -c 'create database test'
fi
log "PostgreSQL $(psql -X -h 127.0.0.1 -U postgres -d postgres -tAc 'show server_version') ready; tools: $(psql --version | head -n1)"

# The OpenID Provider of the identity tests (test/oidcprovider, its own Go module): fetch its
# modules now, so that the tests only build it.
if command -v go >/dev/null 2>&1; then
	(cd "$(dirname "$0")/../test/oidcprovider" && go mod download) || { log "cannot download the modules of test/oidcprovider"; exit 1; }
fi

# OpenSSH server and clients for the SSH engine's tests (they run their own sshd).
bash "$(dirname "$0")/ensure-sshd.sh"

# The web UI's browser tests: chromium, npm, and the UI built into the binary (issue 7).
bash "$(dirname "$0")/ensure-browser.sh"

# The Kubernetes tests' cluster: etcd, kube-apiserver and kwok, built from the Go module proxy
# into ~/.cache/airlock-k8s/bin (long the first time, then skipped; see docs/kubernetes.md).
bash "$(dirname "$0")/ensure-k8s.sh"

# The agent's tests: iproute2 for a network namespace that only an agent reaches (issue 8).
bash "$(dirname "$0")/ensure-agent.sh"

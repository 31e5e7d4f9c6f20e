#!/usr/bin/env bash
# What the agent's end-to-end tests need beyond the PostgreSQL server: iproute2 (ip netns, veth)
# to put a private PostgreSQL where only an agent can reach it, and runuser to start it as the
# postgres user. Called from scripts/ensure-services.sh; idempotent.
set -euo pipefail
log() { echo "ensure-agent: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || log "warning: no PostgreSQL server binaries under /usr/lib/postgresql (the agent tests need initdb and pg_ctl)"

#!/usr/bin/env bash
# Makes sure the web UI's browser tests can run: Debian's chromium (driven by the e2e tests
# through chromedp), Node.js and npm, and the UI built into internal/ui/dist (make ui), so that
# the binary the tests build embeds it. Idempotent; quick when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "ensure-browser: $*" >&2; }
as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}
apt_updated=0
need_pkg() { # need_pkg COMMAND PACKAGE...
	local cmd=$1
	shift
	command -v "$cmd" >/dev/null 2>&1 && return 0
	if [ "$apt_updated" = 0 ]; then
		log "installing missing tools: apt-get update"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
		apt_updated=1
	fi
	log "installing $* (for $cmd)"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
need_pkg chromium chromium
need_pkg node nodejs
need_pkg npm npm
log "building the web UI (make ui)"
make --no-print-directory ui >&2

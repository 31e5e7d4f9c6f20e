#!/usr/bin/env bash
# Installs what the SSH engine's tests and benchmark need from Debian's packages: the OpenSSH
# server (run by the tests themselves, on a loopback high port with their own config: never as a
# system service) and the stock clients they drive (ssh, scp, sftp, rsync, tmux). Idempotent.
set -euo pipefail

log() { echo "ensure-sshd: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	# policy-rc.d keeps the package from starting a system sshd (there may be no init system).
	as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# sshd refuses to start without its privilege separation directory.
as_root mkdir -p /run/sshd
as_root chmod 0755 /run/sshd
log "$(/usr/sbin/sshd -V 2>&1 | head -n1 || true); tools: ssh scp sftp rsync tmux ready"

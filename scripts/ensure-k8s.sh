#!/usr/bin/env bash
# Builds what the Kubernetes end-to-end tests run against: etcd, kube-apiserver and kubectl,
# from the Go module proxy (test/k8s is their own module, so the gateway's stays lean), into
# $AIRLOCK_K8S_CACHE (default ~/.cache/airlock-k8s/bin). The first build takes 10-20 minutes
# on two cores; afterwards it is skipped while test/k8s is unchanged.
set -euo pipefail

log() { echo "ensure-k8s: $*" >&2; }

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${AIRLOCK_K8S_CACHE:-$HOME/.cache/airlock-k8s}
bin=$cache/bin
stamp=$cache/stamp
want=$(cat "$root/test/k8s/go.mod" "$root/test/k8s/go.sum" "$root/test/k8s/etcd/main.go" | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
	[ -x "$bin/etcd" ] && [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kubectl" ]; then
	exit 0
fi
mkdir -p "$bin"
log "building etcd, kube-apiserver and kubectl v1.37.2 into $bin (once; 10-20 minutes)"
start=$(date +%s)
cd "$root/test/k8s"
GOFLAGS=-mod=mod go build -trimpath -o "$bin/" ./etcd k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
echo "$want" >"$stamp"
log "built in $(($(date +%s) - start))s"

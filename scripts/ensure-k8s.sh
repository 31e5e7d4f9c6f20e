#!/usr/bin/env bash
# Builds what the Kubernetes end-to-end tests run against: etcd and kube-apiserver from the Go
# module proxy (test/k8s is their own module, so the gateway's stays lean), and kwok (a kubelet
# stand-in), into $AIRLOCK_K8S_CACHE (default ~/.cache/airlock-k8s/bin). The tests use the
# machine's kubectl. The first build takes about 15 minutes on two cores (see
# docs/kubernetes.md); afterwards it is skipped while test/k8s and kwok_version are unchanged.
set -euo pipefail

log() { echo "ensure-k8s: $*" >&2; }

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${AIRLOCK_K8S_CACHE:-$HOME/.cache/airlock-k8s}
bin=$cache/bin
stamp=$cache/stamp
kwok_version=v0.8.0
want=$( (cat "$root/test/k8s/go.mod" "$root/test/k8s/go.sum" "$root/test/k8s/etcd/main.go"; echo "kwok $kwok_version") | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
	[ -x "$bin/etcd" ] && [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kwok" ]; then
	exit 0
fi
mkdir -p "$bin"
log "building etcd, kube-apiserver v1.37.2 and kwok $kwok_version into $bin (once; about 15 minutes on two cores)"
start=$(date +%s)
cd "$root/test/k8s"
GOFLAGS=-mod=mod go build -trimpath -o "$bin/" ./etcd k8s.io/kubernetes/cmd/kube-apiserver
log "etcd and kube-apiserver built in $(($(date +%s) - start))s"
GOBIN=$bin go install -trimpath "sigs.k8s.io/kwok/cmd/kwok@$kwok_version"
echo "$want" >"$stamp"
log "built in $(($(date +%s) - start))s"

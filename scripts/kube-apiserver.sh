#!/usr/bin/env bash
# kube-apiserver.sh — print the path of a kube-apiserver binary, building it
# from the k8s.io/kubernetes module the first time (about 10 minutes on two
# cores). The binary is cached outside the repository, keyed by version:
#   ${EWGW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ewgw}/kube-apiserver-<version>
# Usage: scripts/kube-apiserver.sh [version]   (default below; env KUBE_VERSION)
set -euo pipefail
version=${1:-${KUBE_VERSION:-v1.37.2}}
cache=${EWGW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ewgw}
bin=$cache/kube-apiserver-$version
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$cache"
# One build at a time: a second caller waits for the first.
exec 9>"$cache/.kube-apiserver.lock"
flock 9
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
echo "kube-apiserver.sh: building kube-apiserver $version into $cache (cached; about 10 minutes once)" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
staging=v0.${version#v1.}
export GOFLAGS=-mod=mod GONOSUMDB=k8s.io GOTOOLCHAIN=${GOTOOLCHAIN:-local}
cd "$work"
go mod init ewgw.local/kube-apiserver >/dev/null 2>&1
# k8s.io/kubernetes points each staging module at ./staging; map them to releases.
modfile=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -n "$modfile" ] || { echo "kube-apiserver.sh: cannot download k8s.io/kubernetes@$version" >&2; exit 1; }
grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$modfile" | awk '{print $1}' | while read -r m; do
	case $m in k8s.io/sample-*) continue ;; esac
	echo "replace $m => $m $staging"
done >>go.mod
go get "k8s.io/kubernetes@$version" >/dev/null 2>&1 || go get "k8s.io/kubernetes@$version"
CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$bin.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$bin.tmp" "$bin"
echo "$bin"

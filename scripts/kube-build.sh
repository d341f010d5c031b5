#!/usr/bin/env bash
# kube-build.sh — print the path of a Kubernetes command (kube-apiserver,
# kubectl, ...) built from the k8s.io/kubernetes module at VERSION, building
# it the first time (minutes; kube-apiserver takes about 4.5 on two cores).
# The binary is static (CGO_ENABLED=0) and cached outside the repository,
# keyed by command and version:
#   ${EWGW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ewgw}/<cmd>-<version>
# Usage: scripts/kube-build.sh CMD VERSION   (CMD names k8s.io/kubernetes/cmd/CMD)
# stdout carries only the path; progress goes to stderr.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 CMD VERSION (e.g. kubectl v1.37.2)" >&2; exit 2; }
cmd=$1 version=$2
case $cmd in '' | */* | .*) echo "kube-build.sh: bad command name '$cmd'" >&2; exit 2 ;; esac
case $version in v1.*) ;; *) echo "kube-build.sh: version must look like v1.N.P, got '$version'" >&2; exit 2 ;; esac
cache=${EWGW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ewgw}
bin=$cache/$cmd-$version
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$cache"
# One build per command at a time: a second caller waits for the first.
exec 9>"$cache/.$cmd.lock"
flock 9
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
echo "kube-build.sh: building $cmd $version into $cache (cached; minutes, once)" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
staging=v0.${version#v1.}
export GOFLAGS=-mod=mod GONOSUMDB=k8s.io GOTOOLCHAIN=${GOTOOLCHAIN:-local}
cd "$work"
go mod init "ewgw.local/$cmd" >/dev/null 2>&1
# k8s.io/kubernetes points each staging module at ./staging; map them to releases.
modfile=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -n "$modfile" ] || { echo "kube-build.sh: cannot download k8s.io/kubernetes@$version" >&2; exit 1; }
grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$modfile" | awk '{print $1}' | while read -r m; do
	case $m in k8s.io/sample-*) continue ;; esac
	echo "replace $m => $m $staging"
done >>go.mod
go get "k8s.io/kubernetes@$version" >/dev/null 2>&1 || go get "k8s.io/kubernetes@$version"
# Stamp the version as Kubernetes' own build does (hack/lib/version.sh), so
# `CMD version` reports it instead of v0.0.0-master.
minor=${version#v1.}
minor=${minor%%.*}
v=k8s.io/component-base/version
ldflags="-s -w -X $v.gitVersion=$version -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$bin.tmp" "k8s.io/kubernetes/cmd/$cmd"
mv "$bin.tmp" "$bin"
echo "$bin"

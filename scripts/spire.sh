#!/usr/bin/env bash
# spire.sh — print the directory holding spire-server and spire-agent built
# from the github.com/spiffe/spire module at VERSION, building them the
# first time (minutes, once; 28 on two busy cores). spire-agent is
# static (CGO_ENABLED=0); spire-server needs cgo (a C compiler) for its
# SQLite datastore (mattn/go-sqlite3), the only one that needs no database
# server. Both are cached outside the repository, keyed by version:
#   ${EWGW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ewgw}/spire-<version>/{spire-server,spire-agent}
# The identity tests that run a real SPIRE look there (internal/identity,
# spire_test.go); without the binaries they skip.
# Usage: scripts/spire.sh [version]   (default below; env SPIRE_VERSION)
# stdout carries only the path; progress goes to stderr.
set -euo pipefail
version=${1:-${SPIRE_VERSION:-v1.13.3}}
case $version in v1.*) ;; *) echo "spire.sh: version must look like v1.N.P, got '$version'" >&2; exit 2 ;; esac
cache=${EWGW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ewgw}
dir=$cache/spire-$version
if [ -x "$dir/spire-server" ] && [ -x "$dir/spire-agent" ]; then
	echo "$dir"
	exit 0
fi
mkdir -p "$cache"
# One build at a time: a second caller waits for the first.
exec 9>"$cache/.spire.lock"
flock 9
if [ -x "$dir/spire-server" ] && [ -x "$dir/spire-agent" ]; then
	echo "$dir"
	exit 0
fi
echo "spire.sh: building spire-server and spire-agent $version into $dir (cached; minutes, once)" >&2
tmp=$(mktemp -d "$cache/.spire-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Built inside a scratch module that requires SPIRE, as kube-build.sh does:
# "go install pkg@version" would first list the module's versions for its
# deprecation check, and the module proxy may refuse that list.
cd "$tmp"
export GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-local}
go mod init ewgw.local/spire >/dev/null 2>&1
go get "github.com/spiffe/spire@$version" >/dev/null 2>&1 || go get "github.com/spiffe/spire@$version"
# Stamp the version as SPIRE's own build does, so --version reports it.
ldflags="-s -w -X github.com/spiffe/spire/pkg/common/version.gittag=${version#v}"
CGO_ENABLED=1 go build -trimpath -ldflags="$ldflags" -o "$tmp/spire-server" github.com/spiffe/spire/cmd/spire-server
CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$tmp/spire-agent" github.com/spiffe/spire/cmd/spire-agent
mkdir -p "$dir"
mv "$tmp/spire-server" "$tmp/spire-agent" "$dir/"
echo "$dir"

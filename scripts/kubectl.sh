#!/usr/bin/env bash
# kubectl.sh — print the path of a kubectl that can talk to the test
# apiserver (kube-apiserver v1.37, scripts/kube-apiserver.sh): $EWGW_KUBECTL
# when set; else the kubectl on PATH when its client is within one minor
# version of VERSION (kubectl's supported skew); else one built from
# k8s.io/kubernetes at VERSION by scripts/kube-build.sh and cached in
# ${EWGW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ewgw}/kubectl-<version>.
# Usage: scripts/kubectl.sh [version]   (default below; env KUBECTL_VERSION)
set -euo pipefail
version=${1:-${KUBECTL_VERSION:-v1.37.2}}
if [ -n "${EWGW_KUBECTL:-}" ]; then
	echo "$EWGW_KUBECTL"
	exit 0
fi
want=${version#v1.}
want=${want%%.*}
if path=$(command -v kubectl); then
	# gitVersion is e.g. "v1.37.2" or "v1.32.4-dispatcher".
	got=$("$path" version --client -o json 2>/dev/null |
		sed -n 's/.*"gitVersion": *"v1\.\([0-9]*\)\..*/\1/p' | head -n1) || got=
	if [ -n "$got" ] && [ "$got" -ge $((want - 1)) ] && [ "$got" -le $((want + 1)) ]; then
		echo "$path"
		exit 0
	fi
	echo "kubectl.sh: $path is v1.${got:-?}, not within one minor of $version; using a built one" >&2
fi
exec "$(dirname "${BASH_SOURCE[0]}")/kube-build.sh" kubectl "$version"

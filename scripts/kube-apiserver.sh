#!/usr/bin/env bash
# kube-apiserver.sh — print the path of a kube-apiserver binary, building it
# from the k8s.io/kubernetes module the first time (about 4.5 minutes on two
# cores). The binary is cached outside the repository, keyed by version:
#   ${EWGW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ewgw}/kube-apiserver-<version>
# Usage: scripts/kube-apiserver.sh [version]   (default below; env KUBE_VERSION)
# The build itself is scripts/kube-build.sh, shared with scripts/kubectl.sh.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/kube-build.sh" kube-apiserver "${1:-${KUBE_VERSION:-v1.37.2}}"

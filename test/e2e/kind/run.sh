#!/usr/bin/env bash
# run.sh — the end-to-end scenarios on two kind clusters, for users with
# Docker (the machines `make e2e` runs on have none; it uses network
# namespaces instead, see test/e2e/README.md).
#
# It creates two kind clusters with the same pod subnet (kind/cluster.yaml),
# builds the ewgw image (make image) and the workload image
# (kind/workload.Dockerfile), loads both and nginx into the clusters with
# `kind load`, then runs the same Go suite as `make e2e` with
# EWGW_E2E_ENV=kind: the same scenarios.yaml, the same manifests/, the same
# deploy/examples (with the peer's address set to the other node on the
# shared Docker network, NodePort 30443), the same assertions. Only the
# environment differs (kind_test.go): real controllers and kubelets, the
# client in a pod.
#
# Usage: test/e2e/kind/run.sh
# Environment:
#   KEEP=1          leave the clusters running afterwards (default: delete them)
#   KIND_PREFIX     cluster name prefix (default ewgw-e2e): <prefix>-a, <prefix>-b
#   NGINX_IMAGE     the nginx image manifests/cluster-b.yaml names (default nginx:1.27)
#   GO              the go command (default go)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
here=$root/test/e2e/kind
prefix=${KIND_PREFIX:-ewgw-e2e}
clusters=("$prefix-a" "$prefix-b")
nginx=${NGINX_IMAGE:-nginx:1.27}
go=${GO:-go}
start=$(date +%s)

die() {
	echo "kind/run.sh: $*" >&2
	exit 1
}

for tool in docker kind kubectl "$go"; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (needs: docker, kind, kubectl, go)"
done
docker info >/dev/null 2>&1 || die "docker daemon not reachable (docker info failed)"
grep -q "image: $nginx" "$root/test/e2e/manifests/cluster-b.yaml" ||
	die "manifests/cluster-b.yaml does not use $nginx"

tmp=$(mktemp -d)
# shellcheck disable=SC2317 # reached through the EXIT trap
cleanup() {
	rm -rf "$tmp"
	if [ "${KEEP:-0}" = 1 ]; then
		echo "kind/run.sh: clusters kept: ${clusters[*]} (kind delete cluster --name NAME)"
		return
	fi
	for c in "${clusters[@]}"; do
		kind delete cluster --name "$c" >/dev/null 2>&1 || true
	done
}
trap cleanup EXIT

# Two clusters, one pod subnet: overlapping addresses must not matter.
for c in "${clusters[@]}"; do
	if kind get clusters 2>/dev/null | grep -qx "$c"; then
		echo "kind/run.sh: reusing cluster $c"
	else
		kind create cluster --name "$c" --config "$here/cluster.yaml" --wait 180s
	fi
done

# Images: ewgw from the repository's Dockerfile, the workload program from
# a static binary, nginx as the manifests name it.
IMAGE=ewgw:dev make -C "$root" --no-print-directory image
(cd "$root" && CGO_ENABLED=0 "$go" build -tags e2e -trimpath -o "$tmp/workload" ./test/e2e/cmd/workload)
docker build -q -f "$here/workload.Dockerfile" -t ewgw-e2e-workload:dev "$tmp"
docker image inspect "$nginx" >/dev/null 2>&1 || docker pull "$nginx"
for c in "${clusters[@]}"; do
	kind load docker-image --name "$c" ewgw:dev ewgw-e2e-workload:dev "$nginx"
done

# The suite, in its kind environment. A second run on kept clusters
# applies everything again.
rc=0
(cd "$root" && EWGW_E2E_ENV=kind EWGW_E2E_KIND_CLUSTERS="${clusters[0]},${clusters[1]}" \
	"$go" test -tags e2e -count=1 -v -timeout 30m -run '^TestE2E$' ./test/e2e/) || rc=$?
echo "kind/run.sh: total $(($(date +%s) - start))s"
exit "$rc"
